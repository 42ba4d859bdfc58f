"""The files of a comparison of training methods: ``summary.json`` (strict JSON),
``report.md``, ``loss_curves.png`` and ``simulated_vs_targets.png``.

:func:`summarize` turns the scored runs of ``run_comparison`` into the summary (rows,
per-method medians, the winner); :func:`write_comparison` writes it all.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence

import numpy as np

from .._util import atomic_write_json, atomic_write_text
from .plotting import new_figure, save

__all__ = ["summarize", "write_comparison"]


def _row(r) -> dict:
    run, sc = r.run, r.sim
    return dict(
        tag=r.tag, method=run.method, net=run.net_kind, seed=run.seed, failed=r.failed,
        failure=r.failure, loss_kind=run.loss_kind, iterations=len(run.trace["loss"]),
        final_training_loss=(run.trace["loss"][-1] if run.trace["loss"] else None),
        closure_loss=r.closure, simulated_loss=(None if sc is None else sc.loss),
        simulated_loss_per_stimulus=(None if sc is None else sc.loss_per_stimulus.tolist()),
        n_diverged=(None if sc is None else sc.n_diverged.tolist()), wall_time_s=run.wall_time_s,
        trace=run.trace, params=run.params,
    )


def summarize(results: Sequence, settings: dict, total_wall_time_s: float) -> dict:
    """The summary dict of a comparison: ``settings`` plus ``rows`` (one per run),
    ``per_method`` (failed fraction, median and best simulated loss, median wall time)
    and ``winner`` (lowest median simulated loss; None if every run failed)."""
    rows = [_row(r) for r in results]
    per_method = {}
    for method, net_kind in settings["runs"]:
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
    return dict(settings, per_method=per_method, winner=winner, rows=rows, total_wall_time_s=total_wall_time_s)


def _loss_curves_figure(results):
    fig, axes = new_figure(1, 2, size=(4.6, 3.4))
    for r in results:
        run = r.run
        if not run.trace["loss"]:
            continue
        loss = np.asarray(run.trace["loss"], float)
        loss = np.where(np.isfinite(loss), loss, np.nan)
        axes[0, 0].semilogy(run.trace["iteration"], loss, label=run.label)
        axes[0, 1].semilogy(run.trace["wall_time_s"], loss, label=run.label)
    axes[0, 0].set(xlabel="iteration", ylabel="training loss (each method's own)")
    axes[0, 1].set(xlabel="wall time (s)", ylabel="training loss (each method's own)")
    axes[0, 0].legend(fontsize=7)
    return fig


def _simulated_figure(scored):
    fig, axes = new_figure(1, 3, size=(3.6, 3.2))
    for r in scored:
        run, sc = r.run, r.sim
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
    return fig


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4g}"


def _markdown(summary: dict, figs: List[str]) -> str:
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
        L.append(f"| {k} | {v['failed_fraction']:.0%} | {_fmt(v['median_simulated_loss'])} | "
                 f"{_fmt(v['best_simulated_loss'])} | {v['median_wall_time_s']:.0f} |")
    L += ["", "| run | iterations | final training loss (own kind) | closure loss | simulated loss | failure |",
          "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        L.append(f"| {row['tag']} | {row['iterations']} | {_fmt(row['final_training_loss'])} ({row['loss_kind']}) | "
                 f"{_fmt(row['closure_loss'])} | {_fmt(row['simulated_loss'])} | {row['failure'] or ''} |")
    L += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figs]
    return "\n".join(L) + "\n"


def write_comparison(results: Sequence, settings: dict, out, total_wall_time_s: float) -> dict:
    """Write summary.json, the figures and report.md of the scored runs into ``out``;
    returns the summary (:func:`summarize`)."""
    out = Path(out)
    summary = summarize(results, settings, total_wall_time_s)
    atomic_write_json(out / "summary.json", summary)
    figs = [save(_loss_curves_figure(results), out / "loss_curves.png")]
    scored = [r for r in results if r.sim is not None]
    if scored:
        figs.append(save(_simulated_figure(scored), out / "simulated_vs_targets.png"))
    atomic_write_text(out / "report.md", _markdown(summary, figs))
    return summary
