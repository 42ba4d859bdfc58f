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
comparable with each other.  The common yardstick is :func:`simulated_score`: the loss
(eq. 7, default weights) of the final network's moments *measured by a long
simulation*, the ground truth the closure only approximates.  A run fails when it
raises, ends unstable (no finite closure loss, or every simulated trial of a stimulus
diverges) or leaves no network.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np

from ..losses.simulated import SimulatedScore, simulated_score
from ..moments import Moments
from ..tasks import Task

__all__ = [
    "METHODS",
    "NETS",
    "DEFAULT_RUNS",
    "TrainingRun",
    "SimulatedScore",
    "train_run",
    "simulated_score",
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


def _param_run(method, net_kind, task, *, budget_s, seed, steps, sim, out, resume, progress):
    from ..params.base import get_parameterization

    param = get_parameterization(net_kind, m=task.n_exc)
    ckpt = None if out is None else Path(out) / "checkpoint"
    if method == "moments-lbfgs":
        from ..training.fit import fit

        from ..params.ring import echeveste_theta

        theta0 = echeveste_theta(param, task.inputs)  # where fit-baseline starts
        ck_json = None if out is None else Path(out) / "checkpoint.json"
        if resume and ck_json is not None and ck_json.exists():
            theta0 = param.load_json(ck_json)
        res = fit(param, task, method="jaxopt", max_iter=steps or 10_000, max_time=budget_s,
                  theta0=theta0, seed=seed, checkpoint=ck_json, progress=progress)
        hist, times = res.history[0], res.times[0]
        trace = dict(iteration=list(range(len(hist))), wall_time_s=list(times), loss=list(hist))
        return param, np.asarray(res.theta), trace, "closure (stationary)"
    from ..training import adam as tr

    common = dict(steps=steps or 100_000, seed=seed, max_time=budget_s, checkpoint_dir=ckpt,
                  resume=resume, progress=progress)
    if method == "moments-adam":
        res = tr.train_moments_adam(param, task, **common)
        kind = "closure (stationary)"
    else:
        res = tr.train_bptt(param, task, **sim, **common)
        kind = "simulated (BPTT estimate)"
    return param, np.asarray(res.theta), _trace_from_adam(res.history), kind


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
    progress: bool = True,
) -> TrainingRun:
    """Train with one method under a wall-time budget; never raises on a failed run.

    Args:
        method: one of ``METHODS``; net_kind: one of ``NETS`` (``general`` for growth).
        task: the task.
        budget_s: wall-time budget of the training (s).
        seed: seed of the method (noise for BPTT, initialization for growth,
            restarts for L-BFGS).
        steps: optional cap on iterations (default: only the budget stops it).
        sim: BPTT simulation settings (``n_trials``, ``t_max``, ``t_avg``, ``dt``).
        out: folder for checkpoints (``resume=True`` continues from them).
    """
    _check_choice("method", method, METHODS)
    _check_choice("net", net_kind, NETS)
    if method == "growth" and net_kind != "general":
        raise ValueError(f"growth grows a general network: use net 'general', got {net_kind!r}")
    if not (budget_s > 0 and math.isfinite(budget_s)):
        raise ValueError(f"budget_s must be a finite number > 0, got {budget_s!r}")
    sim = dict(sim or {})
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    empty = dict(iteration=[], wall_time_s=[], loss=[])
    try:
        if method == "growth":
            from ..growth.grow import grow
            from ..training.adam import train_bptt

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
                                  checkpoint_dir=checkpoint_dir, resume=resume, progress=False, **sim)

            g = grow(task, sizes=sizes, steps_per_stage=steps or 100_000, train_fn=train_fn, seed=seed,
                     checkpoint_dir=None if out is None else Path(out) / "growth", resume=resume,
                     progress=progress)
            trace, it0, tt = {k: [] for k in empty}, 0, 0.0
            for st in g.stages:
                if st.train_history:
                    part = _trace_from_adam(st.train_history, it0, tt)
                    for k in trace:
                        trace[k] += part[k]
                it0 += st.steps
                tt += st.wall_time_s
            net = g.net
            inputs = np.asarray(g.param.inputs(jnp.asarray(g.theta), jnp.asarray(g.task.inputs)))
            if out is not None:
                np.save(Path(out) / "theta.npy", np.asarray(g.theta))
            return TrainingRun(method, net_kind, seed, trace, "simulated (BPTT, current stage's targets)", net,
                               inputs, np.asarray(g.task.target_mean), np.asarray(g.task.target_cov), None,
                               time.perf_counter() - t0, False, "")
        param, theta, trace, kind = _param_run(method, net_kind, task, budget_s=budget_s, seed=seed,
                                               steps=steps, sim=sim, out=out, resume=resume,
                                               progress=progress)
        th = jnp.asarray(theta)
        net = param.network(th)
        inputs = np.asarray(param.inputs(th, jnp.asarray(task.inputs)))
        params = json.loads(param.to_json(th))
        if out is not None:
            param.save_json(th, Path(out) / "params.json")
        return TrainingRun(method, net_kind, seed, trace, kind, net, inputs, np.asarray(task.target_mean),
                           np.asarray(task.target_cov), params, time.perf_counter() - t0, False, "")
    except Exception as exc:  # a failed run is a result of the comparison, not a crash
        msg = f"{type(exc).__name__}: {exc}"
        if progress:
            traceback.print_exc()
        return TrainingRun(method, net_kind, seed, empty, "", None, None, np.asarray(task.target_mean),
                           np.asarray(task.target_cov), None, time.perf_counter() - t0, True, msg)


# --------------------------------------------------------------------------- the comparison
def _closure_loss(run: TrainingRun) -> float:
    from ..losses.moment import moment_loss
    from ..closure.stationary import stationary_solve

    m, info = stationary_solve(run.net, jnp.asarray(run.inputs))
    if not bool(np.all(np.asarray(info.stable))):
        return float("inf")
    M = run.target_mean.shape[1]
    mm = Moments(m.mean[:, :M], m.cov[:, :M, :M])
    return float(moment_loss(mm, jnp.asarray(run.target_mean), jnp.asarray(run.target_cov)))


def _figures(results, out: Path):
    from .plotting import new_figure, save

    fig, axes = new_figure(1, 2, size=(4.6, 3.4))
    for r in results:
        run = r["run"]
        if not run.trace["loss"]:
            continue
        loss = np.asarray(run.trace["loss"], float)
        loss = np.where(np.isfinite(loss), loss, np.nan)
        axes[0, 0].semilogy(run.trace["iteration"], loss, label=run.label)
        axes[0, 1].semilogy(run.trace["wall_time_s"], loss, label=run.label)
    axes[0, 0].set(xlabel="iteration", ylabel="training loss (each method's own)")
    axes[0, 1].set(xlabel="wall time (s)", ylabel="training loss (each method's own)")
    axes[0, 0].legend(fontsize=7)
    paths = [save(fig, out / "loss_curves.png")]

    ok = [r for r in results if r["sim"] is not None]
    if ok:
        fig, axes = new_figure(1, 3, size=(3.6, 3.2))
        for r in ok:
            run, sc = r["run"], r["sim"]
            tm, tc = run.target_mean, run.target_cov
            sv = np.diagonal(sc.moments.cov, axis1=-2, axis2=-1)
            axes[0, 0].plot(tm.ravel(), sc.moments.mean.ravel(), ".", ms=3, label=run.label)
            axes[0, 1].plot(np.sqrt(np.diagonal(tc, axis1=-2, axis2=-1)).ravel(), np.sqrt(sv).ravel(), ".", ms=3)
            axes[0, 2].bar(run.label, sc.loss)
        for ax in axes[0, :2]:
            lo, hi = ax.get_xlim()
            ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
        axes[0, 0].set(xlabel="target mean (mV)", ylabel="simulated mean (mV)")
        axes[0, 1].set(xlabel="target std (mV)", ylabel="simulated std (mV)")
        axes[0, 2].set(ylabel="simulated loss (eq. 7)", yscale="log")
        axes[0, 2].tick_params(axis="x", labelrotation=60, labelsize=6)
        axes[0, 0].legend(fontsize=6)
        paths.append(save(fig, out / "simulated_vs_targets.png"))
    return paths


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
    progress: bool = True,
) -> dict:
    """Run every (method, net) of ``runs`` for every seed with the same budget, score
    each final network by a long simulation (:func:`simulated_score`) and write
    ``summary.json``, ``report.md`` and figures to ``out``.  Returns the summary dict.
    ``steps`` optionally caps the iterations of every run (per stage for growth).

    The summary names the method with the lowest simulated loss (median over its
    successful seeds) and the wall time it took, and the fraction of failed seeds of
    every method.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for method, net_kind in runs:
        _check_choice("method", method, METHODS)
        _check_choice("net", net_kind, NETS)
    results = []
    t_all = time.perf_counter()
    for method, net_kind in runs:
        for seed in seeds:
            tag = f"{method}_{net_kind}_seed{seed}"
            if progress:
                print(f"[compare] {tag}: training for up to {budget_s:.0f} s", flush=True)
            run = train_run(method, net_kind, task, budget_s=budget_s, seed=seed, steps=steps, sim=sim,
                            out=out / "runs" / tag, progress=progress)
            sc, closure = None, float("nan")
            failed, failure = run.failed, run.failure
            if not failed:
                closure = _closure_loss(run)
                if progress:
                    print(f"[compare] {tag}: scoring by a long simulation", flush=True)
                sc = simulated_score(run.net, run.inputs, run.target_mean, run.target_cov, **(score or {}))
                if not math.isfinite(sc.loss):
                    failed, failure = True, f"simulation diverged (diverged trials per stimulus {sc.n_diverged.tolist()})"
            results.append(dict(run=run, sim=sc, closure=closure, failed=failed, failure=failure, tag=tag))
            if progress:
                simloss = "-" if sc is None else f"{sc.loss:.4g}"
                print(f"[compare] {tag}: {'FAILED: ' + failure if failed else 'ok'}; simulated loss {simloss}; "
                      f"closure loss {closure:.4g}; {run.wall_time_s:.0f} s", flush=True)

    rows = []
    for r in results:
        run, sc = r["run"], r["sim"]
        rows.append(dict(
            tag=r["tag"], method=run.method, net=run.net_kind, seed=run.seed, failed=r["failed"],
            failure=r["failure"], loss_kind=run.loss_kind, iterations=len(run.trace["loss"]),
            final_training_loss=(run.trace["loss"][-1] if run.trace["loss"] else None),
            closure_loss=r["closure"], simulated_loss=(None if sc is None else sc.loss),
            simulated_loss_per_stimulus=(None if sc is None else sc.loss_per_stimulus.tolist()),
            n_diverged=(None if sc is None else sc.n_diverged.tolist()), wall_time_s=run.wall_time_s,
            trace=run.trace, params=run.params,
        ))
    per_method = {}
    for method, net_kind in runs:
        mine = [row for row in rows if row["method"] == method and row["net"] == net_kind]
        good = [row for row in mine if not row["failed"]]
        per_method[f"{method}:{net_kind}"] = dict(
            failed_fraction=1.0 - len(good) / len(mine),
            median_simulated_loss=(float(np.median([row["simulated_loss"] for row in good])) if good else None),
            best_simulated_loss=(min(row["simulated_loss"] for row in good) if good else None),
            median_wall_time_s=float(np.median([row["wall_time_s"] for row in mine])),
        )
    ranked = sorted((v["median_simulated_loss"], k) for k, v in per_method.items()
                    if v["median_simulated_loss"] is not None)
    winner = None
    if ranked:
        k = ranked[0][1]
        winner = dict(run=k, median_simulated_loss=ranked[0][0], median_wall_time_s=per_method[k]["median_wall_time_s"])
    summary = dict(task=task.name, seeds=list(seeds), budget_s=budget_s, steps=steps, runs=[list(r) for r in runs],
                   per_method=per_method, winner=winner, rows=rows, total_wall_time_s=time.perf_counter() - t_all,
                   score_settings=dict(score or {}), bptt_settings=dict(sim or {}))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    figs = _figures(results, out)
    _write_report(summary, figs, out)
    return summary


def _write_report(summary: dict, figs, out: Path) -> None:
    L = [f"# Training methods compared on task '{summary['task']}'", ""]
    L.append(f"Seeds {summary['seeds']}, budget {summary['budget_s']:.0f} s of training per run; "
             f"total {summary['total_wall_time_s']:.0f} s. Every final network is scored by a long "
             "simulation (eq. 7 on simulated moments): the ground truth for every method.")
    L.append("")
    w = summary["winner"]
    if w:
        L.append(f"**Lowest simulated loss: {w['run']}** with median simulated loss {w['median_simulated_loss']:.4g}, "
                 f"reached in {w['median_wall_time_s']:.0f} s of wall time.")
    else:
        L.append("**Every run failed.**")
    L += ["", "| run | failed seeds | median simulated loss | best | median wall time (s) |", "|---|---|---|---|---|"]
    for k, v in summary["per_method"].items():
        fmt = lambda x: "-" if x is None else f"{x:.4g}"  # noqa: E731
        L.append(f"| {k} | {v['failed_fraction']:.0%} | {fmt(v['median_simulated_loss'])} | "
                 f"{fmt(v['best_simulated_loss'])} | {v['median_wall_time_s']:.0f} |")
    L += ["", "| run | iterations | final training loss (own kind) | closure loss | simulated loss | failure |",
          "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        fl = row["final_training_loss"]
        sl = row["simulated_loss"]
        L.append(f"| {row['tag']} | {row['iterations']} | {'-' if fl is None else f'{fl:.4g}'} ({row['loss_kind']}) | "
                 f"{row['closure_loss']:.4g} | {'-' if sl is None else f'{sl:.4g}'} | {row['failure'] or ''} |")
    L += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figs]
    (out / "report.md").write_text("\n".join(L) + "\n")
