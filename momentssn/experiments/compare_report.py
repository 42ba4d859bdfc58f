"""The files of a comparison of training methods: ``summary.json`` (strict JSON),
``report.md`` and the figures of :mod:`.compare_plot`.

:func:`summarize` turns the scored runs of ``run_comparison`` into the summary (rows
ranked by simulated loss, per-method medians, the winner and its margin, the
reference network); :func:`write_comparison` writes it all.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .._util import atomic_write_json, atomic_write_text
from .compare_plot import simulated_loss_figure, simulated_vs_targets_figure, training_loss_figure
from .plotting import save

__all__ = ["summarize", "write_comparison"]


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _ratio(a, b):
    return a / b if _finite(a) and _finite(b) and b > 0 else None


def _row(r, reference) -> dict:
    run, sc = r.run, r.sim
    sim = None if sc is None else sc.loss
    closure = float(r.closure)
    return dict(
        tag=r.tag, method=run.method, net=run.net_kind, seed=run.seed, failed=r.failed,
        failure=r.failure, simulated_loss=sim, simulated_loss_se=(None if sc is None else sc.loss_se),
        closure_loss=closure,
        gap_ratio=_ratio(sim, closure),  # simulated / closure
        gap_difference=(sim - closure if _finite(sim) and _finite(closure) else None),
        ratio_to_reference=(None if reference is None else _ratio(sim, reference.loss)),
        loss_kind=run.loss_kind, iterations=len(run.trace["loss"]),
        final_training_loss=(run.trace["loss"][-1] if run.trace["loss"] else None),
        simulated_loss_per_stimulus=(None if sc is None else sc.loss_per_stimulus.tolist()),
        n_diverged=(None if sc is None else sc.n_diverged.tolist()), wall_time_s=run.wall_time_s,
        snapshots=[p._asdict() for p in r.snapshots], trace=run.trace, params=run.params,
    )


def _sort_key(row):
    return (row["failed"] or not _finite(row["simulated_loss"]), row["simulated_loss"] or 0.0)


def _per_method(rows, runs, reference) -> dict:
    out = {}
    for method, net_kind in runs:
        mine = [row for row in rows if row["method"] == method and row["net"] == net_kind]
        good = [row for row in mine if not row["failed"]]
        med = float(np.median([row["simulated_loss"] for row in good])) if good else None
        out[f"{method}:{net_kind}"] = dict(
            failed_fraction=1.0 - len(good) / len(mine),
            median_simulated_loss=med,
            median_simulated_loss_se=(float(np.median([row["simulated_loss_se"] for row in good])) if good else None),
            best_simulated_loss=(min(row["simulated_loss"] for row in good) if good else None),
            median_closure_loss=(float(np.median([row["closure_loss"] for row in good])) if good else None),
            ratio_to_reference=(None if reference is None else _ratio(med, reference.loss)),
            median_wall_time_s=float(np.median([row["wall_time_s"] for row in mine])),
        )
    return out


def _winner(per_method) -> Optional[dict]:
    ranked = sorted((v["median_simulated_loss"], k) for k, v in per_method.items()
                    if v["median_simulated_loss"] is not None)
    if not ranked:
        return None
    k = ranked[0][1]
    w = per_method[k]
    out = dict(run=k, median_simulated_loss=w["median_simulated_loss"], se=w["median_simulated_loss_se"],
               median_wall_time_s=w["median_wall_time_s"], ratio_to_reference=w["ratio_to_reference"])
    if len(ranked) > 1:  # the margin over the next method, in ratio and in (combined) standard errors
        nxt = per_method[ranked[1][1]]
        se = math.hypot(w["median_simulated_loss_se"] or 0.0, nxt["median_simulated_loss_se"] or 0.0)
        diff = nxt["median_simulated_loss"] - w["median_simulated_loss"]
        out.update(runner_up=ranked[1][1], runner_up_ratio=_ratio(nxt["median_simulated_loss"],
                                                                   w["median_simulated_loss"]),
                   margin_in_se=(diff / se if se > 0 and math.isfinite(se) else None))
    return out


def summarize(results: Sequence, settings: dict, total_wall_time_s: float, reference=None) -> dict:
    """The summary dict of a comparison: ``settings`` plus ``rows`` (one per run, ranked
    by simulated loss, failed runs last), ``per_method`` (failed fraction, median and
    best simulated loss, median closure loss, ratio to the reference, median wall time),
    ``winner`` (lowest median simulated loss, with the runner-up and the margin; None if
    every run failed) and ``reference`` (None if none)."""
    rows = sorted((_row(r, reference) for r in results), key=_sort_key)
    per_method = _per_method(rows, settings["runs"], reference)
    return dict(settings, reference=(None if reference is None else reference._asdict()), per_method=per_method,
                winner=_winner(per_method), ranking=[row["tag"] for row in rows], rows=rows,
                total_wall_time_s=total_wall_time_s)


def _fmt(x) -> str:
    return f"{x:.4g}" if _finite(x) else "-"


def _pm(loss, se) -> str:
    return _fmt(loss) + ("" if not _finite(se) else f" +- {se:.2g}")


def _headline(summary: dict) -> List[str]:
    w, ref = summary["winner"], summary["reference"]
    if not w:
        return ["**Every run failed.**"]
    line = (f"**Lowest simulated loss: {w['run']}**, {_pm(w['median_simulated_loss'], w['se'])} "
            f"after {w['median_wall_time_s']:.0f} s of wall time")
    if w.get("runner_up"):
        margin = "" if w["margin_in_se"] is None else f", {w['margin_in_se']:.1f} combined standard errors"
        line += f"; the next, {w['runner_up']}, is {_fmt(w['runner_up_ratio'])}x higher{margin}"
    line += "."
    if ref:
        line += (f" The {ref['label']} network scores {_pm(ref['loss'], ref['loss_se'])} the same way "
                 f"(closure loss {_fmt(ref['closure'])}): the winner is at {_fmt(w['ratio_to_reference'])}x it.")
    return [line]


def _markdown(summary: dict, figs: List[str]) -> str:
    ref = summary["reference"]
    L = [f"# Training methods compared on task '{summary['task']}'", ""]
    L.append(f"Seeds {summary['seeds']}, budget {summary['budget_s']:.0f} s of training per run; "
             f"total {summary['total_wall_time_s']:.0f} s.  Every network is judged by simulation: eq. 7 on "
             f"simulated moments (final networks: {summary['score_settings'] or 'simulated_score defaults'}; "
             f"snapshots along the way: {summary['snapshot_score_settings']}), +- its Monte Carlo standard "
             "error; the same noise for every network.  Runs are ranked by it; the closure loss and the "
             "closure-vs-simulation gap stand beside it.")
    L += [""] + _headline(summary)
    rcol = " | / reference" if ref else ""
    L += ["", f"| run | failed seeds | median simulated loss +- SE | median closure loss{rcol} | "
          "median wall time (s) |", "|---|---|---|---|" + ("---|" if ref else "") + "---|"]
    for k, v in sorted(summary["per_method"].items(), key=lambda kv: (kv[1]["median_simulated_loss"] is None,
                                                                       kv[1]["median_simulated_loss"] or 0.0)):
        extra = f" | {_fmt(v['ratio_to_reference'])}" if ref else ""
        L.append(f"| {k} | {v['failed_fraction']:.0%} | {_pm(v['median_simulated_loss'], v['median_simulated_loss_se'])}"
                 f" | {_fmt(v['median_closure_loss'])}{extra} | {v['median_wall_time_s']:.0f} |")
    L += ["", "Every run, ranked (gap: simulated / closure and simulated - closure):", "",
          f"| rank | run | simulated loss +- SE | closure loss | gap ratio | gap difference{rcol} | iterations | "
          "final training loss (own kind) | failure |",
          "|---|---|---|---|---|---|" + ("---|" if ref else "") + "---|---|---|"]
    for i, row in enumerate(summary["rows"], 1):
        extra = f" | {_fmt(row['ratio_to_reference'])}" if ref else ""
        L.append(f"| {i} | {row['tag']} | {_pm(row['simulated_loss'], row['simulated_loss_se'])} | "
                 f"{_fmt(row['closure_loss'])} | {_fmt(row['gap_ratio'])} | {_fmt(row['gap_difference'])}{extra} | "
                 f"{row['iterations']} | {_fmt(row['final_training_loss'])} ({row['loss_kind']}) | "
                 f"{row['failure'] or ''} |")
    L += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figs]
    return "\n".join(L) + "\n"


def write_comparison(results: Sequence, settings: dict, out, total_wall_time_s: float, reference=None) -> dict:
    """Write summary.json, the figures and report.md of the scored runs into ``out``;
    returns the summary (:func:`summarize`).  ``reference``: a ``Reference`` or None."""
    out = Path(out)
    summary = summarize(results, settings, total_wall_time_s, reference)
    atomic_write_json(out / "summary.json", summary)
    figs = [save(simulated_loss_figure(results, reference), out / "simulated_loss_vs_time.png")]
    scored = [r for r in results if r.sim is not None and np.isfinite(r.sim.loss)]
    if scored:
        figs.append(save(simulated_vs_targets_figure(scored), out / "simulated_vs_targets.png"))
    figs.append(save(training_loss_figure(results), out / "training_loss.png"))
    atomic_write_text(out / "report.md", _markdown(summary, figs))
    return summary
