"""The 15-parameter baseline fit as an experiment (``momentssn fit-baseline``).

:func:`fit_baseline` fits ``Baseline15`` to a task by L-BFGS on the stationary
closure (``momentssn.fit``), starting from the published optimizer's start
(``echeveste_theta``) or from the checkpoint of an interrupted run, and writes into
``out``: the fit's checkpoint (``momentssn.training.checkpoint``, after every
iteration: an interrupted fit resumes where it stopped),
``result.json`` (loss, the 15 physical parameters, per-stimulus losses, iterations,
wall time, loss history and theta; strict JSON) and the figures and summaries of
:func:`momentssn.experiments.report.baseline_report`.
"""

from __future__ import annotations

import json

from pathlib import Path
from typing import NamedTuple, Optional

from .._util import atomic_write_json
from ..params.base import get_parameterization
from ..params.ring import echeveste_theta
from ..progress import Progress, ProgressFn, report
from ..tasks import Task
from ..training.fit import FitResult, fit
from .report import baseline_report

__all__ = ["fit_baseline", "BaselineRun"]


class BaselineRun(NamedTuple):
    """What :func:`fit_baseline` returns: the fit and the report's summary."""

    fit: FitResult
    summary: dict


def _result(task_label: str, loss_kind: str, res: FitResult, param) -> dict:
    """result.json of a fit (strict JSON: a non-finite loss is null, with the reason);
    ``network`` is the parameter document (``ms.load`` reads the network back from it)."""
    doc = dict(network=json.loads(param.to_json(res.theta)), task=task_label, loss=res.loss, params=res.params, loss_per_stimulus=res.loss_per_stimulus,
               iterations=res.iterations, restarts=res.restarts, wall_time_s=res.wall_time_s,
               method=res.method, loss_kind=loss_kind, message=res.message, history=res.history,
               theta=[float(v) for v in res.theta])
    if res.iterations == 0:
        doc["loss_note"] = "no iteration completed within the budget: the loss was never evaluated"
    return doc


def fit_baseline(task: Task, out, *, task_label: str = "", method: str = "jaxopt", restarts: int = 2,
                 max_iter: int = 300, max_time: float = 110.0, seed: int = 0, loss: str = "stationary",
                 resume: bool = False, check: bool = True, progress: Optional[ProgressFn] = None) -> BaselineRun:
    """Fit Baseline15 to ``task`` and write result.json, checkpoint and figures to ``out``.

    Args:
        task: the task; ``task_label`` how result.json names it (e.g. the --task value).
        out: output folder (created).
        method, restarts, max_iter, max_time (s, all starts, compilation included),
            seed, loss: as in :func:`momentssn.fit`.
        resume: go on from the checkpoint in ``out``; ``FileNotFoundError`` naming the
            folder if there is none (a mistyped path must not restart from scratch).
        check: score the fitted network by a simulation (``simulation_check.*``).
        progress: ``Progress`` callback (``None``: silent).
    """
    out = Path(out)
    param = get_parameterization("baseline15", m=int(task.n_exc))
    out.mkdir(parents=True, exist_ok=True)
    report(progress, Progress("fit-baseline", 0, message=(
        f"{f'resuming from the checkpoint in {out}: ' if resume else ''}fitting Baseline15 to task '{task.name}' "
        f"({task.inputs.shape[0]} stimuli) with L-BFGS ({method}), {restarts} restarts, budget {max_time:.0f} s")))
    # the published optimizer's start (a weak, nearly linear network); a resumed fit ignores it
    res = fit(param, task, method=method, restarts=restarts, seed=seed, max_iter=max_iter, max_time=max_time,
              loss=loss, theta0=echeveste_theta(param, task.inputs), checkpoint_dir=out, resume=resume,
              progress=progress)
    report(progress, Progress("fit-baseline", res.iterations, loss=res.loss, elapsed_s=res.wall_time_s,
                              message=f"final loss after {res.iterations} iterations"))
    atomic_write_json(out / "result.json", _result(task_label or task.name, loss, res, param))
    summary = baseline_report(param, task, res, out, simulate_check=check, progress=progress)
    return BaselineRun(res, summary)
