"""Cross-validation of the two routes: Gaussian moment closure vs stochastic simulation.

:func:`crosscheck` runs, on the same network and the same stimuli,

* the stationary closure (``stationary_solve``, float64 when 64-bit mode is on), and
* the stochastic simulation (``simulate``, float64 by default here for fidelity),

and returns a :class:`~.crosscheck_report.CrosscheckReport` with, per stimulus, the
error of every moment *together with the Monte Carlo standard error of the simulation
estimate*, so that a closure error can be told from sampling noise (measures:
:mod:`.crosscheck_stats`; reading them: :mod:`.crosscheck_report`).  It computes and
returns values only: progress goes to a ``progress`` callback, figures are drawn by
:func:`momentssn.experiments.plotting.write_crosscheck_figures`.

Stimuli of one batch share their noise realizations in the simulation (common random
numbers, see ``momentssn.simulate``): errors of different stimuli are correlated.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ..closure.equations import jacobian_at
from ..closure.stationary import stationary_solve
from ..closure.transient import propagate_moments
from ..errors import SimulationDivergedError, UnstableNetworkError
from ..model import SSN
from ..moments import Moments
from ..progress import Progress, ProgressFn, report
from ..simulation.simulate import simulate
from ..simulation.step_error import step_error
from ..simulation.step_size import jacobian_timescale
from .crosscheck_report import STATUS_OK, CrosscheckReport, TransientComparison, fmt_number
from .crosscheck_stats import compare_moments, corr_of, group_se, norm, safe_div, std_of, z_summary

__all__ = ["crosscheck", "closure_moments"]

_jacobian = jax.jit(jacobian_at)  # the closure Jacobian (1/ms) at stationary moments, compiled once per N


def _neuron_labels(net: SSN) -> Tuple[str, ...]:
    if net.n_exc is None:
        return tuple(f"u{i}" for i in range(net.N))
    return tuple(("E" if i < net.n_exc else "I") + str(i) for i in range(net.N))


def _closure_failure(converged: bool, eig: float, residual: float) -> str:
    if not converged:
        return (f"no fixed point found: the mean dynamics diverge or Newton failed "
                f"(relative residual {residual:.3g}, largest Re eig of J {eig:.4g} /ms)")
    return f"unstable fixed point: largest Re eig of J {eig:.4g} /ms >= 0"


def closure_moments(net: SSN, H, progress: Optional[ProgressFn] = None):
    """Stationary closure for every stimulus, one at a time; never raises on instability.

    H: (B, N) inputs (mV).  The stimuli are solved one by one with h of shape (N,), so
    the solver compiles once per network size whatever B is (a batched solve would
    recompile for every new B; on CPU it is not faster).  ``progress`` receives one
    event per stimulus (task "crosscheck: closure").

    Returns (Moments mean (B, N), cov (B, N, N) as numpy, NaN where unstable;
    stable (B,) bool; max_real_eig (B,) 1/ms; messages (B,) "" or why it failed).
    """
    H = np.atleast_2d(np.asarray(H, float))
    B, N = H.shape
    mean, cov = np.full((B, N), np.nan), np.full((B, N, N), np.nan)
    stable, eig, msgs = np.zeros(B, bool), np.full(B, np.nan), []
    t0 = time.perf_counter()
    for b in range(B):
        if B > 1:
            report(progress, Progress("crosscheck: closure", b + 1, B, elapsed_s=time.perf_counter() - t0))
        try:
            m, info = stationary_solve(net, jnp.asarray(H[b], net.dtype))
        except UnstableNetworkError as exc:  # defensive: stationary_solve reports, not raises
            eig[b] = float(getattr(exc, "max_real_eig", np.nan))
            msgs.append(str(exc))
            continue
        conv, e, res = bool(info.converged), float(info.max_real_eig), float(info.residual)
        mb, cb = np.asarray(m.mean, float), np.asarray(m.cov, float)
        eig[b] = e
        stable[b] = conv and e < 0 and np.all(np.isfinite(mb)) and np.all(np.isfinite(cb))
        if stable[b]:
            mean[b], cov[b] = mb, cb
        msgs.append("" if stable[b] else _closure_failure(conv, e, res))
    return Moments(mean, cov), stable, eig, tuple(msgs)


def _status(stable: bool, all_diverged: bool) -> str:
    if stable and not all_diverged:
        return STATUS_OK
    if not stable and all_diverged:
        return "closure unstable; simulation diverged"
    return "closure unstable" if not stable else "simulation diverged"


def _slowest(net: SSN) -> float:
    return max(float(np.max(np.asarray(net.tau))), float(net.tau_noise))


@contextlib.contextmanager
def _quiet_divergence():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="simulate: .* diverged", category=RuntimeWarning)
        yield


class _Stationary(NamedTuple):
    """The simulation side of a report (numpy)."""

    sim: Moments
    sim_se: Moments
    std_se: np.ndarray
    corr_se: np.ndarray
    n_diverged: np.ndarray
    n_samples: np.ndarray
    n_groups: int


def _all_diverged(N: int, n_trials: int, n_groups: Optional[int]) -> _Stationary:
    """The simulation side of one stimulus whose every trial diverged: NaN moments."""
    nan = Moments(np.full((1, N), np.nan), np.full((1, N, N), np.nan))
    return _Stationary(nan, nan, np.full((1, N), np.nan), np.full((1, N, N), np.nan),
                       np.array([n_trials]), np.array([0]), int(n_groups or 0))


def _concat(parts) -> _Stationary:
    cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    return _Stationary(Moments(cat([p.sim.mean for p in parts]), cat([p.sim.cov for p in parts])),
                       Moments(cat([p.sim_se.mean for p in parts]), cat([p.sim_se.cov for p in parts])),
                       cat([p.std_se for p in parts]), cat([p.corr_se for p in parts]),
                       cat([p.n_diverged for p in parts]), cat([p.n_samples for p in parts]),
                       max(p.n_groups for p in parts))


def _simulate_stationary(net, H, **kw) -> _Stationary:
    """Pooled simulated moments and standard errors; a stimulus whose every trial
    diverged (``simulate`` raises) is reported with NaN moments, the others are
    simulated again one by one (same seed: the same noise)."""
    try:
        return _simulate_batch(net, H, **kw)
    except SimulationDivergedError:
        if H.shape[0] == 1:
            return _all_diverged(H.shape[1], kw["n_trials"], kw["n_groups"])
        return _concat([_simulate_stationary(net, H[b:b + 1], **kw) for b in range(H.shape[0])])


def _simulate_batch(net, H, *, t_max, dt, n_trials, seed, burn_in, dtype, n_groups, progress,
                    timescale_ms=None) -> _Stationary:
    """Pooled simulated moments, their standard errors, and those of the stds and correlations."""
    B, N = H.shape
    with _quiet_divergence():
        res = simulate(net, jnp.asarray(H, dtype), t_max, dt, n_trials, seed, burn_in=burn_in,
                       dtype=dtype, n_groups=n_groups, progress=progress, timescale_ms=timescale_ms)
    se = res.standard_error()
    sim = Moments(np.asarray(res.moments.mean, float), np.asarray(res.moments.cov, float))
    sim_se = Moments(np.asarray(se.mean, float), np.asarray(se.cov, float))
    g_cov = np.asarray(res.group_moments.cov, float)
    g_n = np.asarray(res.group_n_samples, float)
    std_se = group_se(std_of, sim.cov, g_cov, g_n)
    corr_se = group_se(corr_of, sim.cov, g_cov, g_n) * (~np.eye(N, dtype=bool))
    return _Stationary(sim, sim_se, std_se, corr_se, np.asarray(res.n_diverged).reshape(B),
                       np.asarray(res.n_samples).reshape(B), int(g_n.shape[-1]))


def _step_check(net, H, *, dtype, **kw) -> Optional[Dict[str, np.ndarray]]:
    """``CrosscheckReport.step`` from ``step_error`` (None if every trial of a stimulus
    diverged: no moments to judge)."""
    try:
        with _quiet_divergence(), _precision(dtype):
            se = step_error(net, jnp.asarray(H, dtype), dtype=dtype, **kw)
    except SimulationDivergedError:
        return None
    mean_err = np.abs(np.asarray(se.error.mean, float)).max(axis=-1)
    std_err = np.abs(np.asarray(se.std_error, float)).max(axis=-1)
    ratio = np.asarray(se.ratio(), float)
    return dict(mean_max_abs=mean_err, std_max_abs=std_err, ratio_to_mc=ratio, adequate=ratio <= 1.0,
                dt=float(se.dt), order=int(se.order))


class _TransientPlan(NamedTuple):
    stimuli: Tuple[int, ...]
    dt: float
    t_max: float
    stride: int
    n_trials: int


def _transient_plan(net, B, transient, *, dt, n_trials, t_max, tdt, trials, points) -> Optional[_TransientPlan]:
    """Which stimuli, step, duration, record stride and trials of the transient comparison."""
    if transient is False or transient is None:
        return None
    idx = tuple(range(B)) if transient is True else tuple(int(b) for b in transient)
    if not idx:
        return None
    tdt = float(tdt) if tdt is not None else min(dt, 0.05)
    T = float(t_max) if t_max is not None else 6.0 * _slowest(net)
    stride = max(1, int(round(T / tdt / max(int(points), 1))))
    T = max(1, int(round(T / (tdt * stride)))) * stride * tdt
    n = int(trials) if trials is not None else max(256, n_trials)
    return _TransientPlan(idx, tdt, T, stride, n)


def _transient(net_th: SSN, net_sim: SSN, H, plan: _TransientPlan, *, seed, dtype, progress) -> TransientComparison:
    """Closure trajectory (RK4) vs across-trial simulation moments, from rest."""
    Hs = jnp.asarray(H[list(plan.stimuli)], dtype)
    tr_th = propagate_moments(net_th, Hs, plan.t_max, plan.dt, save_every=plan.stride)
    with _quiet_divergence():
        sim = simulate(net_sim, Hs, plan.t_max, plan.dt, plan.n_trials, seed, burn_in=0.0, dtype=dtype,
                       record_stride=plan.stride, progress=progress)
    rec = sim.time_resolved
    T = min(tr_th.t.shape[0], rec.t.shape[0])
    t = np.asarray(rec.t[:T], float)
    mth = np.asarray(tr_th.mean[:, :T], float)
    sth = np.asarray(tr_th.std[:, :T], float)
    msim = np.asarray(rec.mean[:, :T], float)
    ssim = np.asarray(rec.std[:, :T], float)
    n = np.asarray(plan.n_trials - sim.n_diverged, float)[:, None, None]  # (B, 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = ssim / np.sqrt(np.maximum(n, 1.0))
        sse = ssim / np.sqrt(2.0 * np.maximum(n - 1.0, 1.0))
    err, z_max, z_rms = {}, {}, {}
    for k, th, sm, se in (("mean", mth, msim, mse), ("std", sth, ssim, sse)):
        err[k] = safe_div(np.max(norm(th - sm, -1), -1), np.max(norm(sm, -1), -1))
        z_rms[k], z_max[k] = z_summary(safe_div(th - sm, se)[:, 1:])  # t = 0 is deterministic (SE 0)
    return TransientComparison(plan.stimuli, plan.dt, t, mth, sth, msim, ssim, mse, sse, plan.n_trials, err,
                               z_max, z_rms)


def _say(progress: Optional[ProgressFn], message: str, t0: float) -> None:
    report(progress, Progress("crosscheck", 0, elapsed_s=time.perf_counter() - t0, message=message))


def _precision(*dtypes):
    """``jax.default_matmul_precision("highest")`` if any of ``dtypes`` is narrower than
    float64 (accelerators may otherwise multiply float32 in reduced precision); a
    no-op for float64, whose matmuls are exact already, so that a float64 closure
    reuses the solver compiled by the caller's own earlier calls (the precision is
    part of the compilation cache key)."""
    if all(jnp.dtype(d) == jnp.float64 for d in dtypes):
        return contextlib.nullcontext()
    return jax.default_matmul_precision("highest")


def _say_results(progress, status, err, err_se, z_rms, t0: float) -> None:
    """One line per stimulus: status, errors with their noise floors, rms z."""
    B = len(status)
    for b in range(B):
        _say(progress, f"stimulus {b + 1}/{B} [{status[b]}] "
             + ", ".join(f"{m} {fmt_number(err[m][b])} (se {fmt_number(err_se[m][b])})" for m in ("mean", "std", "cov"))
             + f", z_rms mean/cov {fmt_number(z_rms['mean'][b])}/{fmt_number(z_rms['cov'][b])}", t0)


def _resolve_dtype(dtype):
    """(simulation dtype, closure dtype): float64 when 64-bit mode is on (module docstring)."""
    x64 = bool(jax.config.jax_enable_x64)
    if dtype is None:
        dtype = jnp.float64 if x64 else jnp.float32
        if not x64:
            warnings.warn(
                "crosscheck: 64-bit mode is off, so the closure and the simulation run in float32; "
                "enable jax_enable_x64 for a faithful comparison", RuntimeWarning, stacklevel=3)
    return jnp.dtype(dtype), jnp.dtype(jnp.float64 if x64 else jnp.float32)


def crosscheck(
    net: SSN,
    h,
    *,
    t_max: float = 10_000.0,
    dt: float = 0.5,
    n_trials: int = 64,
    seed: int = 0,
    burn_in: Optional[float] = None,
    dtype=None,
    n_groups: Optional[int] = None,
    transient: "bool | Sequence[int]" = False,
    transient_t_max: Optional[float] = None,
    transient_dt: Optional[float] = None,
    transient_trials: Optional[int] = None,
    transient_points: int = 150,
    step_check: bool = False,
    progress: Optional[ProgressFn] = None,
) -> CrosscheckReport:
    """Run both routes on ``net`` and inputs ``h`` and compare their moments.

    Args:
        net: the network.
        h: (N,) or (B, N) constant input (mV).
        t_max: simulated duration per trial (ms), burn-in included.
        dt: simulation step (ms).
        n_trials: trials per stimulus for the stationary moments.
        seed: simulation seed.
        burn_in: (ms) discarded start of every trial; default
            min(t_max / 4, 25 max(tau_i, tau_noise)).
        dtype: simulation dtype; default float64 when ``jax_enable_x64`` is on (the
            closure then also runs in float64), else float32 (with a warning).
        n_groups: trial groups for the standard errors (default: ``simulate``'s,
            the largest divisor of n_trials <= 32).
        transient: also compare time courses from rest (``propagate_moments`` vs the
            across-trial moments of a second simulation): True for every stimulus, or a
            sequence of stimulus indices.
        transient_dt: step (ms) of that comparison, for both routes (RK4 for the
            closure); default min(dt, 0.05) (see ``TransientComparison`` on why).
        transient_t_max: duration of the transient (ms); default
            6 max(tau_i, tau_noise).
        transient_trials: trials of the transient simulation (default
            max(256, n_trials)).
        transient_points: about this many recorded times.
        step_check: also measure the simulation's time-step error by step doubling on
            the same noise path (``momentssn.step_error``: about 3x the simulation's
            cost); reported in ``report.step`` beside the Monte Carlo error.
        progress: ``Progress`` callback (what is being done, counters, one summary
            per stimulus); ``None``: silent.

    Returns:
        ``CrosscheckReport``.  A closure without a stable fixed point and diverged
        simulation trials are *reported* (``status``, ``closure_message``,
        ``n_diverged``), not raised.

    Computations in float32 run under ``jax.default_matmul_precision("highest")`` (a
    context manager: the global setting is untouched); float64 ones need not.
    """
    dtype, fdt = _resolve_dtype(dtype)
    H = np.asarray(h, dtype=float)
    if H.ndim not in (1, 2) or H.shape[-1] != net.N:
        raise ValueError(f"h must have shape ({net.N},) or (B, {net.N}), got {H.shape}")
    squeeze = H.ndim == 1
    H = np.atleast_2d(H)
    B, N = H.shape
    t_max, dt, n_trials = float(t_max), float(dt), int(n_trials)
    burn_in = min(0.25 * t_max, 25.0 * _slowest(net)) if burn_in is None else float(burn_in)
    plan = _transient_plan(net, B, transient, dt=dt, n_trials=n_trials, t_max=transient_t_max,
                           tdt=transient_dt, trials=transient_trials, points=transient_points)
    net_th = net.astype(fdt)
    timings, t_all = {}, time.perf_counter()

    t0 = time.perf_counter()
    _say(progress, f"closure for {B} stimuli (N = {N})", t_all)
    with _precision(fdt):
        theory, stable, eig, msgs = closure_moments(net_th, H, progress=progress)
    timings["closure"] = time.perf_counter() - t0
    # the closure Jacobians' fastest time scale (ms), for simulate's step-size warning
    timescale = jacobian_timescale(np.stack([_jacobian(net_th, theory.mean[b], np.diagonal(theory.cov[b]))
                                             for b in range(B) if stable[b]] or [np.full((N, N), np.nan)]))

    t0 = time.perf_counter()
    _say(progress, f"simulation of {B} stimuli x {n_trials} trials x {t_max:g} ms "
                   f"(dt {dt:g} ms, burn-in {burn_in:g} ms, {dtype.name})", t_all)
    with _precision(dtype):
        st = _simulate_stationary(net, H, t_max=t_max, dt=dt, n_trials=n_trials, seed=seed, burn_in=burn_in,
                                  dtype=dtype, n_groups=n_groups, progress=progress, timescale_ms=timescale)
    timings["simulation"] = time.perf_counter() - t0

    err, err_se, z, z_rms, z_max = compare_moments(theory, st.sim, st.sim_se, st.std_se, st.corr_se)

    step = None
    if step_check:
        t0 = time.perf_counter()
        _say(progress, f"step error: dt {dt:g} and {dt / 2:g} ms on the same noise path", t_all)
        step = _step_check(net, H, t_max=t_max, dt=dt, n_trials=n_trials, seed=seed, burn_in=burn_in,
                           dtype=dtype, n_groups=n_groups, timescale_ms=timescale)
        timings["step_check"] = time.perf_counter() - t0

    tr = None
    if plan is not None:
        t0 = time.perf_counter()
        _say(progress, f"transient from rest, {len(plan.stimuli)} stimuli x {plan.n_trials} trials x "
                       f"{plan.t_max:g} ms (dt {plan.dt:g} ms)", t_all)
        try:
            with _precision(fdt, dtype):
                tr = _transient(net_th, net, H, plan, seed=seed + 1, dtype=dtype, progress=progress)
        except SimulationDivergedError as exc:  # reported by the stationary status; no time course
            _say(progress, f"no transient comparison: {exc}", t_all)
        timings["transient"] = time.perf_counter() - t0

    all_div = (st.n_diverged >= n_trials) | ~np.all(np.isfinite(st.sim.mean), -1)
    status = tuple(_status(bool(stable[b]), bool(all_div[b])) for b in range(B))
    _say_results(progress, status, err, err_se, z_rms, t_all)
    return CrosscheckReport(
        h=H, squeeze=squeeze, theory=theory, sim=st.sim, sim_se=st.sim_se, std_se=st.std_se,
        corr_se=st.corr_se, err=err, err_se=err_se, z=z, z_rms=z_rms, z_max=z_max, status=status,
        closure_stable=stable, max_real_eig=eig, closure_message=msgs, n_diverged=st.n_diverged,
        n_trials=n_trials, n_samples=st.n_samples,
        settings=dict(t_max=t_max, dt=dt, burn_in=burn_in, seed=int(seed), dtype=dtype.name,
                      n_groups=st.n_groups, closure_dtype=fdt.name),
        timings=timings, labels=_neuron_labels(net), transient=tr, step=step,
    )
