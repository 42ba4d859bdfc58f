"""Stage trainers of growth: what trains the network between two splits.

A stage trainer is called once per stage by a growth driver (``grow``'s ``train_fn``
hook; ``momentssn.experiments.compare.train_run(..., stage_train=...)``) as

    trainer(param, task, theta, n_steps, seed, *, max_time, sim, checkpoint_dir, resume,
            callback) -> TrainResult (theta, history, steps)

with ``task`` the stage's sub-task (its first E cells' targets), ``max_time`` the stage's
share of the budget (s), ``sim`` the BPTT simulation settings (``n_trials``, ``t_max``,
``t_avg``, ``dt``), ``callback`` None or Adam's ``callback(t, theta, loss, aux)`` after
every step, t counted over the stage as in the result's history (``compare`` keeps
snapshots of the last stage with it; a trainer without the keyword gets none).  Three
are provided:

* :class:`BPTTStage`: Adam on moments of simulated trials (``train_bptt``): the
  simulation is the ground truth, but every step simulates S x n_trials trials;
* :class:`ClosureStage`: Adam on the stationary closure loss (``train_moments_adam``):
  cheap and deterministic, but it optimizes the Gaussian closure's moments, which the
  simulation does not reproduce near threshold;
* :class:`ClosureThenBPTT`: the closure for the first ``closure_fraction`` of the
  stage's time, then BPTT for the rest from where it got: the closure does the coarse
  work cheaply and the simulation corrects what the closure gets wrong.  BPTT may leave
  the region where the closure has a stable fixed point (the simulation stays finite,
  the Gaussian closure does not); a stage that starts there is BPTT only, since every
  closure step would be rejected.

Measured on the natural-image task at 8 x 8 patches, M = 4 (N = 8 cells, 15 stimuli;
targets not rescaled, before the skip above existed), 60 s per growth run, BPTT 32 trials x 300 ms at dt = 0.5 ms (a 2-core machine shared
with other jobs; simulated loss of the final network, 64 trials x 2 s): closure then BPTT
0.074, 0.074, 0.084, 0.076, 0.075 (5 runs); BPTT stages 0.135, 0.058, 0.133, 0.098, 0.109;
closure stages 0.114, 0.116, 0.143, 0.116, 0.120.  Closure then BPTT is the default of
``momentssn.experiments.natural_training``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp

from ..losses.closure import network_closure_loss
from ..training.adam import TrainResult, train_bptt, train_moments_adam

__all__ = ["BPTTStage", "ClosureStage", "ClosureThenBPTT", "STAGE_TRAINERS", "closure_stable"]


def _has_files(folder) -> bool:
    return folder is not None and Path(folder).is_dir() and any(Path(folder).iterdir())


def _bptt(param, task, theta, n_steps, seed, max_time, sim, checkpoint_dir, resume, learning_rate, callback):
    return train_bptt(param, task, theta0=theta, steps=n_steps, seed=seed, max_time=max_time,
                      learning_rate=learning_rate, checkpoint_dir=checkpoint_dir,
                      resume=resume and _has_files(checkpoint_dir), progress=None, callback=callback,
                      **dict(sim or {}))


def _closure(param, task, theta, n_steps, seed, max_time, checkpoint_dir, resume, learning_rate, callback):
    return train_moments_adam(param, task, theta0=theta, steps=n_steps, seed=seed, max_time=max_time,
                              learning_rate=learning_rate, checkpoint_dir=checkpoint_dir,
                              resume=resume and _has_files(checkpoint_dir), progress=None, callback=callback)


def _shifted(callback, offset: int):
    """``callback`` with its step count moved on by ``offset`` (None stays None)."""
    if callback is None:
        return None
    return lambda t, theta, loss, aux: callback(offset + t, theta, loss, aux)


class BPTTStage(NamedTuple):
    """Simulation-driven stages: ``train_bptt`` (Adam, step size ``learning_rate``)."""

    learning_rate: float = 1e-2

    def __call__(self, param, task, theta, n_steps, seed, *, max_time=None, sim=None, checkpoint_dir=None,
                 resume=False, callback=None) -> TrainResult:
        return _bptt(param, task, theta, n_steps, seed, max_time, sim, checkpoint_dir, resume, self.learning_rate,
                     callback)


class ClosureStage(NamedTuple):
    """Closure-driven stages: ``train_moments_adam`` (Adam on the stationary closure
    loss, step size ``learning_rate``); ``sim`` is ignored."""

    learning_rate: float = 1e-2

    def __call__(self, param, task, theta, n_steps, seed, *, max_time=None, sim=None, checkpoint_dir=None,
                 resume=False, callback=None) -> TrainResult:
        return _closure(param, task, theta, n_steps, seed, max_time, checkpoint_dir, resume, self.learning_rate,
                        callback)


def closure_stable(param, task, theta) -> bool:
    """Whether the stationary closure of ``param.network(theta)`` has a stable fixed
    point at every stimulus of ``task`` (its raw inputs through ``param.inputs``)."""
    theta = jnp.asarray(theta)
    h = param.inputs(theta, jnp.asarray(task.inputs, theta.dtype))
    return network_closure_loss(param.network(theta), h, task.target_mean, task.target_cov).stable


def _joined(first: TrainResult, second: TrainResult) -> TrainResult:
    """One result of two runs one after the other: steps renumbered and wall times
    offset so that the history reads as one run (its loss changes kind at the seam)."""
    h1, h2 = first.history, second.history
    n1, t1 = first.steps, first.wall_time_s
    history = {k: list(h1[k]) + list(h2[k]) for k in h1}
    history["step"] = list(h1["step"]) + [n1 + int(s) for s in h2["step"]]
    history["wall_time_s"] = list(h1["wall_time_s"]) + [t1 + float(t) for t in h2["wall_time_s"]]
    return TrainResult(theta=second.theta, history=history, n_rejected=first.n_rejected + second.n_rejected,
                       rejected_steps=list(first.rejected_steps) + [n1 + s for s in second.rejected_steps],
                       steps=n1 + second.steps, wall_time_s=t1 + second.wall_time_s)


class ClosureThenBPTT(NamedTuple):
    """Closure Adam for ``closure_fraction`` of the stage's ``max_time``, then BPTT for
    the rest (each phase at most ``n_steps`` steps).  Without ``max_time`` each phase
    takes ``n_steps``.  Checkpoints: ``checkpoint_dir/closure`` and
    ``checkpoint_dir/bptt``; resuming a stage whose BPTT phase had begun goes on with it
    (the closure phase's history is then not part of the result).  A stage whose start
    has no stable closure fixed point (:func:`closure_stable`) is BPTT for all its time."""

    closure_fraction: float = 0.5
    closure_learning_rate: float = 1e-2
    bptt_learning_rate: float = 1e-2

    def __call__(self, param, task, theta, n_steps, seed, *, max_time=None, sim=None, checkpoint_dir=None,
                 resume=False, callback=None) -> TrainResult:
        if not 0.0 < float(self.closure_fraction) < 1.0:
            raise ValueError(f"closure_fraction must lie in (0, 1), got {self.closure_fraction!r}")
        def sub(name):
            return None if checkpoint_dir is None else Path(checkpoint_dir) / name

        t_closure = None if max_time is None else float(self.closure_fraction) * float(max_time)
        if resume and _has_files(sub("bptt")):
            return _bptt(param, task, theta, n_steps, seed, None if max_time is None else max_time - t_closure, sim,
                         sub("bptt"), True, self.bptt_learning_rate, callback)
        if not closure_stable(param, task, theta):  # every closure step would be rejected
            return _bptt(param, task, theta, n_steps, seed, max_time, sim, sub("bptt"), False,
                         self.bptt_learning_rate, callback)
        first = _closure(param, task, theta, n_steps, seed, t_closure, sub("closure"), resume,
                         self.closure_learning_rate, callback)
        left = None if max_time is None else max(float(max_time) - first.wall_time_s, 0.0)
        second = _bptt(param, task, first.theta, n_steps, seed, left, sim, sub("bptt"), False,
                       self.bptt_learning_rate, _shifted(callback, first.steps))
        return _joined(first, second)


#: The stage trainers by name.
STAGE_TRAINERS = {"bptt": BPTTStage(), "closure": ClosureStage(), "closure+bptt": ClosureThenBPTT()}
