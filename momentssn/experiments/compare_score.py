"""Scores of a comparison: every run's networks judged by simulation, and the published reference.

* :func:`score_run` -- the final network of a run by ``simulated_score`` with the
  comparison's settings (its Monte Carlo SE beside it) and by the closure
  (``network_closure_loss``), and each of its snapshots (:mod:`.compare_snapshots`)
  by ``simulated_score`` with the (cheaper) snapshot settings;
* :func:`published_reference` -- on the published task (``task.name ==
  "echeveste2020"``), the published network (``momentssn.datasets.ECHEVESTE2020_PARAMS``)
  scored exactly like the final networks: the reference line of the figure and the
  ratio every method is reported against.

Every score uses the same seed (``score["seed"]``, ``simulated_score``'s default unless
given): the same noise for every network, so differences between networks are not
Monte Carlo noise of the noise draws alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from ..datasets import ECHEVESTE2020_PARAMS
from ..losses.closure import network_closure_loss
from ..losses.simulated import SimulatedScore, simulated_score
from ..params.base import get_parameterization

__all__ = ["SnapshotScore", "ScoredRun", "Reference", "score_run", "published_reference", "snapshot_settings",
           "PUBLISHED_TASK"]

#: Name of the published task (``get_task("echeveste2020")``).
PUBLISHED_TASK = "echeveste2020"


class SnapshotScore(NamedTuple):
    """A snapshot's simulated loss: wall_time_s, iteration (the run's), loss, loss_se
    (Monte Carlo SE), final (True for the run's final network, scored with the final
    settings)."""

    wall_time_s: float
    iteration: int
    loss: float
    loss_se: float
    final: bool


class ScoredRun(NamedTuple):
    """A training run with its scores: ``sim`` (``SimulatedScore`` or None if the run
    failed), ``closure`` (closure loss of the final network, NaN if none), ``failed``
    and ``failure`` (the run's, or why its network failed the scoring), ``tag``, and
    ``snapshots``: a ``SnapshotScore`` per snapshot then the final network's, increasing
    in wall time."""

    run: object
    sim: Optional[SimulatedScore]
    closure: float
    failed: bool
    failure: str
    tag: str
    snapshots: tuple = ()


class Reference(NamedTuple):
    """A reference network's scores: label, simulated loss and its Monte Carlo SE,
    closure loss."""

    label: str
    loss: float
    loss_se: float
    closure: float


def snapshot_settings(score: dict) -> dict:
    """``simulated_score`` settings of the intermediate snapshots: ``score``'s, with at
    most 32 trials of at most 1.5 s (about 0.4x the cost of the default score)."""
    out = dict(score)
    out["n_trials"] = min(int(score.get("n_trials", 64)), 32)
    out["t_max"] = min(float(score.get("t_max", 2000.0)), 1500.0)
    if out["t_max"] <= float(score.get("burn_in", 500.0)):
        out["t_max"] = float(score.get("t_max", 2000.0))
    return out


def _snapshot_score(snap, run, settings: dict) -> SnapshotScore:
    sc = simulated_score(snap.net, snap.inputs, run.target_mean, run.target_cov, **settings)
    return SnapshotScore(snap.wall_time_s, snap.iteration, sc.loss, sc.loss_se, False)


def score_run(run, tag: str, score: dict, snapshot_score: Optional[dict] = None) -> ScoredRun:
    """Score the final network of ``run`` (a ``TrainingRun``) with ``score`` and its
    snapshots with ``snapshot_score`` (default :func:`snapshot_settings`)."""
    if run.failed:
        return ScoredRun(run, None, float("nan"), True, run.failure, tag)
    closure = network_closure_loss(run.net, run.inputs, run.target_mean, run.target_cov).loss
    sc = simulated_score(run.net, run.inputs, run.target_mean, run.target_cov, **score)
    settings = snapshot_settings(score) if snapshot_score is None else dict(snapshot_score)
    snaps = [_snapshot_score(s, run, settings) for s in getattr(run, "snapshots", ()) if s.wall_time_s
             < run.wall_time_s]
    snaps.append(SnapshotScore(run.wall_time_s, len(run.trace["loss"]), sc.loss, sc.loss_se, True))
    if not math.isfinite(sc.loss):
        return ScoredRun(run, sc, closure, True,
                         f"simulation diverged (diverged trials per stimulus {sc.n_diverged.tolist()})", tag,
                         tuple(snaps))
    return ScoredRun(run, sc, closure, False, "", tag, tuple(snaps))


def published_reference(task, score: dict) -> Optional[Reference]:
    """The published network scored like the final networks (``score``), if ``task``
    is the published one (its name is ``PUBLISHED_TASK``); else None."""
    if getattr(task, "name", None) != PUBLISHED_TASK:
        return None
    param = get_parameterization("baseline15", m=task.n_exc)
    theta = param.to_theta(dict(ECHEVESTE2020_PARAMS))
    net = param.network(theta)
    h = param.inputs(theta, jnp.asarray(task.inputs, theta.dtype))
    sc = simulated_score(net, h, task.target_mean, task.target_cov, **score)
    closure = network_closure_loss(net, h, task.target_mean, task.target_cov).loss
    return Reference("published (Echeveste et al. 2020)", sc.loss, sc.loss_se, float(np.asarray(closure)))
