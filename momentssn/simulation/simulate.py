"""``simulate``: argument checks and the entry point of the stochastic simulation.

Units: time in ms, u in mV, rates in Hz.  The model (see ``momentssn.model``)::

    tau_i du_i/dt = -u_i + h_i + sum_j W_ij r_j + eta_i,      r = k [u]_+^n
    tau_eta d eta = -eta dt + sqrt(2 tau_eta) L dB,             L L^T = Sigma_eta

Many trials run in parallel and their moments are streamed (``kernel``).  eta follows its
exact OU transition over each step (``noise``), u is advanced by a pluggable integrator
(``integrators``; default: Heun's second-order trapezoid, chosen by measurement), and the same
seed gives the same noise path whatever the integrator (common random numbers).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .._util import is_traced, require_x64
from ..errors import SimulationDivergedError
from ..model import SSN
from ..progress import ProgressFn
from .integrators.base import Integrator
from .integrators.registry import get_integrator
from .blocks import n_blocks, run_blocks
from .kernel import AXIS, Config, choose_chunk, largest_divisor_leq, register_progress, simulate_jit
from .noise import base_key
from .result import SimulationResult
from .step_size import StepSizeWarning, step_size_ratio, warn_step_size

__all__ = ["simulate", "SimulationResult", "StepSizeWarning", "step_size_ratio"]


def _warn_step(net: SSN, dt: float, integ: Integrator, timescale_ms: Optional[float] = None) -> None:
    """``step_size.warn_step_size`` from ``simulate`` (the warning points at its caller)."""
    warn_step_size(net, dt, integ, timescale_ms, stacklevel=4)


def _require_finite(name: str, x) -> None:
    """``ValueError`` naming ``name`` if the concrete array ``x`` holds NaN or inf."""
    if x is None or is_traced(x):
        return
    a = np.asarray(x)
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")


def _steps(t_max, dt, burn_in):
    for name, v in (("t_max", t_max), ("dt", dt)):
        if not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    t_max, dt = float(t_max), float(dt)
    n_steps = int(round(t_max / dt))
    if n_steps >= 2**32 - 1:
        raise ValueError("more than 2^32 - 2 steps are not supported")
    if n_steps < 1:
        raise ValueError(f"t_max={t_max} ms is shorter than one step dt={dt} ms")
    if burn_in is None:
        burn_in = 0.25 * t_max
    if not math.isfinite(float(burn_in)):
        raise ValueError(f"burn_in must be finite, got {burn_in}")
    n_burn = int(round(float(burn_in) / dt))
    if not 0 <= n_burn < n_steps:
        raise ValueError(f"burn_in must satisfy 0 <= burn_in < t_max, got {burn_in} (t_max={t_max})")
    return t_max, dt, n_steps, n_burn


def _groups(n_trials: int, n_groups, mesh) -> int:
    if n_groups is not None:
        G = int(n_groups)
        if G < 1 or n_trials % G:
            raise ValueError(f"n_groups={n_groups} must be a positive divisor of n_trials={n_trials}")
        return G
    G = largest_divisor_leq(n_trials, 32, len(mesh.devices.flat)) if mesh is not None else 0
    return G or largest_divisor_leq(n_trials, 32)


def _noise_factor(net: SSN, noise_factor, dtype):
    """The checked (N, D) factor or None, and whether noise_cov is concretely diagonal."""
    N = net.N
    if noise_factor is None:
        if is_traced(net.noise_cov):
            return None, False
        S_np = np.asarray(net.noise_cov)
        return None, bool(np.all(S_np == np.diag(np.diag(S_np))))
    L = jnp.asarray(noise_factor, dtype)
    if L.ndim != 2 or L.shape[0] != N:
        raise ValueError(f"noise_factor must have shape ({N}, D), got {L.shape}")
    if not (is_traced(L) or is_traced(net.noise_cov)):
        Ln = np.asarray(L, np.float64)
        if not np.all(np.isfinite(Ln)):
            raise ValueError("noise_factor contains NaN or inf")
        S_np = np.asarray(net.noise_cov, np.float64)
        err = float(np.max(np.abs(Ln @ Ln.T - S_np)))
        tol = (1e-10 if dtype == jnp.float64 else 1e-5) * max(1.0, float(np.max(np.abs(S_np))))
        if err > tol:
            raise ValueError(f"noise_factor L must satisfy L L^T = noise_cov; max |L L^T - noise_cov| = {err:.3g}")
    return L, False


def _initial_states(u0, eta0, n_trials, N, B, squeeze, dtype):
    if isinstance(eta0, str):
        if eta0 not in ("stationary", "zero"):
            raise ValueError(f"eta0 must be 'stationary', 'zero' or an array, got {eta0!r}")
        eta_mode, eta_given = eta0, jnp.zeros((), dtype)
    else:
        _require_finite("eta0", eta0)
        eta_mode, eta_given = "given", jnp.asarray(eta0, dtype)
        np.broadcast_shapes(eta_given.shape, (n_trials, N))
    if u0 is None:
        return jnp.zeros((B, n_trials, N), dtype), eta_mode, eta_given
    _require_finite("u0", u0)
    u0a = jnp.asarray(u0, dtype)
    shp = (n_trials, N) if squeeze else (B, n_trials, N)
    np.broadcast_shapes(u0a.shape, shp)
    u0b = jnp.broadcast_to(u0a, shp)
    return (u0b[None] if squeeze else u0b), eta_mode, eta_given


def _static_exponent(net: SSN) -> Optional[int]:
    if is_traced(net.n):
        return None
    nv = float(np.asarray(net.n))
    return int(round(nv)) if nv == round(nv) and 1 <= nv <= 8 else None


def _report_divergence(res: SimulationResult, bound: float, n_total: int) -> None:
    """Eagerly: raise when every trial of some stimulus diverged, warn on a partial count."""
    nd = np.asarray(res.n_diverged).reshape(-1)
    if nd.sum() == 0:
        return
    n_trials = int(np.asarray(res.diverged).shape[-1])
    dead = np.flatnonzero(nd == n_trials)
    if dead.size:
        b = int(dead[0])
        t = np.asarray(res.divergence_time).reshape(-1, n_trials)[b]
        raise SimulationDivergedError(
            f"simulate: every one of the {n_trials} trials of stimulus {b} diverged (|u| > {bound:g} mV or "
            f"non-finite), the first at t = {float(t.min()):g} ms and the last at t = {float(t.max()):g} ms; "
            "the network is unstable at this input (or dt is too large): no moments to return",
            stimulus=b, time_ms=float(t.max()))
    warnings.warn(
        f"simulate: {int(nd.sum())} of {n_total} trials diverged (|u| > {bound} mV or non-finite; "
        f"per stimulus: {nd.tolist()}); they are excluded from all moments", RuntimeWarning, stacklevel=3)


def simulate(
    net: SSN,
    h,
    t_max: float,
    dt: float,
    n_trials: int,
    seed=0,
    burn_in: Optional[float] = None,
    *,
    integrator: Union[str, Integrator, None] = None,
    dtype=jnp.float32,
    u0=None,
    eta0="stationary",
    record_stride: Optional[int] = None,
    return_trajectories: bool = False,
    progress: Optional[ProgressFn] = None,
    n_groups: Optional[int] = None,
    chunk_steps: Optional[int] = None,
    bound: float = 1e3,
    devices: Optional[Sequence] = None,
    noise_factor=None,
    noise_substeps: int = 1,
    checkpoint: bool = True,
    timescale_ms: Optional[float] = None,
    threads: Optional[int] = None,
) -> SimulationResult:
    """Simulate ``n_trials`` independent trials of the stochastic SSN and stream moments.

    Args:
        net: the network (its leaves are cast to ``dtype``; differentiable).
        h: (N,) or (B, N) input (mV); a batch of B stimuli is simulated at once.
        t_max: duration (ms); ``n_steps = round(t_max / dt)`` steps are taken.
        dt: time step (ms).  ``simulate`` warns (``StepSizeWarning``, once per setting)
            when (dt / min tau)^order > 5e-3, or (dt / timescale_ms)^order > 0.25 (see
            ``simulation.step_size``); ``simulation.step_error.step_error`` measures the
            step error of a setting.
        n_trials: independent trials per stimulus (common to all stimuli).
        seed: int (or a JAX PRNG key).  Same seed and options -> same numbers.
        burn_in: (ms) the moments pool the states with burn_in <= t < t_max; default
            ``t_max / 4``.
        integrator: an integrator object (``momentssn.simulation.integrators``) or its
            name: ``"heun"`` (default: explicit trapezoid with eta at both ends of the
            step, second order), ``"etd2"``, ``"exp_ab2"`` (exponential, second order),
            ``"exp_euler"`` (the first-order scheme of earlier versions).  The same seed
            gives the same noise path with every integrator.
        dtype: ``jnp.float32`` (default) or ``jnp.float64`` (needs ``jax_enable_x64``).
        u0: initial u (mV), broadcastable to (B?, n_trials, N); default 0.
        eta0: ``"stationary"`` (default: eta_0 ~ N(0, noise_cov), independent per trial),
            ``"zero"``, or an array broadcastable to (n_trials, N).
        record_stride: if given, record the across-trial mean/cov every ``record_stride``
            steps (``.time_resolved``), starting at t = 0.
        return_trajectories: also return u at the recorded times (stride 1 if
            ``record_stride`` is None); memory O(B n_trials N n_steps / stride).
        progress: a ``momentssn.progress.ProgressFn`` called at chunk boundaries with
            ``Progress("simulate", chunk, n_chunks)``; ``None``/``False``: silent.
        n_groups: number G of trial groups for standard errors (must divide n_trials);
            default: the largest divisor of n_trials <= 32 (a multiple of the device
            count when the trials are sharded, so groups never straddle devices).
            With G = 1 (e.g. n_trials a prime > 32) the standard errors are NaN.
        chunk_steps: steps per checkpointed chunk (default: ~2^21 / (B n_trials N)
            elements per chunk, at most 512 steps).  Reverse-mode memory is
            O(n_steps / chunk_steps * B n_trials N + chunk_steps * B n_trials N).
        bound: a trial diverges when some |u_i| > bound (mV) or u is not finite.
        devices: devices to shard the trial axis over (default ``jax.devices()``).
            Sharding is used when there are >= 2 devices and they divide n_trials;
            otherwise the run stays on the first device.  Results do not depend on it
            (up to summation order).
        noise_factor: optional (N, D) matrix L with L L^T = noise_cov (checked when
            concrete).  The noise is then driven by D standard normals per step,
            eta_{s+1} = rho eta_s + sqrt(1 - rho^2) L xi_s, xi_s ~ N(0, I_D), instead of
            the symmetric square root of noise_cov (D = N).  Two networks given
            factors L and P L (P: any fixed N' x N matrix, e.g. the duplication of
            :func:`momentssn.split_neuron`) see the *same* noise realizations P eta for
            the same seed.
        noise_substeps: R >= 1: the noise of each step is the exact aggregate of R OU steps
            of dt / R, so the run sees the same eta path (at its grid times) as a run at
            dt / R with ``noise_substeps=1`` (common random numbers across step sizes,
            used by ``simulation.step_error.step_error``).
        checkpoint: rematerialize each chunk in the backward pass (``jax.checkpoint``,
            default).  ``False`` keeps every step's residuals: reverse-mode memory
            O(n_steps B n_trials N); only useful for benchmarking that trade-off.
        timescale_ms: optional fastest time scale of the network's linearized dynamics (ms,
            > 0): 1 / max |lambda| over the eigenvalues lambda (1/ms) of the closure
            Jacobian at the stationary point, ``simulation.step_size.jacobian_timescale``
            (the min over stimuli for a batch).  Only used for the step-size warning; callers
            that have the closure (``crosscheck``, ``simulated_score``) pass it.
        threads: host threads for an eager run on one CPU device (``simulation.blocks``):
            the trials are split into that many blocks of whole trial groups (the largest
            divisor of G <= threads), each run by the same compiled kernel in its own
            thread, and the sums are merged exactly (so 100 trials, G = 25 by default,
            stay one program on 2 cores unless ``n_groups`` is even).  Default ``None``:
            the CPU cores of the process for runs of >= 2^22 element-steps
            (n_steps B n_trials N) without time-resolved records, else 1.  Inside
            ``jit``/``grad``, with several devices, on a GPU, or with records, the run is
            one program.  Results do not depend on it (up to summation order).

    Returns:
        :class:`SimulationResult`.  Memory is O(B n_trials N + B G N^2) besides the
        optional records; the pooled sums are accumulated as sums of deviations from
        a reference (the across-trial mean of the first state of the window), so
        float32 keeps the variance even when |mean| >> std.

    Raises:
        ValueError: a bad argument (named), including NaN or inf in ``h``, ``u0``,
            ``eta0``, ``noise_factor``, ``t_max``, ``dt``, ``burn_in`` or the network.
        SimulationDivergedError: (eagerly) every trial of some stimulus diverged; it names
            the stimulus and the times.  Inside ``jit``/``grad`` nothing is raised: the
            result reports ``n_diverged`` (and NaN moments for such a stimulus).

    Exact fast paths chosen from concrete (non-traced) values: an integer exponent n
    uses repeated multiplication, a diagonal ``noise_cov`` an elementwise noise factor.

    Divergence: a trial diverges at the first state with some |u_i| > bound (or not
    finite).  Inside a chunk every state is clamped to |u| <= 10 bound (so a runaway
    trial stays finite, also in gradients); at the end of the chunk the first offending
    state is located exactly and the trial is parked at u = 0 from then on.  If any
    trial diverged, the whole run is repeated with those trials masked from the start,
    so a diverged trial contributes to *no* statistic (also not with its
    pre-divergence transient).  The repeat reuses the same compiled function (inside
    ``jit``/``grad`` it is a ``lax.cond``) and only happens when something diverged.
    A partial divergence is a count (``n_diverged``, ``first_divergence_time``,
    ``diverged``, ``divergence_time``) and, eagerly, a ``RuntimeWarning``.

    Gradients (BPTT) flow to every leaf of ``net`` and to ``h`` (and ``u0``/``eta0``)
    through the pooled, group, per-trial and time-resolved moments.
    """
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == jnp.float64:
        require_x64("simulate(dtype=float64)")
    t_max, dt, n_steps, n_burn = _steps(t_max, dt, burn_in)
    n_trials, R = int(n_trials), int(noise_substeps)
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if R < 1 or n_steps * R >= 2**32 - 1:
        raise ValueError(f"noise_substeps must be >= 1 with n_steps * noise_substeps < 2^32 - 1, got {R}")
    if not (isinstance(bound, (int, float, np.integer, np.floating)) and bound > 0 and math.isfinite(bound)):
        raise ValueError(f"bound must be a finite number > 0, got {bound!r}")
    if threads is not None and not (isinstance(threads, (int, np.integer)) and threads >= 1):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if progress is not None and progress is not False and not callable(progress):
        raise ValueError("progress must be a callable taking momentssn.progress.Progress, or None "
                         f"(the library does not print), got {progress!r}")
    integ = get_integrator(integrator)
    for name in ("W", "tau", "noise_cov", "tau_noise", "k", "n"):
        _require_finite(f"net.{name}", getattr(net, name))
    _require_finite("h", h)

    net = net.astype(dtype)
    N = net.N
    h = jnp.asarray(h, dtype)
    squeeze = h.ndim == 1
    if h.ndim not in (1, 2) or h.shape[-1] != N:
        raise ValueError(f"h must have shape ({N},) or (B, {N}), got {h.shape}")
    h2 = h[None] if squeeze else h
    B = h2.shape[0]

    devs = list(jax.devices() if devices is None else devices)
    mesh = Mesh(np.array(devs), (AXIS,)) if (len(devs) > 1 and n_trials % len(devs) == 0) else None
    G = _groups(n_trials, n_groups, mesh)
    stride = 0
    if record_stride is not None or return_trajectories:
        stride = 1 if record_stride is None else int(record_stride)
        if stride < 1:
            raise ValueError(f"record_stride must be >= 1, got {record_stride}")
    K = choose_chunk(n_steps, stride, B * n_trials * N, chunk_steps)
    L_given, diag_noise = _noise_factor(net, noise_factor, dtype)
    u0b, eta_mode, eta_given = _initial_states(u0, eta0, n_trials, N, B, squeeze, dtype)
    _warn_step(net, dt, integ, timescale_ms)

    cfg = Config(n_steps=n_steps, n_burn=n_burn, dt=dt, chunk=K, n_chunks=-(-n_steps // K), stride=stride,
                 traj=bool(return_trajectories), n_trials=n_trials, groups=G, bound=float(bound),
                 dtype=dtype.name, n_int=_static_exponent(net), eta0=eta_mode, diag_noise=diag_noise,
                 n_noise=N if L_given is None else int(L_given.shape[1]), remat=bool(checkpoint), mesh=mesh,
                 progress=callable(progress), integrator=integ, substeps=R)
    pid = jnp.int32(register_progress(progress) if callable(progress) else 0)
    key = base_key(seed)
    nb = 1
    if not stride and not is_traced((net, h2, key, u0b, eta_given, L_given)):
        nb = n_blocks(threads, G, n_steps * B * n_trials * N, devs, mesh is not None)
    if nb > 1:
        K = choose_chunk(n_steps, stride, B * (n_trials // nb) * N, chunk_steps)
        res = run_blocks(cfg._replace(chunk=K, n_chunks=-(-n_steps // K)), nb, squeeze, net, h2, key, u0b,
                         eta_given, L_given, pid)
    else:
        res = simulate_jit(cfg, squeeze, net, h2, key, u0b, eta_given, L_given, pid)
    if not is_traced(res.n_diverged):
        _report_divergence(res, float(bound), B * n_trials)
    return res
