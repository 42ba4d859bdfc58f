"""The jitted simulation kernel: chunks, sharding, the scan, divergence masking.

Everything runs in one ``jax.jit``: an outer ``lax.scan`` over chunks of K steps (each
chunk under ``jax.checkpoint``, so reverse-mode memory is O(n_chunks * state +
K * state), not O(n_steps * state)), an inner ``lax.scan`` over the steps of a chunk.
The noise of a chunk is drawn in bulk (``noise.step_normals``) and multiplied by the
noise factor L once; the pooled moments of a chunk are reduced in bulk (one matmul) and
added to running sums of deviations from a reference.  No host round-trip happens inside
the scans; the optional progress report is a ``jax.debug.callback`` at chunk boundaries.
With several devices the trial axis is sharded (``NamedSharding`` over a 1-D mesh);
every per-step operation is local to a device, reductions over trials happen once per
chunk.

One step (state index s, t_s = s dt; ``integrator`` advances u, see ``integrators``)::

    eta_{s+1} = rho eta_s + sqrt(1 - rho^2) L xi_s,     rho = exp(-dt / tau_eta)   (exact OU)
    u_{s+1}, state = integrator.step(drift, u_s, eta_s, eta_{s+1}, state)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .._util import psd_sqrt
from ..model import SSN
from ..moments import symmetrize
from ..progress import Progress
from .integrators.base import Drift, Integrator
from .noise import STATIONARY_INDEX, ou_noise_normals, step_normals, trial_key_data
from .result import SimulationResult, finalize

__all__ = ["Config", "choose_chunk", "largest_divisor_leq", "simulate_jit", "two_pass", "AXIS"]

AXIS = "trials"


class Config(NamedTuple):
    """Static configuration of one compiled kernel (hashable)."""

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
    progress: bool  # report chunk boundaries through the callback registered under an id
    integrator: Integrator
    substeps: int  # noise of each step aggregated from this many finer OU steps


def largest_divisor_leq(n: int, cap: int, multiple_of: int = 1) -> int:
    best = 0
    for g in range(1, min(n, cap) + 1):
        if n % g == 0 and g % multiple_of == 0:
            best = g
    return best


def choose_chunk(n_steps: int, stride: int, per_step: int, chunk_steps: Optional[int]) -> int:
    """Steps per checkpointed chunk: ``chunk_steps`` if given (a multiple of the record
    stride), else ~2^21 / per_step elements, at most 512 steps, preferably a divisor of
    n_steps (no masked tail)."""
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
    for k in range(target, max(unit, target // 2) - 1, -unit):
        if n_steps % k == 0:
            return k
    return target


# --------------------------------------------------------------------------- progress

_PROGRESS: Dict[int, Callable[[Progress], None]] = {}
_PROGRESS_NEXT = [0]


def register_progress(fn: Callable[[Progress], None]) -> int:
    """An id under which the kernel's chunk callbacks find ``fn`` (a traced operand, so a
    new callback does not recompile).  The last 64 registrations are kept."""
    i = _PROGRESS_NEXT[0]
    _PROGRESS_NEXT[0] += 1
    _PROGRESS[i] = fn
    for old in [k for k in _PROGRESS if k <= i - 64]:
        del _PROGRESS[old]
    return i


def _progress_cb(pid, i, n):
    fn = _PROGRESS.get(int(pid))
    if fn is not None:
        fn(Progress("simulate", int(i), int(n), message=f"chunk {int(i)}/{int(n)}"))


# --------------------------------------------------------------------------- the kernel


def _constrain(x, cfg: Config, spec):
    if cfg.mesh is None:
        return x
    return lax.with_sharding_constraint(x, NamedSharding(cfg.mesh, P(*spec)))


def _noise_factor(cfg: Config, net: SSN, L_given):
    """x -> x L^T for x (.., D): the increments of eta from D standard normals."""
    if L_given is not None:
        return lambda x: x @ L_given.T
    if cfg.diag_noise:  # noise_cov is (concretely) diagonal: L = diag(sqrt(Sigma_ii))
        l_diag = jnp.sqrt(jnp.maximum(jnp.diagonal(net.noise_cov), 0.0))
        return lambda x: x * l_diag
    L = psd_sqrt(net.noise_cov)  # symmetric: x @ L = (L x^T)^T
    return lambda x: x @ L


def _initial_eta(cfg: Config, tkeys, apply_L, eta0_given, N):
    dtype = jnp.dtype(cfg.dtype)
    if cfg.eta0 == "stationary":  # eta_0 ~ N(0, L L^T) = N(0, Sigma_eta), its own stream index
        z0 = ou_noise_normals(tkeys, jnp.full((1,), STATIONARY_INDEX, jnp.uint32), cfg.n_noise, dtype)[0]
        return apply_L(z0)
    if cfg.eta0 == "zero":
        return jnp.zeros((cfg.n_trials, N), dtype)
    return jnp.broadcast_to(eta0_given, (cfg.n_trials, N)).astype(dtype)


class _Stats(NamedTuple):
    """Keep-weighted reductions over trials; keepf (B, T) is 1 for kept trials."""

    keepf: jax.Array
    bound: float

    def trial_mean(self, x):  # (..., B, T, N) -> (..., B, N)
        n_keep = jnp.sum(self.keepf, axis=1)
        return jnp.einsum("...btn,bt->...bn", x, self.keepf) / jnp.maximum(n_keep, 1.0)[:, None]

    def across_trials(self, x):  # x (R, B, T, N) -> mean (R, B, N), cov (R, B, N, N), 1/(n-1)
        n_keep = jnp.sum(self.keepf, axis=1)
        m = self.trial_mean(x)
        d = (x - m[:, :, None, :]) * self.keepf[None, :, :, None]
        cov = jnp.einsum("rbti,rbtj->rbij", d, d) / jnp.maximum(n_keep - 1.0, 1.0)[:, None, None]
        return m, symmetrize(cov)

    def check(self, U, srow, alive, div_step):
        """Divergence among the states U (R, B, T, N) of indices srow (R,)."""
        bad = ~jnp.all(jnp.abs(U) <= self.bound, axis=-1)  # (R, B, T); NaN counts as bad
        hit = jnp.any(bad, axis=0)
        first = srow[jnp.argmax(bad, axis=0)]  # state index of the first bad state
        return alive & ~hit, jnp.where(alive & hit, first, div_step)


def _window_sums(cfg: Config, stats: _Stats, U, srow, ref):
    """Deviations of the window states among U (K, B, T, N) from ``ref`` (B, N):
    per-trial sums tS1, tS2 (B, T, N) and per-group cross products gS2 (B, G, N, N)."""
    K, B, T, N = U.shape
    G = cfg.groups
    win = ((srow >= cfg.n_burn) & (srow < cfg.n_steps)).astype(U.dtype)  # (K,)
    D = (U - ref[None, :, None, :]) * (win[:, None, None] * stats.keepf)[..., None]
    # samples of a group contiguous before the contraction: XLA's CPU dot is ~4x
    # slower with the summed axes split around the batch axes (measured)
    Dg = jnp.moveaxis(D.reshape(K, B, G, T // G, N), 0, 2).reshape(B, G, K * (T // G), N)
    return jnp.sum(D, axis=0), jnp.sum(D * D, axis=0), jnp.einsum("bgsi,bgsj->bgij", Dg, Dg)


def _run(cfg: Config, net: SSN, h, key, first, u0, eta0_given, L_given, keep, pid) -> Dict[str, Any]:
    """One pass over trials first .. first + T - 1.  h (B, N); key: typed PRNG key;
    first: int32 scalar (0 unless the trials run in blocks); u0 (B, T, N); keep (B, T) bool;
    L_given: (N, D) noise factor or None (then the PSD square root of noise_cov).
    Returns a dict of raw sums and records (see ``result.finalize``)."""
    dtype = jnp.dtype(cfg.dtype)
    B, N = h.shape
    T, K = cfg.n_trials, cfg.chunk
    integ = cfg.integrator
    dt = jnp.asarray(cfg.dt, dtype)
    drift = Drift(h[:, None, :], net.W, net.k, net.n, net.tau, dt, cfg.n_int)
    apply_L = _noise_factor(cfg, net, L_given)
    rho = jnp.exp(-dt / net.tau_noise)  # exact OU decay over one step
    c = jnp.sqrt(-jnp.expm1(-2.0 * dt / net.tau_noise))  # sqrt(1 - rho^2)
    rho_fine = jnp.exp(-dt / (cfg.substeps * net.tau_noise))

    tkeys = _constrain(trial_key_data(key, T, first), cfg, (AXIS, None))  # per-trial noise keys
    stats = _Stats(_constrain(keep.astype(dtype), cfg, (None, AXIS)), cfg.bound)
    u = _constrain(u0, cfg, (None, AXIS, None))
    eta = _constrain(_initial_eta(cfg, tkeys, apply_L, eta0_given, N), cfg, (AXIS, None))
    clamp = 10.0 * cfg.bound  # keeps a runaway trial finite until the chunk end parks it

    def step(carry, inp):
        u, eta, st = carry
        zeta, s = inp  # zeta = L xi_s (T, N); s = index of the current state
        eta_n = rho * eta + c * zeta  # eta_{s+1} = rho eta_s + sqrt(1 - rho^2) L xi_s
        u_n, st_n = integ.step(drift, u, eta, eta_n, st)
        u_n = jnp.clip(u_n, -clamp, clamp)
        if cfg.n_steps % K:  # masked tail of the last chunk: freeze the state
            act = s < cfg.n_steps
            u_n, eta_n, st_n = jax.tree_util.tree_map(lambda a, b: jnp.where(act, a, b),
                                                      (u_n, eta_n, st_n), (u, eta, st))
        # emit the state *before* the step (emitting u_n would make XLA compute the
        # update twice, once for the carry and once for the stacked output)
        return (u_n, eta_n, st_n), u

    def chunk(dyn, ref, ci):  # steps ci K .. ci K + K - 1 (recomputed in the backward pass)
        srow = ci * K + jnp.arange(K, dtype=jnp.int32)  # state index of each row of U
        xi = step_normals(tkeys, srow, cfg.n_noise, dtype, cfg.substeps, rho_fine)  # (K, T, D)
        zeta = _constrain(apply_L(xi), cfg, (None, AXIS, None))
        u, eta, st, alive, div_step = dyn
        (u, eta, st), U = lax.scan(step, (u, eta, st), (zeta, srow))  # U[i] = state ci K + i
        U = _constrain(U, cfg, (None, None, AXIS, None))
        alive, div_step = stats.check(U, srow, alive, div_step)
        u = jnp.where(alive[..., None], u, 0.0)  # diverged trials are parked at u = 0
        st = jax.tree_util.tree_map(lambda s0, s: jnp.where(alive[..., None], s, s0), integ.init(drift, u), st)
        # reference (shift) of the streamed sums: across-trial mean of state n_burn
        inside = (srow[0] <= cfg.n_burn) & (cfg.n_burn < srow[0] + K)
        idx = jnp.clip(cfg.n_burn - srow[0], 0, K - 1)
        ref = jnp.where(inside, stats.trial_mean(lax.dynamic_index_in_dim(U, idx, 0, False)), ref)
        rec = {}
        if cfg.stride:
            Ur = U[:: cfg.stride]  # states at s = multiples of stride (ci K is one)
            rec["mean"], rec["cov"] = stats.across_trials(Ur)
            if cfg.traj:
                srec = srow[:: cfg.stride]
                alive_r = (div_step[None] < 0) | (srec[:, None, None] < div_step[None])
                rec["traj"] = jnp.where(alive_r[..., None], Ur, jnp.nan)
        return (u, eta, st, alive, div_step), ref, _window_sums(cfg, stats, U, srow, ref), rec

    chunk_ckpt = jax.checkpoint(chunk, prevent_cse=False) if cfg.remat else chunk

    def outer(carry, ci):
        dyn, ref, acc = carry
        dyn, ref, sums, rec = chunk_ckpt(dyn, ref, ci)
        acc = jax.tree_util.tree_map(jnp.add, acc, sums)
        if cfg.progress:
            jax.debug.callback(_progress_cb, pid, ci + 1, cfg.n_chunks)
        return (dyn, ref, acc), rec

    G = cfg.groups
    dyn0 = (u, eta, integ.init(drift, u), jnp.ones((B, T), bool), jnp.full((B, T), -1, jnp.int32))
    acc0 = (jnp.zeros((B, T, N), dtype), jnp.zeros((B, T, N), dtype), jnp.zeros((B, G, N, N), dtype))
    (dyn, ref, acc), rec = lax.scan(outer, (dyn0, jnp.zeros((B, N), dtype), acc0),
                                   jnp.arange(cfg.n_chunks, dtype=jnp.int32))
    u_end, _, _, alive, div_step = dyn
    # the final state (index n_steps) is not a row of any chunk unless the tail was masked
    alive, div_step = stats.check(u_end[None], jnp.full((1,), cfg.n_steps, jnp.int32), alive, div_step)
    out = {"ref": ref, "tS1": acc[0], "tS2": acc[1], "gS2": acc[2], "div_step": div_step}
    if cfg.stride:
        out.update(_records(cfg, stats, rec, u_end, alive))
    return out


def _records(cfg: Config, stats: _Stats, rec, u_end, alive):
    """Time-resolved records (R, ...) of the chunks, plus the final state when it falls on
    the stride."""
    n_rec = -(-cfg.n_steps // cfg.stride)  # records j * stride < n_steps
    flat = lambda x: x.reshape((-1,) + x.shape[2:])[:n_rec]  # noqa: E731
    out = {"rec_mean": flat(rec["mean"]), "rec_cov": flat(rec["cov"])}  # (R, B, N), (R, B, N, N)
    if cfg.traj:
        out["traj"] = flat(rec["traj"])  # (R, B, T, N)
    if cfg.n_steps % cfg.stride == 0:  # and the final state
        m1, c1 = stats.across_trials(u_end[None])
        out["rec_mean"] = jnp.concatenate([out["rec_mean"], m1], axis=0)
        out["rec_cov"] = jnp.concatenate([out["rec_cov"], c1], axis=0)
        if cfg.traj:
            last = jnp.where(alive[..., None], u_end, jnp.nan)[None]
            out["traj"] = jnp.concatenate([out["traj"], last], axis=0)
    return out


def two_pass(cfg: Config, net: SSN, h, key, first, u0, eta0_given, L_given, pid):
    """Pass 1 over the trials; pass 2 (only if some trial diverged) with the diverged
    trials masked from the start, so that a diverged trial contributes to no statistic.
    A ``lax.scan`` of length 2 around a ``lax.cond``: the simulation is compiled (and
    differentiated) once.  Returns the raw sums of the kept trials and ``keep`` (B, T)."""
    B, T = h.shape[0], cfg.n_trials
    keep0 = jnp.ones((B, T), bool)
    run = lambda keep: _run(cfg, net, h, key, first, u0, eta0_given, L_given, keep, pid)  # noqa: E731
    shapes = jax.eval_shape(lambda: run(keep0))
    out0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(carry, _):
        keep, need, out = carry
        out = lax.cond(need, lambda o: run(keep), lambda o: o, out)
        new_keep = keep0 & ~(out["div_step"] >= 0)
        need = need & jnp.any(new_keep != keep)
        return (new_keep, need, out), None

    (keep, _, out), _ = lax.scan(body, (keep0, jnp.array(True), out0), None, length=2)
    return out, keep


@jax.jit(static_argnums=(0, 1))
def simulate_jit(cfg: Config, squeeze: bool, net: SSN, h, key, u0, eta0_given, L_given,
                 pid) -> SimulationResult:
    """All trials in one program: ``two_pass`` then ``result.finalize``."""
    out, keep = two_pass(cfg, net, h, key, jnp.int32(0), u0, eta0_given, L_given, pid)
    return finalize(cfg, out, keep, squeeze)
