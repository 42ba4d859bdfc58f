"""The 15-parameter baseline fit as an experiment (``momentssn fit-baseline``).

:func:`fit_baseline` fits ``Baseline15`` to a task in two stages and judges the result
by simulation:

1. **closure fit**: L-BFGS on the stationary closure (``momentssn.fit``) from the
   published optimizer's start (``echeveste_theta``), until it converges (relative
   decrease below 1e-6 three times in a row, or the gradient below tolerance), or hits
   its iteration cap or time cap;
2. **iterated closure correction** (``momentssn.fit_corrected``, the default; ``None``
   skips it): simulate the network, refit the closure to targets shifted by the
   simulated-minus-closure discrepancy and take the first of the steps 1, 1/2, 1/4 along
   the refit that lowers the simulated loss by more than 2 %, at most
   ``Correction.rounds`` times.  An L-BFGS fit on the closure alone settles
   where the Gaussian closure is wrong (near threshold): on the published task its
   simulated loss is ~1.5x the published network's, the corrected fit's ~0.45x;
3. **score**: the simulated loss (eq. 7, ``simulated_score``, Monte Carlo SE by
   jackknife) of the fitted network, of the closure-only fit and of the published
   network (same inputs, same noise seed: common random numbers), with a noise seed no
   correction round used.

Files written into ``out``: ``checkpoint.npz`` (the closure fit, after every iteration)
and ``correction/checkpoint.npz`` (after every correction round): an interrupted run
resumes where it stopped; ``result.json`` (the fitted network's parameter document,
losses, iterations, why each stage stopped, the scores; strict JSON), ``scores.json``
and the figures and summaries of :func:`momentssn.experiments.report.baseline_report`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from .._util import atomic_write_json
from ..datasets import ECHEVESTE2020_PARAMS
from ..params.base import get_parameterization
from ..params.ring import echeveste_theta
from ..progress import Progress, ProgressFn, report
from ..tasks import Task
from ..training import checkpoint as ckpt
from ..training.corrected import CorrectedFitResult, SimulationSettings, fit_corrected, score_both
from ..training.fit import FitResult, fit
from .report import baseline_report

__all__ = ["fit_baseline", "BaselineRun", "Correction", "stop_reason"]


class Correction(NamedTuple):
    """The correction stage of :func:`fit_baseline` (``momentssn.fit_corrected``).

    rounds: refits at most; refit_iters, refit_time: each refit's L-BFGS iteration cap
    and time cap (s; a safety net: the iteration cap makes the result independent of the
    machine's speed);
    sim: how each round simulates; seed: the correction's noise seed;
    rtol: stop when no step lowers the simulated loss by more than this (relative);
    steps: fractions of each refit's step tried in turn.
    """

    rounds: int = 6
    refit_iters: int = 60
    refit_time: Optional[float] = 120.0
    sim: SimulationSettings = SimulationSettings()
    seed: int = 1000
    rtol: float = 0.02
    steps: tuple = (1.0, 0.5, 0.25)


class BaselineRun(NamedTuple):
    """What :func:`fit_baseline` returns: the closure fit, the correction (None if
    skipped), the fitted theta (the correction's best round, else the closure fit's),
    the scores (see ``scores.json``; None without check) and the report's summary."""

    fit: FitResult
    correction: Optional[CorrectedFitResult]
    theta: np.ndarray
    scores: Optional[dict]
    summary: dict


def stop_reason(res: FitResult) -> str:
    """Plain words for why a closure fit stopped (its last start's L-BFGS message)."""
    last = res.message.split("; ")[-1] if res.message else ""
    if last in ("relative decrease below ftol", "gradient below gtol"):
        return f"converged ({last}) after {res.iterations} iterations"
    if last == "max_time reached":
        return f"NOT converged: stopped at the time cap after {res.iterations} iterations"
    if last == "max_iter reached":
        return f"NOT converged: stopped at the iteration cap ({res.iterations} iterations)"
    return f"stopped after {res.iterations} iterations ({last or 'no iteration ran'})"


def _score_networks(param, task, thetas: dict, sim: SimulationSettings, seed: int, progress) -> dict:
    """Simulated (with Monte Carlo SE) and closure losses of named networks, same noise."""
    out = {}
    for name, theta in thetas.items():
        clos, sc = score_both(param, theta, task, sim, seed)
        out[name] = dict(simulated_loss=sc.loss, simulated_loss_se=sc.loss_se, closure_loss=clos.loss,
                         simulated_loss_per_stimulus=np.asarray(sc.loss_per_stimulus).tolist())
        report(progress, Progress("score", 0, message=f"{name:>18}: simulated loss {sc.loss:.4g} +- "
                                                      f"{sc.loss_se:.2g}   (closure loss {clos.loss:.4g})"))
    return out


def _result(task_label: str, loss_kind: str, res: FitResult, cor: Optional[CorrectedFitResult], theta,
            param, scores) -> dict:
    """result.json (strict JSON: a non-finite loss is null); ``network`` is the parameter
    document of the fitted network (``ms.load`` reads it back)."""
    theta = jnp.asarray(theta)
    doc = dict(network=json.loads(param.to_json(theta)), task=task_label, params=param.params_to_python(
        param.from_theta(theta)), theta=[float(v) for v in np.asarray(theta)],
        stages=dict(closure_fit=dict(loss=res.loss, loss_kind=loss_kind, loss_per_stimulus=res.loss_per_stimulus,
                                     iterations=res.iterations, restarts=res.restarts, wall_time_s=res.wall_time_s,
                                     method=res.method, message=res.message, stopped=stop_reason(res),
                                     history=res.history, theta=[float(v) for v in res.theta])))
    doc["loss"] = res.loss if cor is None else cor.rounds[cor.best_round].closure_loss
    doc["loss_kind"] = f"closure ({loss_kind}) of the fitted network"
    if cor is not None:
        doc["stages"]["correction"] = dict(
            stopped=cor.stopped, best_round=cor.best_round, wall_time_s=cor.wall_time_s,
            rounds=[dict(round=r.round, closure_loss=r.closure_loss, simulated_loss=r.simulated_loss,
                         wall_time_s=r.wall_time_s) for r in cor.rounds])
    if scores is not None:
        doc["scores"] = scores
    if res.iterations == 0:
        doc["loss_note"] = "no closure iteration completed within the budget"
    return doc


def fit_baseline(task: Task, out, *, task_label: str = "", method: str = "jaxopt", restarts: int = 0,
                 max_iter: int = 100, max_time: float = 240.0, seed: int = 0, loss: str = "stationary",
                 correction: Optional[Correction] = Correction(),
                 score: SimulationSettings = SimulationSettings(), score_seed: int = 777,
                 resume: bool = False, check: bool = True, progress: Optional[ProgressFn] = None) -> BaselineRun:
    """Fit Baseline15 to ``task`` (module docstring) and write results and figures to ``out``.

    Args:
        task: the task; ``task_label`` how result.json names it (e.g. the --task value).
        out: output folder (created).
        method, restarts, max_iter, max_time (s, all starts, compilation included),
            seed, loss: the closure fit's, as in :func:`momentssn.fit`.
        correction: the correction stage (``None``: closure fit only).
        score, score_seed: how the fitted, the closure-only and the published networks
            are scored by simulation (skipped with ``check=False``).
        resume: go on from the checkpoints in ``out``; ``FileNotFoundError`` naming the
            folder if there is none (a mistyped path must not restart from scratch).
        check: score by simulation and run the simulation check (``simulation_check.*``).
        progress: ``Progress`` callback (``None``: silent).
    """
    out = Path(out)
    param = get_parameterization("baseline15", m=int(task.n_exc))
    out.mkdir(parents=True, exist_ok=True)
    starts = "1 start" if restarts == 0 else f"{restarts + 1} starts (the first, then random restarts)"
    cap = "" if correction is None or correction.refit_time is None else f", time cap {correction.refit_time:.0f} s"
    plan = "closure fit only" if correction is None else (
        f"then up to {correction.rounds} correction rounds (refits of at most {correction.refit_iters} iterations{cap})")
    report(progress, Progress("fit-baseline", 0, message=(
        f"{f'resuming from the checkpoints in {out}: ' if resume else ''}fitting Baseline15 to task '{task.name}' "
        f"({task.inputs.shape[0]} stimuli): L-BFGS ({method}) on the closure, {starts}, at most {max_iter} "
        f"iterations per start, time cap {max_time:.0f} s; {plan}")))
    res = fit(param, task, method=method, restarts=restarts, seed=seed, max_iter=max_iter, max_time=max_time,
              loss=loss, theta0=echeveste_theta(param, task.inputs), checkpoint_dir=out, resume=resume,
              progress=progress)
    ran = "" if res.restarts == restarts + 1 else f" (ran {res.restarts} of {restarts + 1} starts)"
    report(progress, Progress("closure fit", res.iterations, loss=res.loss, elapsed_s=res.wall_time_s,
                              message=f"closure loss {res.loss:.4g}: {stop_reason(res)}{ran}"))
    theta, cor = np.asarray(res.theta), None
    if correction is not None:
        cdir = out / "correction"
        cor = fit_corrected(param, task, res.theta, rounds=correction.rounds, refit_time=correction.refit_time,
                            sim=correction.sim, seed=correction.seed, rtol=correction.rtol, steps=correction.steps,
                            fit_options=dict(method=method, loss=loss, max_iter=correction.refit_iters), checkpoint_dir=cdir,
                            resume=resume and ckpt.exists(cdir), progress=progress)
        theta = np.asarray(cor.theta)
        report(progress, Progress("correction", cor.best_round, elapsed_s=cor.wall_time_s,
                                  message=f"{cor.stopped}; kept round {cor.best_round}"))
    scores = None
    if check:
        nets = {"fitted": theta}
        if cor is not None:
            nets["closure-only fit"] = res.theta
        if int(task.n_exc) * 2 == int(np.shape(task.inputs)[1]):
            nets["published network"] = param.to_theta(dict(ECHEVESTE2020_PARAMS))
        report(progress, Progress("score", 0, message=(
            f"simulated loss (eq. 7) of {len(nets)} networks: {score.n_trials} trials x {score.t_max:.0f} ms, "
            f"dt {score.dt} ms, noise seed {score_seed} (no correction round used it)")))
        scores = dict(settings=score._asdict(), seed=score_seed,
                      networks=_score_networks(param, task, nets, score, score_seed, progress))
        atomic_write_json(out / "scores.json", scores)
    atomic_write_json(out / "result.json", _result(task_label or task.name, loss, res, cor, theta, param, scores))
    summary = baseline_report(param, task, theta, out, history=res.history, correction=cor, scores=scores,
                              simulate_check=check, progress=progress)
    return BaselineRun(res, cor, theta, scores, summary)
