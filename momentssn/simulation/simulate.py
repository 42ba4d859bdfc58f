"""Stochastic simulation of the SSN: many trials in parallel, moments streamed.

Units: time in ms, u in mV, rates in Hz.  The model (see ``momentssn.model``)::

    tau_i du_i/dt = -u_i + h_i + sum_j W_ij r_j + eta_i,      r = k [u]_+^n
    tau_eta d eta = -eta dt + sqrt(2 tau_eta) L dB,             L L^T = Sigma_eta

Discretization (step dt, state index s = 0 .. n_steps, t_s = s dt)::

    eta_{s+1} = rho eta_s + sqrt(1 - rho^2) L xi_s,        rho = exp(-dt / tau_eta),  xi_s ~ N(0, I)
    u_{s+1}   = u_s + (1 - exp(-dt / tau)) * (h + W r(u_s) + (eta_s + eta_{s+1}) / 2 - u_s)

The OU update is the *exact* transition of eta, so the noise statistics do not depend
on dt.  u uses exponential Euler (the leak is integrated exactly, the recurrent input
is frozen over the step, the noise input is the trapezoidal average of eta over the
step).  For the linear network (W = 0) the stationary covariance of this scheme
differs from the continuous one by O(dt^2): relative error ~1e-5 at dt = 0.2 ms
and ~2e-4 at dt = 1 ms for tau ~ 10-20 ms.  Fixed points of the noise-free map are
exactly those of the ODE.  L is the symmetric PSD square root of ``noise_cov``
(eigendecomposition, negative eigenvalues clipped), so a singular noise covariance
is fine.

Random numbers.  Every Gaussian is a pure function of (seed, trial index, step
index, neuron index): counter-based Threefry-2x32 keyed by a per-trial key derived
from the seed.  Hence the noise does not depend on the number of devices, on the
chunk size, on ``n_trials`` (trial i sees the same noise in a run with more trials) or
on the batch of stimuli: *all stimuli of a batch share the same noise realizations*
(common random numbers), so ``simulate(net, h)[b]`` equals ``simulate(net, h[b])`` up
to summation order.
float64 runs use the same 32 high bits as float32 runs plus 20 more, so the two
precisions follow the same sample paths up to rounding.

Everything runs in one ``jax.jit``: an outer ``lax.scan`` over chunks of
``chunk_steps`` steps (each chunk under ``jax.checkpoint``, so reverse-mode memory is
O(n_chunks * state + chunk_steps * state), not O(n_steps * state)), an inner
``lax.scan`` over the steps of a chunk.  The noise of a chunk is drawn in bulk and
multiplied by L once; the pooled moments of a chunk are reduced in bulk (one
matmul) and added to running sums.  No host round-trip happens inside the scans;
the optional progress indicator is a ``jax.debug.callback`` at chunk boundaries.
With several devices the trial axis is sharded (``NamedSharding`` over a 1-D mesh);
every per-step operation is local to a device, reductions over trials happen once
per chunk.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..model import SSN
from ..moments import MomentTrajectory, Moments, symmetrize

__all__ = ["simulate", "SimulationResult", "psd_sqrt", "ou_noise_normals", "threefry2x32"]

_AXIS = "trials"


# ---------------------------------------------------------------------------
# result container
# ---------------------------------------------------------------------------


class SimulationResult(NamedTuple):
    """Output of :func:`simulate` (a pytree; ``B?`` is absent when ``h`` is (N,)).

    The *window* is the states u(t_s), t_s = s dt, with burn_in <= t_s < t_max, i.e.
    s = n_burn .. n_steps - 1 (n_burn = round(burn_in / dt), n_steps = round(t_max / dt)),
    n_window = n_steps - n_burn samples per trial.  A trial that diverges at any time
    is excluded from *every* statistic below (whole-trial exclusion), see ``diverged``.

    Attributes:
        moments: pooled moments over the window and over the kept trials:
            mean (B?, N) mV, cov (B?, N, N) mV^2, normalized by ``n_samples``
            (maximum-likelihood 1/n; n is ~1e5 or more in practice).
        n_samples: (B?,) int, kept trials x n_window.
        group_moments: the same moments for ``G`` disjoint groups of consecutive
            trials (group g = trials g*M .. (g+1)*M - 1, M = n_trials / G):
            mean (B?, G, N), cov (B?, G, N, N).  Groups are statistically independent,
            so their spread gives a standard error (see :meth:`standard_error`).
        group_n_samples: (B?, G) int samples per group (0 if all its trials diverged).
        trial_mean: (B?, n_trials, N) time average of u over the window for each trial
            (NaN for diverged trials).  Enough for a trial bootstrap of the mean.
        trial_var: (B?, n_trials, N) time variance of u over the window for each trial
            (1/n_window normalization; NaN for diverged trials).
        time_resolved: ``MomentTrajectory`` of the across-trial moments at times
            t = 0, stride dt, 2 stride dt, ... <= t_max: mean (B?, T_rec, N),
            cov (B?, T_rec, N, N) (unbiased, 1/(n_kept - 1)); ``None`` unless
            ``record_stride`` was given (or ``return_trajectories``, stride 1).
        trajectories: (B?, n_trials, T_rec, N) u at the recorded times (NaN after a
            trial diverged), or ``None`` unless ``return_trajectories=True``.
        diverged: (B?, n_trials) bool, trial left |u| <= bound (or became non-finite).
        divergence_time: (B?, n_trials) ms, first time a trial diverged (inf if never).
        n_diverged: (B?,) int number of diverged trials per stimulus.
        first_divergence_time: (B?,) ms, earliest divergence per stimulus (inf if none).
    """

    moments: Moments
    n_samples: jax.Array
    group_moments: Moments
    group_n_samples: jax.Array
    trial_mean: jax.Array
    trial_var: jax.Array
    time_resolved: Optional[MomentTrajectory]
    trajectories: Optional[jax.Array]
    diverged: jax.Array
    divergence_time: jax.Array
    n_diverged: jax.Array
    first_divergence_time: jax.Array

    def standard_error(self) -> Moments:
        """Monte Carlo standard errors of ``moments.mean`` and ``moments.cov``.

        From the spread of the G independent trial groups (a jackknife-free
        "batch means over trials"): with group estimates x_g, weights w_g = n_g / n,
        pooled x = sum_g w_g x_g::

            SE(x)^2 = G' / (G' - 1) * sum_g w_g^2 (x_g - x)^2,    G' = groups with n_g > 0

        Valid because different trials are independent; it accounts for the time
        correlations within a trial.  Needs G' >= 2 (NaN otherwise).  Shapes as in
        ``moments``.
        """
        return _standard_error(self.moments, self.group_moments, self.group_n_samples)


@jax.jit
def _standard_error(moments: Moments, group_moments: Moments, n_g) -> Moments:
    w = n_g / jnp.maximum(jnp.sum(n_g, axis=-1, keepdims=True), 1)
    gp = jnp.sum(n_g > 0, axis=-1)
    fac = gp / jnp.where(gp > 1, gp - 1, jnp.nan)
    gm, gc = group_moments
    mean, cov = moments
    # groups with no samples have NaN moments and weight 0
    dm = jnp.where(n_g[..., None] > 0, gm - mean[..., None, :], 0.0)
    dc = jnp.where(n_g[..., None, None] > 0, gc - cov[..., None, :, :], 0.0)
    se_m = jnp.sqrt(fac[..., None] * jnp.sum((w[..., None] * dm) ** 2, axis=-2))
    se_c = jnp.sqrt(fac[..., None, None] * jnp.sum((w[..., None, None] * dc) ** 2, axis=-3))
    return Moments(se_m, se_c)


# ---------------------------------------------------------------------------
# noise factor and random numbers
# ---------------------------------------------------------------------------


@jax.custom_jvp
def psd_sqrt(S: jax.Array) -> jax.Array:
    """Symmetric PSD square root of a symmetric PSD matrix (N, N).

    ``V diag(sqrt(max(lambda, 0))) V^T`` from ``eigh``; negative eigenvalues (rounding,
    or a user's slightly indefinite matrix) are clipped to 0, so a singular covariance
    gives a singular factor and no NaN.  Unlike Cholesky it exists for every PSD
    matrix, and unlike ``V diag(sqrt(lambda))`` it is unique, so it is differentiable
    even with repeated eigenvalues: the derivative solves ``dR R + R dR = dS``, i.e.
    ``dR = V [(V^T dS V)_ij / (s_i + s_j)] V^T``.  For a pair of zero eigenvalues the
    true derivative is unbounded; that entry is set to 0 (a pseudo-derivative).
    """
    lam, V = jnp.linalg.eigh(symmetrize(S))
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    return symmetrize((V * s) @ V.T)


@psd_sqrt.defjvp
def _psd_sqrt_jvp(primals, tangents):
    (S,), (dS,) = primals, tangents
    lam, V = jnp.linalg.eigh(symmetrize(S))
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    R = symmetrize((V * s) @ V.T)
    den = s[:, None] + s[None, :]
    ok = den > 0
    X = jnp.where(ok, (V.T @ symmetrize(dS) @ V) / jnp.where(ok, den, 1.0), 0.0)
    return R, symmetrize(V @ X @ V.T)


def threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 hash (20 rounds), elementwise on broadcastable uint32 arrays.

    Bit-identical to JAX's ``threefry2x32_p`` (the hash behind ``jax.random``), written
    out unrolled so that XLA fuses it into one elementwise kernel: on CPU, JAX's own
    lowering is a rolled 5-iteration loop that materializes every intermediate.
    Returns the two output words.
    """
    rot = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in rot[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))
            x1 = x0 ^ x1
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _uniform_to_normal(mant_bits, nbits, dtype):
    """Mantissa bits (uint, top ``nbits`` used) -> standard normals of ``dtype``.

    f = 1.m - 1 in [0, 1) on a grid of 2^-nbits; v = 2 f - 1 + 2^-nbits is symmetric
    about 0 and never +-1; z = sqrt(2) erfinv(v).
    """
    if dtype == jnp.float32:
        one = jnp.uint32(0x3F800000)
        f = lax.bitcast_convert_type(mant_bits | one, jnp.float32) - 1.0
    else:
        one = jnp.uint64(0x3FF0000000000000)
        f = lax.bitcast_convert_type(mant_bits | one, jnp.float64) - 1.0
    v = 2.0 * f - 1.0 + jnp.asarray(2.0**-nbits, dtype)
    return jnp.asarray(math.sqrt(2.0), dtype) * lax.erf_inv(v)


def ou_noise_normals(key_data: jax.Array, steps: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
    """Standard normals xi[step, trial, neuron] as a pure function of the indices.

    Args:
        key_data: (T, 2) uint32 per-trial Threefry keys.
        steps: (K,) step indices (any integer dtype, used modulo 2^32).
        n: number of neurons N.
        dtype: float32 or float64.

    Returns:
        (K, T, N) array.  Counter-based Threefry-2x32: the hash of the counter pair
        (step, neuron) under the trial key gives two 32-bit words (w0, w1).  float32
        uses the top 23 bits of w0; float64 uses w0 followed by 20 bits of w1, so both
        precisions share the same sample paths.  (One hash per normal: every output
        element is computed by one fused elementwise kernel.)
    """
    T = key_data.shape[0]
    K = steps.shape[0]
    j = jnp.arange(n, dtype=jnp.uint32)[None, None, :]
    x0 = jnp.broadcast_to(steps.astype(jnp.uint32)[:, None, None], (K, T, n))
    w0, w1 = threefry2x32(key_data[None, :, 0, None], key_data[None, :, 1, None], x0, j)
    if jnp.dtype(dtype) == jnp.float32:
        return _uniform_to_normal(w0 >> 9, 23, jnp.float32)
    mant = (w0.astype(jnp.uint64) << 20) | (w1.astype(jnp.uint64) >> 12)
    return _uniform_to_normal(mant, 52, jnp.float64)


def _base_key(seed) -> jax.Array:
    """A typed PRNG key from an int seed, a typed key, or a legacy uint32 (2,) key."""
    if hasattr(seed, "dtype") and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed
    if hasattr(seed, "dtype") and seed.dtype == jnp.uint32 and getattr(seed, "shape", ()) == (2,):
        return jax.random.wrap_key_data(seed)
    return jax.random.key(seed)


def _trial_key_data(base, n_trials: int) -> jax.Array:
    """(n_trials, 2) uint32 per-trial keys: Threefry hash of the counter (trial, 0) under
    the words of ``base``."""
    kd = jax.random.key_data(base)
    if kd.shape != (2,) or kd.dtype != jnp.uint32:  # not a Threefry key: draw two words from it
        kd = jax.random.bits(base, (2,), jnp.uint32)
    t = jnp.arange(n_trials, dtype=jnp.uint32)
    y0, y1 = threefry2x32(kd[0], kd[1], t, jnp.zeros_like(t))
    return jnp.stack([y0, y1], axis=-1)


# ---------------------------------------------------------------------------
# static configuration
# ---------------------------------------------------------------------------


class _Config(NamedTuple):
    n_steps: int
    n_burn: int
    dt: float
    chunk: int
    n_chunks: int
    stride: int  # 0: no time-resolved record
    traj: bool
    n_trials: int
    groups: int
    bound: float
    dtype: str
    n_int: Optional[int]  # static integer exponent (fast path) or None
    eta0: str  # "stationary" | "zero" | "given"
    diag_noise: bool  # noise_cov concretely diagonal: elementwise factor
    n_noise: int  # D, columns of the noise factor (N unless a noise_factor is given)
    remat: bool  # jax.checkpoint each chunk (reverse-mode memory O(n_chunks), not O(n_steps))
    mesh: Optional[Mesh]
    progress: bool


def _largest_divisor_leq(n: int, cap: int, multiple_of: int = 1) -> int:
    best = 0
    for g in range(1, min(n, cap) + 1):
        if n % g == 0 and g % multiple_of == 0:
            best = g
    return best


def _choose_chunk(n_steps: int, stride: int, per_step: int, chunk_steps: Optional[int]) -> int:
    unit = max(stride, 1)
    if chunk_steps is not None:
        k = int(chunk_steps)
        if k < 1:
            raise ValueError(f"chunk_steps must be >= 1, got {chunk_steps}")
        if k % unit:
            raise ValueError(f"chunk_steps={k} must be a multiple of record_stride={unit}")
        return k
    # aim at ~2^21 elements (8 MB in float32) per (steps, B, trials, N) block: long
    # contractions for the bulk noise and covariance matmuls (2^18 was ~25% slower in
    # benchmarks/simulate.py), and few checkpoints for reverse mode.
    target = max(1, min(512, (1 << 21) // max(per_step, 1)))
    target = max(unit, (target // unit) * unit)
    if target >= n_steps:
        return -(-n_steps // unit) * unit
    # prefer a chunk that divides n_steps (no masked tail) if one is close to the target
    for k in range(target, max(unit, target // 2) - 1, -unit):
        if n_steps % k == 0:
            return k
    return target


# ---------------------------------------------------------------------------
# the jitted core
# ---------------------------------------------------------------------------


def _constrain(x, cfg: _Config, spec):
    if cfg.mesh is None:
        return x
    return lax.with_sharding_constraint(x, NamedSharding(cfg.mesh, P(*spec)))


def _progress_cb(i, n):
    i, n = int(i), int(n)
    end = "\n" if i == n else ""
    print(f"\rsimulate: chunk {i}/{n} ({100.0 * i / n:5.1f}%)", end=end, flush=True)


def _rate(u, k, n, n_int):
    """r = k [u]_+^n (Hz); integer n uses repeated multiplication (same values, faster)."""
    x = jnp.maximum(u, 0.0)
    return k * (x**n_int if n_int is not None else x**n)


def _run(cfg: _Config, net: SSN, h, key, u0, eta0_given, L_given, keep):
    """One pass.  h (B, N); key: typed PRNG key; u0 (B, T, N); keep (B, T) bool;
    L_given: (N, D) noise factor or None (then the PSD square root of noise_cov).

    Returns a dict of raw sums and records (see ``_finalize``).
    """
    dtype = jnp.dtype(cfg.dtype)
    B, N = h.shape
    T, K, G = cfg.n_trials, cfg.chunk, cfg.groups
    M = T // G
    dt = jnp.asarray(cfg.dt, dtype)

    W, tau, tn, k, n = net.W, net.tau, net.tau_noise, net.k, net.n
    D_noise = cfg.n_noise
    if L_given is not None:  # eta increments L xi with xi (.., D): x @ L^T
        apply_L = lambda x: x @ L_given.T  # noqa: E731
    elif cfg.diag_noise:  # noise_cov is (concretely) diagonal: L = diag(sqrt(Sigma_ii))
        l_diag = jnp.sqrt(jnp.maximum(jnp.diagonal(net.noise_cov), 0.0))
        apply_L = lambda x: x * l_diag  # noqa: E731
    else:
        L = psd_sqrt(net.noise_cov)  # symmetric: x @ L = (L x^T)^T
        apply_L = lambda x: x @ L  # noqa: E731
    b = -jnp.expm1(-dt / tau)  # (N,) 1 - exp(-dt/tau)
    rho = jnp.exp(-dt / tn)  # exact OU decay over one step
    c = jnp.sqrt(-jnp.expm1(-2.0 * dt / tn))  # sqrt(1 - rho^2)

    tkeys = _constrain(_trial_key_data(key, T), cfg, (_AXIS, None))  # per-trial noise keys
    keepf = _constrain(keep.astype(dtype), cfg, (None, _AXIS))
    u = _constrain(u0, cfg, (None, _AXIS, None))
    if cfg.eta0 == "stationary":  # the stream's step index 2^32 - 1 (never a real step)
        z0 = ou_noise_normals(tkeys, jnp.full((1,), 0xFFFFFFFF, jnp.uint32), D_noise, dtype)[0]
        eta = apply_L(z0)  # eta_0 ~ N(0, L L^T) = N(0, Sigma_eta)
    elif cfg.eta0 == "zero":
        eta = jnp.zeros((T, N), dtype)
    else:
        eta = jnp.broadcast_to(eta0_given, (T, N)).astype(dtype)
    eta = _constrain(eta, cfg, (_AXIS, None))

    n_keep = jnp.sum(keepf, axis=1)  # (B,)

    def trial_mean(x):  # keep-weighted across-trial mean of (..., B, T, N) -> (..., B, N)
        return jnp.einsum("...btn,bt->...bn", x, keepf) / jnp.maximum(n_keep, 1.0)[:, None]

    def across_trial_moments(x):  # x (R, B, T, N) -> mean (R, B, N), cov (R, B, N, N)
        m = trial_mean(x)
        d = (x - m[:, :, None, :]) * keepf[None, :, :, None]
        cov = jnp.einsum("rbti,rbtj->rbij", d, d) / jnp.maximum(n_keep - 1.0, 1.0)[:, None, None]
        return m, symmetrize(cov)

    def check(U, srow, alive, div_step):
        """Divergence among the states U (R, B, T, N) of indices srow (R,)."""
        bad = ~jnp.all(jnp.abs(U) <= cfg.bound, axis=-1)  # (R, B, T); NaN counts as bad
        hit = jnp.any(bad, axis=0)
        first = srow[jnp.argmax(bad, axis=0)]  # state index of the first bad state
        div_step = jnp.where(alive & hit, first, div_step)
        return alive & ~hit, div_step

    # ---- one time step (states (B, T, N); eta (T, N) is shared by the stimuli)
    clamp = 10.0 * cfg.bound  # keeps a runaway trial finite until the chunk end parks it

    def step(carry, inp):
        u, eta = carry
        zeta, s = inp  # zeta = L xi_s (T, N); s = index of the current state
        eta_n = rho * eta + c * zeta  # eta_{s+1} = rho eta_s + sqrt(1 - rho^2) L xi_s
        r = _rate(u, k, n, cfg.n_int)  # r(u_s)
        drive = h[:, None, :] + jnp.einsum("btj,ij->bti", r, W) + 0.5 * (eta + eta_n)
        u_n = jnp.clip(u + b * (drive - u), -clamp, clamp)  # exponential Euler
        if cfg.n_steps % K:  # masked tail of the last chunk: freeze the state
            act = s < cfg.n_steps
            u_n = jnp.where(act, u_n, u)
            eta_n = jnp.where(act, eta_n, eta)
        # emit the state *before* the step (emitting u_n would make XLA compute the
        # update twice, once for the carry and once for the stacked output)
        return (u_n, eta_n), u

    # ---- one chunk: steps s0 .. s0+K-1 (checkpointed: recomputed in the backward pass)
    def chunk(dyn, ref, ci):
        s0 = ci * K
        srow = s0 + jnp.arange(K, dtype=jnp.int32)  # state index of each row of U
        xi = ou_noise_normals(tkeys, srow, D_noise, dtype)  # (K, T, D)
        zeta = _constrain(apply_L(xi), cfg, (None, _AXIS, None))
        u, eta, alive, div_step = dyn
        (u, eta), U = lax.scan(step, (u, eta), (zeta, srow))  # U[i] = state s0 + i
        U = _constrain(U, cfg, (None, None, _AXIS, None))
        alive, div_step = check(U, srow, alive, div_step)
        u = jnp.where(alive[..., None], u, 0.0)  # diverged trials are parked at u = 0
        dyn = (u, eta, alive, div_step)
        # reference (shift) of the streamed sums: across-trial mean of state n_burn
        inside = (s0 <= cfg.n_burn) & (cfg.n_burn < s0 + K)
        idx = jnp.clip(cfg.n_burn - s0, 0, K - 1)
        ref = jnp.where(inside, trial_mean(lax.dynamic_index_in_dim(U, idx, 0, False)), ref)
        win = ((srow >= cfg.n_burn) & (srow < cfg.n_steps)).astype(dtype)  # (K,)
        D = (U - ref[None, :, None, :]) * (win[:, None, None] * keepf)[..., None]
        tS1 = jnp.sum(D, axis=0)  # (B, T, N)
        tS2 = jnp.sum(D * D, axis=0)  # (B, T, N)
        # samples of a group contiguous before the contraction: XLA's CPU dot is ~4x
        # slower with the summed axes split around the batch axes (measured)
        Dg = jnp.moveaxis(D.reshape(K, B, G, M, N), 0, 2).reshape(B, G, K * M, N)
        gS2 = jnp.einsum("bgsi,bgsj->bgij", Dg, Dg)  # (B, G, N, N)
        rec = {}
        if cfg.stride:
            Ur = U[:: cfg.stride]  # states at s = multiples of stride (s0 is one)
            rec["mean"], rec["cov"] = across_trial_moments(Ur)
            if cfg.traj:
                srec = srow[:: cfg.stride]
                alive_r = (div_step[None] < 0) | (srec[:, None, None] < div_step[None])
                rec["traj"] = jnp.where(alive_r[..., None], Ur, jnp.nan)
        return dyn, ref, (tS1, tS2, gS2), rec

    chunk_ckpt = jax.checkpoint(chunk, prevent_cse=False) if cfg.remat else chunk

    def outer(carry, ci):
        dyn, ref, acc = carry
        dyn, ref, sums, rec = chunk_ckpt(dyn, ref, ci)
        acc = jax.tree_util.tree_map(jnp.add, acc, sums)
        if cfg.progress:
            jax.debug.callback(_progress_cb, ci + 1, cfg.n_chunks)
        return (dyn, ref, acc), rec

    alive0 = jnp.ones((B, T), bool)
    div0 = jnp.full((B, T), -1, jnp.int32)
    acc0 = (jnp.zeros((B, T, N), dtype), jnp.zeros((B, T, N), dtype), jnp.zeros((B, G, N, N), dtype))
    (dyn, ref, acc), rec = lax.scan(
        outer, ((u, eta, alive0, div0), jnp.zeros((B, N), dtype), acc0), jnp.arange(cfg.n_chunks, dtype=jnp.int32)
    )
    u_end, _, alive, div_step = dyn
    # the final state (index n_steps) is not a row of any chunk unless the tail was masked
    alive, div_step = check(u_end[None], jnp.full((1,), cfg.n_steps, jnp.int32), alive, div_step)
    out = {"ref": ref, "tS1": acc[0], "tS2": acc[1], "gS2": acc[2], "div_step": div_step}
    if cfg.stride:
        n_rec = -(-cfg.n_steps // cfg.stride)  # records j * stride < n_steps
        flat = lambda x: x.reshape((-1,) + x.shape[2:])[:n_rec]  # noqa: E731
        out["rec_mean"], out["rec_cov"] = flat(rec["mean"]), flat(rec["cov"])  # (R, B, N), (R, B, N, N)
        if cfg.traj:
            out["traj"] = flat(rec["traj"])  # (R, B, T, N)
        if cfg.n_steps % cfg.stride == 0:  # and the final state
            m1, c1 = across_trial_moments(u_end[None])
            out["rec_mean"] = jnp.concatenate([out["rec_mean"], m1], axis=0)
            out["rec_cov"] = jnp.concatenate([out["rec_cov"], c1], axis=0)
            if cfg.traj:
                last = jnp.where(alive[..., None], u_end, jnp.nan)[None]
                out["traj"] = jnp.concatenate([out["traj"], last], axis=0)
    return out


def _finalize(cfg: _Config, out, keep, squeeze: bool) -> SimulationResult:
    dtype = jnp.dtype(cfg.dtype)
    T, G = cfg.n_trials, cfg.groups
    M = T // G
    n_win = cfg.n_steps - cfg.n_burn
    B = keep.shape[0]
    keepf = keep.astype(dtype)
    ref, tS1, tS2, gS2 = out["ref"], out["tS1"], out["tS2"], out["gS2"]
    N = ref.shape[-1]

    def moments_from(n, S1, S2):
        """Shifted sums -> (mean, cov); NaN where n == 0."""
        has = n > 0
        nn = jnp.where(has, n, 1.0)
        m = S1 / nn[..., None]
        cov = S2 / nn[..., None, None] - m[..., :, None] * m[..., None, :]
        mean = jnp.where(has[..., None], ref.reshape(ref.shape[:1] + (1,) * (S1.ndim - 2) + (N,)) + m, jnp.nan)
        cov = jnp.where(has[..., None, None], symmetrize(cov), jnp.nan)
        return mean, cov

    gkeep = keepf.reshape(B, G, M).sum(-1)  # (B, G)
    g_n = gkeep * n_win
    gS1 = tS1.reshape(B, G, M, N).sum(2)
    g_mean, g_cov = moments_from(g_n, gS1, gS2)
    n_all = g_n.sum(-1)
    mean, cov = moments_from(n_all, gS1.sum(1), gS2.sum(1))
    tm = tS1 / n_win
    trial_mean = jnp.where(keep[..., None], ref[:, None, :] + tm, jnp.nan)
    trial_var = jnp.where(keep[..., None], tS2 / n_win - tm * tm, jnp.nan)

    div_step = out["div_step"]
    diverged = div_step >= 0
    div_time = jnp.where(diverged, div_step.astype(dtype) * cfg.dt, jnp.inf)

    time_resolved = None
    trajectories = None
    if cfg.stride:
        R = out["rec_mean"].shape[0]
        t = jnp.arange(R, dtype=dtype) * (cfg.stride * cfg.dt)
        time_resolved = MomentTrajectory(
            t, jnp.moveaxis(out["rec_mean"], 0, 1), jnp.moveaxis(out["rec_cov"], 0, 1)
        )
        if cfg.traj:
            trajectories = jnp.transpose(out["traj"], (1, 2, 0, 3))  # (B, T, R, N)

    res = SimulationResult(
        moments=Moments(mean, cov),
        n_samples=(n_all).astype(jnp.int32) if n_win * T < 2**31 else n_all,
        group_moments=Moments(g_mean, g_cov),
        group_n_samples=g_n.astype(jnp.int32) if n_win * T < 2**31 else g_n,
        trial_mean=trial_mean,
        trial_var=trial_var,
        time_resolved=time_resolved,
        trajectories=trajectories,
        diverged=diverged,
        divergence_time=div_time,
        n_diverged=jnp.sum(diverged, axis=-1).astype(jnp.int32),
        first_divergence_time=jnp.min(div_time, axis=-1),
    )
    if squeeze:
        res = jax.tree_util.tree_map(lambda x: x[0], res)
        if time_resolved is not None:
            res = res._replace(time_resolved=res.time_resolved._replace(t=time_resolved.t))
    return res


def _is_traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


# ---------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------


def simulate(
    net: SSN,
    h,
    t_max: float,
    dt: float,
    n_trials: int,
    seed=0,
    burn_in: Optional[float] = None,
    *,
    dtype=jnp.float32,
    u0=None,
    eta0="stationary",
    record_stride: Optional[int] = None,
    return_trajectories: bool = False,
    progress: Optional[bool] = None,
    n_groups: Optional[int] = None,
    chunk_steps: Optional[int] = None,
    bound: float = 1e3,
    devices: Optional[Sequence] = None,
    noise_factor=None,
    checkpoint: bool = True,
) -> SimulationResult:
    """Simulate ``n_trials`` independent trials of the stochastic SSN and stream moments.

    Args:
        net: the network (its leaves are cast to ``dtype``; differentiable).
        h: (N,) or (B, N) input (mV); a batch of B stimuli is simulated at once.
        t_max: duration (ms); ``n_steps = round(t_max / dt)`` steps are taken.
        dt: time step (ms).
        n_trials: independent trials per stimulus (common to all stimuli).
        seed: int (or a JAX PRNG key).  Same seed and options -> same numbers.
        burn_in: (ms) the moments pool the states with burn_in <= t < t_max; default
            ``t_max / 4``.
        dtype: ``jnp.float32`` (default) or ``jnp.float64`` (needs ``jax_enable_x64``).
        u0: initial u (mV), broadcastable to (B?, n_trials, N); default 0.
        eta0: ``"stationary"`` (default: eta_0 ~ N(0, noise_cov), independent per trial),
            ``"zero"``, or an array broadcastable to (n_trials, N).
        record_stride: if given, record the across-trial mean/cov every ``record_stride``
            steps (``.time_resolved``), starting at t = 0.
        return_trajectories: also return u at the recorded times (stride 1 if
            ``record_stride`` is None); memory O(B n_trials N n_steps / stride).
        progress: print progress at chunk boundaries; default: only when stdout is a
            terminal.
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
        checkpoint: rematerialize each chunk in the backward pass (``jax.checkpoint``,
            default).  ``False`` keeps every step's residuals: reverse-mode memory
            O(n_steps B n_trials N); only useful for benchmarking that trade-off.

    Returns:
        :class:`SimulationResult`.  Memory is O(B n_trials N + B G N^2) besides the
        optional records; the pooled sums are accumulated as sums of deviations from
        a reference (the across-trial mean of the first state of the window), so
        float32 keeps the variance even when |mean| >> std.

    Exact fast paths chosen from concrete (non-traced) values: an integer exponent n
    uses repeated multiplication, a diagonal ``noise_cov`` an elementwise noise factor.

    Divergence: a trial diverges at the first state with some |u_i| > bound (or not
    finite).  Inside a chunk every state is clamped to |u| <= 10 bound (so a runaway
    trial stays finite, also in gradients); at the end of the chunk the first offending
    state is located exactly and the trial is parked at u = 0 from then on.  If any
    trial diverged, the whole run is repeated with those trials masked from the start,
    so a diverged trial contributes to *no* statistic (also not with its
    pre-divergence transient).  The repeat reuses the same
    compiled function (inside ``jit``/``grad`` it is a ``lax.cond``) and only happens
    when something diverged.  Counts and times are in ``n_diverged``,
    ``first_divergence_time``, ``diverged``, ``divergence_time``.  A stimulus with
    every trial diverged has NaN moments; eagerly a ``RuntimeWarning`` is issued when
    any trial diverged.

    Gradients (BPTT) flow to every leaf of ``net`` and to ``h`` (and ``u0``/``eta0``)
    through the pooled, group, per-trial and time-resolved moments.
    """
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype=float64 needs 64-bit mode: call jax.config.update('jax_enable_x64', True) "
            "before creating arrays (momentssn never flips this switch for you)"
        )
    t_max, dt = float(t_max), float(dt)
    if not (dt > 0 and t_max > 0):
        raise ValueError(f"t_max and dt must be > 0, got t_max={t_max}, dt={dt}")
    n_steps = int(round(t_max / dt))
    if n_steps >= 2**32 - 1:
        raise ValueError("more than 2^32 - 2 steps are not supported")
    if n_steps < 1:
        raise ValueError(f"t_max={t_max} ms is shorter than one step dt={dt} ms")
    if burn_in is None:
        burn_in = 0.25 * t_max
    n_burn = int(round(float(burn_in) / dt))
    if not 0 <= n_burn < n_steps:
        raise ValueError(f"burn_in must satisfy 0 <= burn_in < t_max, got {burn_in} (t_max={t_max})")
    n_trials = int(n_trials)
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")

    net = net.astype(dtype)
    N = net.N
    h = jnp.asarray(h, dtype)
    squeeze = h.ndim == 1
    if h.ndim not in (1, 2) or h.shape[-1] != N:
        raise ValueError(f"h must have shape ({N},) or (B, {N}), got {h.shape}")
    h2 = h[None] if squeeze else h
    B = h2.shape[0]

    # devices / sharding
    devs = list(jax.devices() if devices is None else devices)
    D = len(devs)
    mesh = Mesh(np.array(devs), (_AXIS,)) if (D > 1 and n_trials % D == 0) else None
    if n_groups is None:
        G = 0
        if mesh is not None:
            G = _largest_divisor_leq(n_trials, 32, D)
        G = G or _largest_divisor_leq(n_trials, 32)
    else:
        G = int(n_groups)
        if G < 1 or n_trials % G:
            raise ValueError(f"n_groups={n_groups} must be a positive divisor of n_trials={n_trials}")

    stride = 0
    if record_stride is not None or return_trajectories:
        stride = 1 if record_stride is None else int(record_stride)
        if stride < 1:
            raise ValueError(f"record_stride must be >= 1, got {record_stride}")
    per_step = B * n_trials * N
    K = _choose_chunk(n_steps, stride, per_step, chunk_steps)
    n_chunks = -(-n_steps // K)

    n_int = None
    if not _is_traced(net.n):
        nv = float(np.asarray(net.n))
        if nv == round(nv) and 1 <= nv <= 8:
            n_int = int(round(nv))

    L_given = None
    if noise_factor is not None:
        L_given = jnp.asarray(noise_factor, dtype)
        if L_given.ndim != 2 or L_given.shape[0] != N:
            raise ValueError(f"noise_factor must have shape ({N}, D), got {L_given.shape}")
        if not (_is_traced(L_given) or _is_traced(net.noise_cov)):
            Ln = np.asarray(L_given, np.float64)
            if not np.all(np.isfinite(Ln)):
                raise ValueError("noise_factor contains NaN or inf")
            S_np = np.asarray(net.noise_cov, np.float64)
            err = float(np.max(np.abs(Ln @ Ln.T - S_np)))
            tol = (1e-10 if dtype == jnp.float64 else 1e-5) * max(1.0, float(np.max(np.abs(S_np))))
            if err > tol:
                raise ValueError(
                    f"noise_factor L must satisfy L L^T = noise_cov; max |L L^T - noise_cov| = {err:.3g}"
                )
    diag_noise = False
    if L_given is None and not _is_traced(net.noise_cov):
        S_np = np.asarray(net.noise_cov)
        diag_noise = bool(np.all(S_np == np.diag(np.diag(S_np))))

    if isinstance(eta0, str):
        if eta0 not in ("stationary", "zero"):
            raise ValueError(f"eta0 must be 'stationary', 'zero' or an array, got {eta0!r}")
        eta_mode, eta_given = eta0, jnp.zeros((), dtype)
    else:
        eta_mode, eta_given = "given", jnp.asarray(eta0, dtype)
        np.broadcast_shapes(eta_given.shape, (n_trials, N))

    if u0 is None:
        u0b = jnp.zeros((B, n_trials, N), dtype)
    else:
        u0a = jnp.asarray(u0, dtype)
        shp = (n_trials, N) if squeeze else (B, n_trials, N)
        np.broadcast_shapes(u0a.shape, shp)
        u0b = jnp.broadcast_to(u0a, shp)
        u0b = u0b[None] if squeeze else u0b

    if progress is None:
        progress = bool(getattr(sys.stdout, "isatty", lambda: False)())

    cfg = _Config(
        n_steps=n_steps,
        n_burn=n_burn,
        dt=dt,
        chunk=K,
        n_chunks=n_chunks,
        stride=stride,
        traj=bool(return_trajectories),
        n_trials=n_trials,
        groups=G,
        bound=float(bound),
        dtype=dtype.name,
        n_int=n_int,
        eta0=eta_mode,
        diag_noise=diag_noise,
        n_noise=N if L_given is None else int(L_given.shape[1]),
        remat=bool(checkpoint),
        mesh=mesh,
        progress=bool(progress),
    )

    res = _simulate_jit(cfg, squeeze, net, h2, _base_key(seed), u0b, eta_given, L_given)
    if not _is_traced(res.n_diverged):
        nd = np.asarray(res.n_diverged).reshape(-1)
        if nd.sum() > 0:
            warnings.warn(
                f"simulate: {int(nd.sum())} of {B * n_trials} trials diverged "
                f"(|u| > {bound} mV or non-finite; per stimulus: {nd.tolist()}); "
                "they are excluded from all moments",
                RuntimeWarning,
                stacklevel=2,
            )
    return res


@jax.jit(static_argnums=(0, 1))
def _simulate_jit(cfg: _Config, squeeze: bool, net: SSN, h, key, u0, eta0_given, L_given) -> SimulationResult:
    """Pass 1 over all trials; pass 2 (only if some trial diverged) with the diverged
    trials masked from the start.  A ``lax.scan`` of length 2 around a ``lax.cond`` so
    that the simulation is compiled (and differentiated) once."""
    B, T = h.shape[0], cfg.n_trials
    keep0 = jnp.ones((B, T), bool)
    shapes = jax.eval_shape(lambda: _run(cfg, net, h, key, u0, eta0_given, L_given, keep0))
    out0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(carry, _):
        keep, need, out = carry
        out = lax.cond(need, lambda o: _run(cfg, net, h, key, u0, eta0_given, L_given, keep), lambda o: o, out)
        new_keep = keep0 & ~(out["div_step"] >= 0)
        need = need & jnp.any(new_keep != keep)
        return (new_keep, need, out), None

    (keep, _, out), _ = lax.scan(body, (keep0, jnp.array(True), out0), None, length=2)
    return _finalize(cfg, out, keep, squeeze)
