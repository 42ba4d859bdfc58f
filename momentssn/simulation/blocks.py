"""Trial blocks on host threads: several CPU cores for one run on one CPU device.

XLA's CPU runtime executes the step loop of a program on one core (one step of a
100-neuron network is too small to split), but two programs called from two host threads
run side by side.  So an eager ``simulate`` on one CPU device may split the trials into
``n`` blocks of consecutive trials (whole trial groups), run the same compiled kernel
(``kernel.two_pass``) on every block in its own thread, and merge the streamed sums.  A
trial's noise depends on its index only (``noise.trial_key_data``), so every trial of a
block is the trial of the single-program run; only the order of the final sums differs.

Merge.  Block a streams the deviations of its window states from its own reference ref_a
(B, N) (the across-trial mean of its state n_burn).  With the common reference ref (the
keep-weighted mean of the ref_a) and delta = ref_a - ref, the sums over the n window
samples of a kept trial, and over the samples of a trial group, become::

    S1' = S1 + n delta,     S2'_trial = S2 + 2 delta * S1 + n delta^2          (elementwise)
    S2'_group = S2 + S1 delta^T + delta S1^T + n delta delta^T                 (N x N)

(diverged trials have zero sums and stay zero).  Time-resolved records are not merged:
runs that record them stay one program.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ..model import SSN
from .kernel import Config, largest_divisor_leq, two_pass
from .result import SimulationResult, finalize

__all__ = ["cpu_cores", "n_blocks", "run_blocks", "AUTO_MIN_WORK"]

# below this many element-steps (n_steps * B * n_trials * N) a run stays one program by
# default: thread start and the merge cost more than they save (a few ms)
AUTO_MIN_WORK = 1 << 22


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def n_blocks(threads: Optional[int], n_groups: int, work: int, devices: Sequence, sharded: bool) -> int:
    """How many trial blocks a run is split into (1: one program).

    Args:
        threads: ``simulate``'s ``threads`` (None: ``cpu_cores()`` when the run is at least
            ``AUTO_MIN_WORK`` element-steps, else 1).
        n_groups: G, trial groups of the run; a block holds whole groups, so the number of
            blocks is the largest divisor of G <= threads (the groups, hence the standard
            errors, do not depend on the thread count).
        work: n_steps * B * n_trials * N.
        devices: the devices of the run; only a single CPU device is split.
        sharded: the trials are already sharded over several devices.
    """
    if sharded or not devices or devices[0].platform != "cpu":
        return 1
    if threads is None:
        threads = cpu_cores() if work >= AUTO_MIN_WORK else 1
    return max(1, largest_divisor_leq(n_groups, int(threads)))


@jax.jit(static_argnums=0)
def _block(cfg: Config, net: SSN, h, key, first, u0, eta0_given, L_given, pid):
    """``two_pass`` on trials first .. first + cfg.n_trials - 1 of the whole run's u0 (B, T, N)
    and eta0 (broadcastable to (T, N))."""
    Tb = cfg.n_trials
    u0b = lax.dynamic_slice_in_dim(u0, first, Tb, axis=1)
    if cfg.eta0 == "given":
        eta0_given = lax.dynamic_slice_in_dim(jnp.broadcast_to(eta0_given, u0.shape[1:]), first, Tb, axis=0)
    return two_pass(cfg, net, h, key, first, u0b, eta0_given, L_given, pid)


_COMPILED: "OrderedDict[Any, Any]" = OrderedDict()  # (cfg, argument types) -> compiled block
_COMPILED_MAX = 32


def _compiled_block(bcfg: Config, args):
    """The compiled ``_block`` for these argument types, traced and compiled here (in the
    calling thread), so that the block threads only execute it (no concurrent tracing or
    compilation).  The last ``_COMPILED_MAX`` programs are kept."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    key = (bcfg, tree, tuple(jax.typeof(x) for x in leaves))
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
    else:
        _COMPILED[key] = _block.trace(bcfg, *args).lower().compile()
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return _COMPILED[key]


_POOL: list = []  # [ThreadPoolExecutor, its size]: one pool for the process, its threads reused


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of at least ``n`` worker threads, kept for later runs (threads are not
    created and torn down per run)."""
    if not _POOL or _POOL[1] < n:
        size = max(n, cpu_cores())
        _POOL[:] = [ThreadPoolExecutor(max_workers=size, thread_name_prefix="momentssn-block"), size]
    return _POOL[0]


def _execute(compiled, *args):
    """One block in its thread, waited for there (so the blocks' programs overlap)."""
    return jax.block_until_ready(compiled(*args))


def _shift(out, keepf, delta, n_win):
    """The sums of one block (see the module docstring) about ref_a - delta."""
    B, Tb, N = out["tS1"].shape
    Gb = out["gS2"].shape[1]
    nt = (keepf * n_win)[..., None]  # (B, Tb, 1) window samples of each kept trial
    d = delta[:, None, :]  # (B, 1, N)
    S1 = out["tS1"]
    gS1 = S1.reshape(B, Gb, Tb // Gb, N).sum(2)  # (B, Gb, N)
    ng = nt[..., 0].reshape(B, Gb, Tb // Gb).sum(-1)[..., None, None]  # (B, Gb, 1, 1)
    dd = d[:, :, :, None] * d[:, :, None, :]  # (B, 1, N, N)
    gS2 = (out["gS2"] + gS1[..., :, None] * d[:, :, None, :] + d[:, :, :, None] * gS1[..., None, :]
           + ng * dd)
    return S1 + nt * d, out["tS2"] + 2.0 * d * S1 + nt * d * d, gS2


@jax.jit(static_argnums=(0, 1))
def _merge(cfg: Config, squeeze: bool, parts) -> SimulationResult:
    """Blocks ((out, keep), ...) of the run ``cfg`` (all trials) -> its result."""
    dtype = jnp.dtype(cfg.dtype)
    n_win = cfg.n_steps - cfg.n_burn
    keeps = [k.astype(dtype) for _, k in parts]
    w = jnp.stack([k.sum(-1) for k in keeps])  # (n, B) kept trials per block
    refs = jnp.stack([o["ref"] for o, _ in parts])  # (n, B, N)
    ref = jnp.sum(w[..., None] * refs, 0) / jnp.maximum(jnp.sum(w, 0), 1.0)[:, None]
    shifted = [_shift(o, kf, r - ref, n_win) for (o, _), kf, r in zip(parts, keeps, refs)]
    cat = lambda xs: jnp.concatenate(xs, axis=1)  # noqa: E731  (blocks along trials / groups)
    out = {"ref": ref, "tS1": cat([s[0] for s in shifted]), "tS2": cat([s[1] for s in shifted]),
           "gS2": cat([s[2] for s in shifted]), "div_step": cat([o["div_step"] for o, _ in parts])}
    return finalize(cfg, out, cat([k for _, k in parts]), squeeze)


def run_blocks(cfg: Config, n: int, squeeze: bool, net: SSN, h, key, u0, eta0_given, L_given,
               pid) -> SimulationResult:
    """The run ``cfg`` (all trials, no records) as ``n`` blocks of ``cfg.n_trials / n`` trials,
    one host thread each; ``cfg.chunk`` / ``cfg.n_chunks`` are the blocks'.  The block
    program is traced and compiled in the calling thread; the threads only run it.  Only
    block 0 reports progress (the blocks advance together)."""
    Tb = cfg.n_trials // n
    bcfg = cfg._replace(n_trials=Tb, groups=cfg.groups // n)
    args = [(net, h, key, jnp.int32(a * Tb), u0, eta0_given, L_given, pid if a == 0 else jnp.int32(-1))
            for a in range(n)]
    compiled, pool = _compiled_block(bcfg, args[0]), _pool(n)
    futures = [pool.submit(_execute, compiled, *a) for a in args]
    parts = tuple(f.result() for f in futures)
    return _merge(cfg, squeeze, parts)
