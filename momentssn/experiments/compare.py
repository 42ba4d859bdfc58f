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
  BPTT between splits, on a doubling schedule (1, 2, 4, ... cells per population);
* ``"corrected"``     -- L-BFGS on the closure, then rounds of the iterated closure
  correction (``fit_corrected``) in the rest of the budget;
* ``"hybrid"``        -- L-BFGS on the closure, then Adam on the simulated loss (BPTT
  through the default Heun integrator) in the rest of the budget.
  (How these two split the budget, and why: :mod:`.compare_phases`.)

Networks (``NETS``): ``baseline15`` (15 parameters), ``ring`` (211), ``general``
(20003).  Growth always grows a general network (``--net general``).

Every method records its own training loss (closure moments for the moment methods,
simulated moments for BPTT, the current stage's targets for growth), which are not
comparable with each other.  The common yardstick is ``simulated_score``
(``momentssn.losses.simulated``): the loss (eq. 7, default weights) of the final
network's moments *measured by a long simulation*, with its Monte Carlo standard
error, the ground truth the closure only approximates; runs are ranked by it.  The
closure's loss of the same network (``network_closure_loss``) stands beside it, with
the gap (simulated / closure and simulated - closure).  Each run also keeps a few
snapshots of its network at geometrically spaced wall times (:mod:`.compare_snapshots`;
growth: in its last stage only, the earlier stages' networks being smaller), scored
after training with cheaper settings (:func:`.compare_score.snapshot_settings`), so the
figure shows simulated loss against wall time.  On the published task the published
network is scored the same way and drawn as a reference (:mod:`.compare_score`).  A run
fails when it raises, ends unstable (no finite closure loss, or every simulated trial
of a stimulus diverges) or leaves no network.

:func:`run_comparison` computes; :func:`compare_methods` also writes ``summary.json``,
``report.md`` and the figures (:mod:`.compare_report`).
"""

from __future__ import annotations

import inspect
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
from ..params.base import get_parameterization
from ..progress import Progress, ProgressFn, report
from ..tasks import Task
from ..training.adam import train_bptt, train_moments_adam
from ..training.corrected import SimulationSettings
from .compare_phases import (CORRECTION_ROUNDS, LBFGS_FRACTION, adam_trace, corrected_phase, hybrid_phase,
                             lbfgs_phase)
from .compare_report import write_comparison
from .compare_score import Reference, ScoredRun, published_reference, score_run, snapshot_settings
from .compare_snapshots import N_SNAPSHOTS, Recorder
from . import compare_store
from .console import as_callback

__all__ = [
    "METHODS",
    "NETS",
    "DEFAULT_RUNS",
    "TrainingRun",
    "ScoredRun",
    "Reference",
    "train_run",
    "run_comparison",
    "compare_methods",
    "doubling_sizes",
]

METHODS = ("moments-lbfgs", "moments-adam", "bptt", "growth", "corrected", "hybrid")
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
    snapshots: ``Snapshot``s of the network at a few wall times (increasing), the
        final network not included (:mod:`.compare_snapshots`).
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
    snapshots: tuple = ()

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


def _lbfgs_run(param, task, *, budget_s, seed, steps, out, resume, progress, recorder, theta0=None):
    """L-BFGS from theta0, default where fit-baseline starts (or, resuming, from the checkpoint in ``out``)."""
    theta, trace, kind, _ = lbfgs_phase(param, task, max_time=budget_s, seed=seed, steps=steps,
                                        folder=None if out is None else Path(out) / "checkpoint", resume=resume,
                                        progress=progress, recorder=recorder, theta0=theta0)
    return theta, trace, kind


def _two_phase_run(method, param, task, *, budget_s, seed, steps, sim, out, resume, progress, recorder, theta0,
                   t0, lbfgs_fraction, correction):
    """``corrected`` or ``hybrid``: L-BFGS for ``lbfgs_fraction`` of the budget, then
    the second phase until the budget ends (:mod:`.compare_phases`)."""
    if resume:
        raise ValueError(f"method {method!r} cannot resume (only its phases checkpoint); start it anew")
    theta, trace, _ = _lbfgs_run(param, task, budget_s=lbfgs_fraction * budget_s, seed=seed, steps=steps,
                                 out=None, resume=False, progress=progress, recorder=recorder, theta0=theta0)
    kw = dict(deadline=t0 + budget_s, seed=seed, steps=steps, progress=progress, recorder=recorder)
    if method == "corrected":
        theta, trace = corrected_phase(param, task, theta, trace, correction=correction, rounds=CORRECTION_ROUNDS,
                                       **dict(kw, seed=1000 + 100 * seed))
        return theta, trace, "closure (L-BFGS), then each correction round's simulated loss"
    theta, trace = hybrid_phase(param, task, theta, trace, sim=sim, **kw,
                                folder=None if out is None else Path(out) / "checkpoint")
    return theta, trace, "closure (L-BFGS), then simulated (BPTT estimate)"


def _param_run(method, net_kind, task, *, budget_s, seed, steps, sim, out, resume, progress, t0, recorder,
               lbfgs_fraction, correction, init=None):
    """A run of a fixed-size parameterization (every method but growth), from ``init(param, seed)``."""
    param = get_parameterization(net_kind, m=task.n_exc)
    theta0 = None if init is None else init(param, seed)
    if method == "moments-lbfgs":
        theta, trace, kind = _lbfgs_run(param, task, budget_s=budget_s, seed=seed, steps=steps, out=out,
                                        resume=resume, progress=progress, recorder=recorder, theta0=theta0)
    elif method in ("corrected", "hybrid"):
        theta, trace, kind = _two_phase_run(method, param, task, budget_s=budget_s, seed=seed, steps=steps, sim=sim,
                                            out=out, resume=resume, progress=progress, recorder=recorder,
                                            theta0=theta0, t0=t0, lbfgs_fraction=lbfgs_fraction,
                                            correction=correction)
    else:
        common = dict(steps=steps or 100_000, seed=seed, max_time=budget_s, resume=resume, progress=progress,
                      theta0=theta0, callback=recorder.adam_callback(param, task.inputs),
                      checkpoint_dir=None if out is None else Path(out) / "checkpoint")
        if method == "moments-adam":
            res, kind = train_moments_adam(param, task, **common), "closure (stationary)"
        else:
            res, kind = train_bptt(param, task, **sim, **common), "simulated (BPTT estimate)"
        theta, trace = np.asarray(res.theta), adam_trace(res.history)
    th = jnp.asarray(theta)
    if out is not None:
        param.save_json(th, Path(out) / "params.json")
    return TrainingRun(method, net_kind, seed, trace, kind, param.network(th),
                       np.asarray(param.inputs(th, jnp.asarray(task.inputs))), np.asarray(task.target_mean),
                       np.asarray(task.target_cov), json.loads(param.to_json(th)), time.perf_counter() - t0,
                       False, "", tuple(recorder.snapshots))


def _takes_callback(trainer) -> bool:
    """Whether a stage trainer accepts the ``callback`` keyword (the trainers of
    ``momentssn.growth.trainers`` do; one written before it existed gets no snapshots)."""
    try:
        params = inspect.signature(trainer).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "callback" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _growth_run(task, *, budget_s, seed, steps, sim, out, resume, progress, t0, recorder, stage_train=None,
                **_):
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
        # snapshots in the last stage only (the network has its full size there)
        callback = recorder.adam_callback(param, sub.inputs) if stage == len(sizes) - 1 else None
        if stage_train is not None:  # e.g. momentssn.growth.trainers.ClosureThenBPTT
            extra = dict(callback=callback) if callback is not None and _takes_callback(stage_train) else {}
            return stage_train(param, sub, theta, n_steps, seed, max_time=left, sim=sim,
                               checkpoint_dir=checkpoint_dir, resume=resume, **extra)
        return train_bptt(param, sub, theta0=theta, steps=n_steps, seed=seed, max_time=left,
                          checkpoint_dir=checkpoint_dir, resume=resume, progress=None, callback=callback, **sim)

    g = grow(task, sizes=sizes, steps_per_stage=steps or 100_000, train_fn=train_fn, seed=seed,
             checkpoint_dir=None if out is None else Path(out) / "growth", resume=resume, progress=progress)
    trace, it0, tt = dict(iteration=[], wall_time_s=[], loss=[]), 0, 0.0
    for st in g.stages:
        if st.train_history:
            part = adam_trace(st.train_history, it0, tt)
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
                       time.perf_counter() - t0, False, "", tuple(recorder.snapshots))


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
    init=None,
    stage_train=None,
    lbfgs_fraction: float = LBFGS_FRACTION,
    correction: SimulationSettings = SimulationSettings(),
    n_snapshots: int = N_SNAPSHOTS,
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
        init: start of every method but growth, ``init(param, seed) -> theta``
            (e.g. ``momentssn.params.init.paper_theta``); None: the default start.
        stage_train: growth's trainer of a stage, ``stage_train(param, sub, theta,
            n_steps, seed, *, max_time, sim, checkpoint_dir, resume, callback)`` (e.g.
            ``momentssn.growth.trainers.ClosureThenBPTT``; the last stage's snapshots
            come through ``callback``); None: BPTT.
        lbfgs_fraction: ``corrected`` and ``hybrid``: share of the budget of their
            L-BFGS phase (0 < f < 1; :mod:`.compare_phases`).
        correction: ``corrected``: how each round simulates (``SimulationSettings``).
        n_snapshots: snapshots of the network kept at wall times budget * 2^-k,
            k = n-1 .. 0 (``TrainingRun.snapshots``; 0: none).

    Bad arguments raise ``ValueError``.
    """
    _check_choice("method", method, METHODS)
    _check_choice("net", net_kind, NETS)
    if method == "growth" and net_kind != "general":
        raise ValueError(f"growth grows a general network: use net 'general', got {net_kind!r}")
    if not (budget_s > 0 and math.isfinite(budget_s)):
        raise ValueError(f"budget_s must be a finite number > 0, got {budget_s!r}")
    if not 0.0 < lbfgs_fraction < 1.0:
        raise ValueError(f"lbfgs_fraction must be in (0, 1), got {lbfgs_fraction!r}")
    if int(n_snapshots) != n_snapshots or n_snapshots < 0:
        raise ValueError(f"n_snapshots must be an integer >= 0, got {n_snapshots!r}")
    progress = as_callback(progress)
    t0 = time.perf_counter()
    kw = dict(budget_s=budget_s, seed=seed, steps=steps, sim=dict(sim or {}), out=out, resume=resume,
              progress=progress, t0=t0, recorder=Recorder(t0, budget_s, int(n_snapshots)),
              lbfgs_fraction=float(lbfgs_fraction), correction=SimulationSettings(*correction))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    try:
        if method == "growth":
            return _growth_run(task, stage_train=stage_train, **kw)
        return _param_run(method, net_kind, task, init=init, **kw)
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
def _tag(method: str, net_kind: str, seed: int) -> str:
    """The name of a run (its folder in ``runs_dir``, its row in the report)."""
    return f"{method}_{net_kind}_seed{seed}"


def run_comparison(task: Task, *, runs: Sequence[Tuple[str, str]] = DEFAULT_RUNS, seeds: Sequence[int] = (0,),
                   budget_s: float = 300.0, steps: Optional[int] = None, runs_dir=None, sim: Optional[dict] = None,
                   score: Optional[dict] = None, progress: Optional[ProgressFn] = None,
                   run_options: Optional[dict] = None, snapshot_score: Optional[dict] = None,
                   resume: bool = False) -> List[ScoredRun]:
    """Train every (method, net) of ``runs`` for every seed with the same budget and
    score each final network with ``score`` and its snapshots with ``snapshot_score``
    (``simulated_score`` settings; default :func:`.compare_score.snapshot_settings`)
    (module docstring).  ``runs_dir``: folder of the runs' checkpoints and parameters
    (one sub-folder per run; None: none); every finished (trained and scored) run is
    written there (:mod:`.compare_store`).  ``resume``: keep the finished runs found in
    ``runs_dir`` (``ValueError`` if one was made with other settings, ``FileNotFoundError``
    if there is none) and do only the others; a run that was interrupted starts anew,
    with its whole budget.
    ``run_options``: more keywords of :func:`train_run` (``init``, ``stage_train``,
    ``lbfgs_fraction``, ``correction``, ``n_snapshots``).  Returns the scored runs in order."""
    for method, net_kind in runs:
        _check_choice("method", method, METHODS)
        _check_choice("net", net_kind, NETS)
    if resume and runs_dir is None:
        raise ValueError("resume=True needs runs_dir (the folder of the finished runs)")
    if resume and not any(compare_store.exists(Path(runs_dir) / _tag(m, n, s)) for m, n in runs for s in seeds):
        raise FileNotFoundError(f"no finished run to resume in {runs_dir}; start without resume")
    progress = as_callback(progress)
    results = []
    for method, net_kind in runs:
        for seed in seeds:
            tag = _tag(method, net_kind, seed)
            say = lambda msg: report(progress, Progress(f"compare {tag}", 0, message=msg))  # noqa: E731
            folder = None if runs_dir is None else Path(runs_dir) / tag
            key = compare_store.run_key(task, method, net_kind, seed, budget_s=budget_s, steps=steps, sim=sim,
                                        score=score, snapshot_score=snapshot_score, run_options=run_options)
            if resume and compare_store.exists(folder):
                r = compare_store.load(folder, key)
                say(f"finished earlier, kept ({folder / compare_store.FILE})")
                results.append(r)
                continue
            say(f"training for up to {budget_s:.0f} s")
            run = train_run(method, net_kind, task, budget_s=budget_s, seed=seed, steps=steps, sim=sim,
                            out=folder, progress=progress, **(run_options or {}))
            if not run.failed:
                say(f"scoring the final network and {len(run.snapshots)} snapshots by simulation")
            r = score_run(run, tag, dict(score or {}), snapshot_score)
            if folder is not None:
                compare_store.save(folder, r, key)
            simloss = "-" if r.sim is None else f"{r.sim.loss:.4g} +- {r.sim.loss_se:.2g}"
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
    run_options: Optional[dict] = None,
    snapshot_score: Optional[dict] = None,
    reference: Optional[Reference] = None,
    resume: bool = False,
) -> dict:
    """Run every (method, net) of ``runs`` for every seed with the same budget, score
    each final network and its snapshots by simulation (``simulated_score``; see
    :func:`run_comparison`) and write ``summary.json``, ``report.md`` and figures to
    ``out`` (the runs' checkpoints in ``out/runs``).  Returns the summary dict.
    ``steps`` optionally caps the iterations of every run (per stage for growth).

    ``reference``: a network every run is reported against (a horizontal line in the
    figure, a ratio in the tables); default: on the published task the published
    network scored with ``score`` (:func:`.compare_score.published_reference`),
    otherwise none.  ``resume``: keep the runs an earlier, interrupted call with the
    same settings finished in ``out/runs`` (:func:`run_comparison`).

    The summary ranks the runs by simulated loss (with its Monte Carlo SE and the
    closure loss and closure-vs-simulation gap beside it), names the method with the
    lowest simulated loss (median over its successful seeds), the wall time it took and
    its margin over the next, and the fraction of failed seeds of every method.
    """
    t0 = time.perf_counter()
    results = run_comparison(task, runs=runs, seeds=seeds, budget_s=budget_s, steps=steps,
                             runs_dir=Path(out) / "runs", sim=sim, score=score, progress=progress,
                             run_options=run_options, snapshot_score=snapshot_score, resume=resume)
    if reference is None:
        reference = published_reference(task, dict(score or {}))
        if reference is not None:
            report(as_callback(progress), Progress("compare", 0, message=(
                f"{reference.label}: simulated loss {reference.loss:.4g} +- {reference.loss_se:.2g}")))
    options = {k: v for k, v in (run_options or {}).items() if isinstance(v, (int, float, str, tuple))}
    settings = dict(task=task.name, seeds=list(seeds), budget_s=budget_s, steps=steps, runs=[list(r) for r in runs],
                    score_settings=dict(score or {}), bptt_settings=dict(sim or {}), run_options=options,
                    snapshot_score_settings=(snapshot_settings(dict(score or {})) if snapshot_score is None
                                             else dict(snapshot_score)))
    return write_comparison(results, settings, out, total_wall_time_s=time.perf_counter() - t0, reference=reference)
