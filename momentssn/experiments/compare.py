"""Training methods side by side, judged by long simulations.

One entry point per training run, whatever the method::

    run = ms.train_run("bptt", "ring", task, budget_s=300, seed=0, out="out/bptt")

and a comparison of several (method, network) pairs on the same task, seeds and
wall-time budget::

    summary = ms.compare_methods(task, runs=DEFAULT_RUNS, seeds=(0,), budget_s=300, out="out/cmp")

Methods (``METHODS``):

* ``"moments-lbfgs"`` -- L-BFGS on the stationary closure loss (``momentssn.fit``);
* ``"moments-adam"``  -- Adam on the stationary closure loss (``train_moments_adam``);
* ``"bptt"``          -- Adam on moments of simulated trials, BPTT (``train_bptt``);
* ``"growth"``        -- dynamics-neutral growth of a general network (``grow``),
  BPTT between splits, on a doubling schedule (1, 2, 4, ... cells per population).

Networks (``NETS``): ``baseline15`` (15 parameters), ``ring`` (211), ``general``
(20003).  Growth always grows a general network (``--net general``).

Every method records its own training loss (closure moments for the moment methods,
simulated moments for BPTT, the current stage's targets for growth), which are not
comparable with each other.  The common yardstick is ``simulated_score``
(``momentssn.losses.simulated``): the loss (eq. 7, default weights) of the final
network's moments *measured by a long simulation*, the ground truth the closure only
approximates; the closure's loss of the same network (``network_closure_loss``) stands
beside it.  A run fails when it raises, ends unstable (no finite closure loss, or
every simulated trial of a stimulus diverges) or leaves no network.

:func:`run_comparison` computes; :func:`compare_methods` also writes ``summary.json``,
``report.md`` and the figures (:mod:`.compare_report`).
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np

from .._util import atomic_write_bytes
from ..growth.grow import grow
from ..losses.closure import network_closure_loss
from ..losses.simulated import SimulatedScore, simulated_score
from ..params.base import get_parameterization
from ..params.ring import echeveste_theta
from ..progress import Progress, ProgressFn, report
from ..tasks import Task
from ..training.adam import train_bptt, train_moments_adam
from ..training.fit import fit
from .compare_report import write_comparison
from .console import as_callback

__all__ = [
    "METHODS",
    "NETS",
    "DEFAULT_RUNS",
    "TrainingRun",
    "ScoredRun",
    "train_run",
    "run_comparison",
    "compare_methods",
    "doubling_sizes",
]

METHODS = ("moments-lbfgs", "moments-adam", "bptt", "growth")
NETS = ("baseline15", "ring", "general")
DEFAULT_RUNS: Tuple[Tuple[str, str], ...] = (
    ("bptt", "ring"),
    ("growth", "general"),
    ("moments-lbfgs", "baseline15"),
)


class TrainingRun(NamedTuple):
    """One training run.

    method, net_kind, seed: what was run.
    trace: dict of lists ``iteration``, ``wall_time_s``, ``loss`` (the method's own
        training loss, see ``loss_kind``).
    loss_kind: what ``trace["loss"]`` measures.
    net: the final ``SSN`` (None if the run failed before producing one).
    inputs: (S, N) its inputs h (mV) for the task's stimuli, in network cell order.
    target_mean, target_cov: (S, M), (S, M, M) the targets of its first M (E) cells.
    params: JSON-ready description of the final parameters (None for growth: 20003
        numbers are written to ``theta.npy`` instead).
    wall_time_s: seconds of training.
    failed: bool; failure: why.
    """

    method: str
    net_kind: str
    seed: int
    trace: dict
    loss_kind: str
    net: object
    inputs: Optional[np.ndarray]
    target_mean: np.ndarray
    target_cov: np.ndarray
    params: Optional[dict]
    wall_time_s: float
    failed: bool
    failure: str

    @property
    def label(self) -> str:
        return f"{self.method} ({self.net_kind}, seed {self.seed})"


def doubling_sizes(n_e: int, n_i: int) -> list:
    """Growth schedule (1, 1), (2, 2), (4, 4), ... up to (n_e, n_i) (I in proportion)."""
    sizes, k = [], 1
    while True:
        e = min(k, n_e)
        i = max(1, min(n_i, round(e * n_i / n_e)))
        if not sizes or (e, i) != sizes[-1]:
            sizes.append((e, i))
        if e == n_e:
            break
        k *= 2
    if sizes[-1] != (n_e, n_i):
        sizes.append((n_e, n_i))
    return sizes


# --------------------------------------------------------------------------- one run
def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _trace_from_adam(history, offset_iter=0, offset_time=0.0):
    return dict(
        iteration=[offset_iter + int(s) for s in history["step"]],
        wall_time_s=[offset_time + float(t) for t in history["wall_time_s"]],
        loss=[float(v) for v in history["loss"]],
    )


def _lbfgs_run(param, task, *, budget_s, seed, steps, out, resume, progress):
    """L-BFGS from where fit-baseline starts (or, resuming, from the checkpoint in ``out``)."""
    res = fit(param, task, method="jaxopt", max_iter=steps or 10_000, max_time=budget_s,
              theta0=echeveste_theta(param, task.inputs), seed=seed, progress=progress,
              checkpoint_dir=None if out is None else Path(out) / "checkpoint", resume=resume)
    hist, times = res.history[0], res.times[0]
    trace = dict(iteration=list(range(len(hist))), wall_time_s=list(times), loss=list(hist))
    return np.asarray(res.theta), trace, "closure (stationary)"


def _param_run(method, net_kind, task, *, budget_s, seed, steps, sim, out, resume, progress, t0):
    """A run of a fixed-size parameterization (every method but growth)."""
    param = get_parameterization(net_kind, m=task.n_exc)
    if method == "moments-lbfgs":
        theta, trace, kind = _lbfgs_run(param, task, budget_s=budget_s, seed=seed, steps=steps, out=out,
                                        resume=resume, progress=progress)
    else:
        common = dict(steps=steps or 100_000, seed=seed, max_time=budget_s, resume=resume, progress=progress,
                      checkpoint_dir=None if out is None else Path(out) / "checkpoint")
        if method == "moments-adam":
            res, kind = train_moments_adam(param, task, **common), "closure (stationary)"
        else:
            res, kind = train_bptt(param, task, **sim, **common), "simulated (BPTT estimate)"
        theta, trace = np.asarray(res.theta), _trace_from_adam(res.history)
    th = jnp.asarray(theta)
    if out is not None:
        param.save_json(th, Path(out) / "params.json")
    return TrainingRun(method, net_kind, seed, trace, kind, param.network(th),
                       np.asarray(param.inputs(th, jnp.asarray(task.inputs))), np.asarray(task.target_mean),
                       np.asarray(task.target_cov), json.loads(param.to_json(th)), time.perf_counter() - t0,
                       False, "")


def _growth_run(task, *, budget_s, seed, steps, sim, out, resume, progress, t0):
    """Growth of a general network on a doubling schedule, BPTT between splits."""
    n_e = task.n_targets
    n_i = task.n_net - task.n_exc or n_e
    sizes = doubling_sizes(n_e, n_i)
    deadline = t0 + budget_s

    def train_fn(param, sub, theta, n_steps, seed, checkpoint_dir=None, resume=False):
        # what is left of the budget, shared by this stage and the ones to come
        # (the stage from the network's size: also right when grow resumes)
        stage = sizes.index((param.n_e, param.n_i))
        left = max(deadline - time.perf_counter(), 1.0) / (len(sizes) - stage)
        return train_bptt(param, sub, theta0=theta, steps=n_steps, seed=seed, max_time=left,
                          checkpoint_dir=checkpoint_dir, resume=resume, progress=None, **sim)

    g = grow(task, sizes=sizes, steps_per_stage=steps or 100_000, train_fn=train_fn, seed=seed,
             checkpoint_dir=None if out is None else Path(out) / "growth", resume=resume, progress=progress)
    trace, it0, tt = dict(iteration=[], wall_time_s=[], loss=[]), 0, 0.0
    for st in g.stages:
        if st.train_history:
            part = _trace_from_adam(st.train_history, it0, tt)
            for k in trace:
                trace[k] += part[k]
        it0 += st.steps
        tt += st.wall_time_s
    inputs = np.asarray(g.param.inputs(jnp.asarray(g.theta), jnp.asarray(g.task.inputs)))
    if out is not None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(g.theta))
        atomic_write_bytes(Path(out) / "theta.npy", buf.getvalue())
    return TrainingRun("growth", "general", seed, trace, "simulated (BPTT, current stage's targets)", g.net,
                       inputs, np.asarray(g.task.target_mean), np.asarray(g.task.target_cov), None,
                       time.perf_counter() - t0, False, "")


def train_run(
    method: str,
    net_kind: str,
    task: Task,
    *,
    budget_s: float = 300.0,
    seed: int = 0,
    steps: Optional[int] = None,
    sim: Optional[dict] = None,
    out=None,
    resume: bool = False,
    progress: Optional[ProgressFn] = None,
) -> TrainingRun:
    """Train with one method under a wall-time budget; a failed run is returned, not raised.

    Args:
        method: one of ``METHODS``; net_kind: one of ``NETS`` (``general`` for growth).
        task: the task.
        budget_s: wall-time budget of the training (s).
        seed: seed of the method (noise for BPTT, initialization for growth,
            restarts for L-BFGS).
        steps: optional cap on iterations (default: only the budget stops it).
        sim: BPTT simulation settings (``n_trials``, ``t_max``, ``t_avg``, ``dt``).
        out: folder for checkpoints and the final parameters (``params.json``, or
            ``theta.npy`` for growth).
        resume: continue from the checkpoints in ``out``; ``FileNotFoundError``
            (raised, not a failed run) when there are none.
        progress: ``Progress`` callback of the training (``None``: silent); a failed
            run reports its failure through it.

    Bad arguments raise ``ValueError``.
    """
    _check_choice("method", method, METHODS)
    _check_choice("net", net_kind, NETS)
    if method == "growth" and net_kind != "general":
        raise ValueError(f"growth grows a general network: use net 'general', got {net_kind!r}")
    if not (budget_s > 0 and math.isfinite(budget_s)):
        raise ValueError(f"budget_s must be a finite number > 0, got {budget_s!r}")
    progress = as_callback(progress)
    kw = dict(budget_s=budget_s, seed=seed, steps=steps, sim=dict(sim or {}), out=out, resume=resume,
              progress=progress, t0=time.perf_counter())
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    try:
        if method == "growth":
            return _growth_run(task, **kw)
        return _param_run(method, net_kind, task, **kw)
    except FileNotFoundError as exc:
        if resume:  # nothing to resume from: the caller's mistake, not a failed run
            raise
        return _failed(method, net_kind, task, kw, progress, exc)
    except Exception as exc:  # a failed run is a result of the comparison, not a crash
        return _failed(method, net_kind, task, kw, progress, exc)


def _failed(method, net_kind, task, kw, progress, exc: BaseException) -> TrainingRun:
    """A run that raised ``exc``, as a failed ``TrainingRun``."""
    msg = f"{type(exc).__name__}: {exc}"
    report(progress, Progress(f"train {method}:{net_kind}", 0, message=f"FAILED: {msg}"))
    return TrainingRun(method, net_kind, kw["seed"], dict(iteration=[], wall_time_s=[], loss=[]), "", None, None,
                       np.asarray(task.target_mean), np.asarray(task.target_cov), None,
                       time.perf_counter() - kw["t0"], True, msg)


# --------------------------------------------------------------------------- the comparison
class ScoredRun(NamedTuple):
    """A training run with its scores: ``sim`` (``SimulatedScore`` or None if the run
    failed), ``closure`` (closure loss of the final network, NaN if none), ``failed``
    and ``failure`` (the run's, or why its network failed the scoring), ``tag``."""

    run: TrainingRun
    sim: Optional[SimulatedScore]
    closure: float
    failed: bool
    failure: str
    tag: str


def _score(run: TrainingRun, tag: str, score: dict) -> ScoredRun:
    if run.failed:
        return ScoredRun(run, None, float("nan"), True, run.failure, tag)
    closure = network_closure_loss(run.net, run.inputs, run.target_mean, run.target_cov).loss
    sc = simulated_score(run.net, run.inputs, run.target_mean, run.target_cov, **score)
    if not math.isfinite(sc.loss):
        return ScoredRun(run, sc, closure, True,
                         f"simulation diverged (diverged trials per stimulus {sc.n_diverged.tolist()})", tag)
    return ScoredRun(run, sc, closure, False, "", tag)


def run_comparison(task: Task, *, runs: Sequence[Tuple[str, str]] = DEFAULT_RUNS, seeds: Sequence[int] = (0,),
                   budget_s: float = 300.0, steps: Optional[int] = None, runs_dir=None, sim: Optional[dict] = None,
                   score: Optional[dict] = None, progress: Optional[ProgressFn] = None) -> List[ScoredRun]:
    """Train every (method, net) of ``runs`` for every seed with the same budget and
    score each final network (module docstring).  ``runs_dir``: folder of the runs'
    checkpoints and parameters (one sub-folder per run; None: none).  Returns the
    scored runs in order."""
    for method, net_kind in runs:
        _check_choice("method", method, METHODS)
        _check_choice("net", net_kind, NETS)
    progress = as_callback(progress)
    results = []
    for method, net_kind in runs:
        for seed in seeds:
            tag = f"{method}_{net_kind}_seed{seed}"
            say = lambda msg: report(progress, Progress(f"compare {tag}", 0, message=msg))  # noqa: E731
            say(f"training for up to {budget_s:.0f} s")
            run = train_run(method, net_kind, task, budget_s=budget_s, seed=seed, steps=steps, sim=sim,
                            out=None if runs_dir is None else Path(runs_dir) / tag, progress=progress)
            if not run.failed:
                say("scoring by a long simulation")
            r = _score(run, tag, dict(score or {}))
            simloss = "-" if r.sim is None else f"{r.sim.loss:.4g}"
            say(f"{'FAILED: ' + r.failure if r.failed else 'ok'}; simulated loss {simloss}; "
                f"closure loss {r.closure:.4g}; {run.wall_time_s:.0f} s")
            results.append(r)
    return results


def compare_methods(
    task: Task,
    *,
    runs: Sequence[Tuple[str, str]] = DEFAULT_RUNS,
    seeds: Sequence[int] = (0,),
    budget_s: float = 300.0,
    steps: Optional[int] = None,
    out="out/compare",
    sim: Optional[dict] = None,
    score: Optional[dict] = None,
    progress: Optional[ProgressFn] = None,
) -> dict:
    """Run every (method, net) of ``runs`` for every seed with the same budget, score
    each final network by a long simulation (``simulated_score``) and write
    ``summary.json``, ``report.md`` and figures to ``out`` (the runs' checkpoints in
    ``out/runs``).  Returns the summary dict.  ``steps`` optionally caps the
    iterations of every run (per stage for growth).

    The summary names the method with the lowest simulated loss (median over its
    successful seeds) and the wall time it took, and the fraction of failed seeds of
    every method.
    """
    t0 = time.perf_counter()
    results = run_comparison(task, runs=runs, seeds=seeds, budget_s=budget_s, steps=steps,
                             runs_dir=Path(out) / "runs", sim=sim, score=score, progress=progress)
    settings = dict(task=task.name, seeds=list(seeds), budget_s=budget_s, steps=steps, runs=[list(r) for r in runs],
                    score_settings=dict(score or {}), bptt_settings=dict(sim or {}))
    return write_comparison(results, settings, out, total_wall_time_s=time.perf_counter() - t0)
