"""Growth vs direct training of the General SSN on the natural-image task, judged by simulation.

The growth paper's main comparison (Soo & Lengyel 2022) on a task of ``momentssn gsm``
(``task.npz``: N = 2M cells, the M E cells' receptive fields the learned filters):

* ``growth``: from 1 E + 1 I (``grow``, doubling schedule of ``compare``), each stage on
  the targets of the E cells it has, trained by a stage trainer
  (``momentssn.growth.trainers``; default :class:`ClosureThenBPTT`);
* ``bptt`` and ``moments-lbfgs`` (or any fixed-size method of ``compare``) on the full
  General network from the paper's random start (``momentssn.params.init``: W ~ N(0, 1/N)
  with Dale's signs, L = 0.9 I + 0.1 1 1^T), redrawn until the closure is stable at
  every stimulus, as the authors' code does;

all with the same seeds and wall-time budget, through ``compare_methods`` (its
``report.md``, ``summary.json`` and figures, simulated loss against wall time among
them), plus ``natural.md`` / ``natural.json``: per method the simulated loss of every
seed +- its Monte Carlo SE, the closure loss, the wall time, the fraction of seeds that
failed (raised, or every simulated trial of a stimulus diverged) and the fraction whose
final closure is unstable; and per seed how many draws of the paper's start were
unstable before a stable one.

    python -m momentssn.experiments.natural_training --task out/gsm16/task.npz --out out/natural
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np

from .._util import atomic_write_json, atomic_write_text
from ..errors import UnstableNetworkError
from ..growth.trainers import STAGE_TRAINERS, ClosureThenBPTT
from ..params.base import get_parameterization
from ..params.init import stable_paper_theta
from ..progress import Progress, ProgressFn, report
from ..tasks import TARGET_VARIANCE, Task, latents_rescaled
from .compare import compare_methods
from .console import as_callback

__all__ = ["NATURAL_BPTT", "DIRECT_METHODS", "initial_draws",
           "run_natural_training"]

#: BPTT settings of the natural-image runs: Heun at 0.5 ms (second order: step error
#: below the Monte Carlo error of 32 trials), 300 ms from rest, moments over the last 100.
NATURAL_BPTT = dict(n_trials=32, t_max=300.0, t_avg=100.0, dt=0.5)
#: Methods trained directly on the full network from the paper's start.
DIRECT_METHODS = ("bptt", "moments-lbfgs")
def initial_draws(task: Task, seeds: Sequence[int], max_draws: int = 100) -> dict:
    """{seed: (theta, draws)}: the first closure-stable draw of the paper's start for the
    General network of ``task`` and how many draws it took ((None, None) if none in
    max_draws)."""
    param = get_parameterization("general", m=task.n_exc)
    out = {}
    for seed in seeds:
        try:
            out[int(seed)] = stable_paper_theta(param, task.inputs, int(seed), max_draws)
        except UnstableNetworkError:
            out[int(seed)] = (None, None)
    return out


class _Drawn(NamedTuple):
    """``init(param, seed)`` of the direct runs: the stable draws found beforehand
    (the same as ``PaperInit(task.inputs)``, without drawing again)."""

    drawn: dict

    def __call__(self, param, seed):
        theta = self.drawn[int(seed)][0]
        if theta is None:
            raise UnstableNetworkError(f"no closure-stable draw of the paper's start for seed {seed}")
        return theta


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def _method_rows(summary: dict) -> dict:
    """Per method: every seed's numbers and the failed / unstable fractions."""
    out = {}
    for method, net in summary["runs"]:
        mine = sorted((r for r in summary["rows"] if r["method"] == method and r["net"] == net),
                      key=lambda r: r["seed"])
        good = [r for r in mine if not r["failed"]]
        out[method] = dict(
            seeds=[r["seed"] for r in mine],
            simulated_loss=[r["simulated_loss"] for r in mine],
            simulated_loss_se=[r["simulated_loss_se"] for r in mine],
            closure_loss=[r["closure_loss"] for r in mine],
            wall_time_s=[r["wall_time_s"] for r in mine],
            failures=[r["failure"] for r in mine],
            failed_fraction=1.0 - len(good) / len(mine) if mine else None,
            closure_unstable_fraction=(float(np.mean([not _finite(r["closure_loss"]) for r in mine]))
                                       if mine else None),
            median_simulated_loss=(float(np.median([r["simulated_loss"] for r in good])) if good else None),
        )
    return out


def _fmt(x, se=None) -> str:
    if not _finite(x):
        return "-"
    return f"{x:.3g}" + ("" if not _finite(se) else f" +- {se:.1g}")


def _markdown(nat: dict) -> str:
    L = [f"# Growth vs direct training on task '{nat['task']}' (N = {nat['N']})", "",
         f"Seeds {nat['seeds']}, {nat['budget_s']:.0f} s of training per run; growth stages: "
         f"{nat['stage_train']}; direct runs from the paper's start (redrawn until closure-stable; draws per "
         f"seed: {nat['initial_draws']}, {nat['draw_search_s']:.0f} s for all seeds, not in the wall times "
         f"below).  Total {nat['total_wall_time_s']:.0f} s.", "",
         "| method | simulated loss per seed (+- MC SE) | closure loss | wall time (s) | failed | closure unstable |",
         "|---|---|---|---|---|---|"]
    for method, m in nat["methods"].items():
        sims = ", ".join(_fmt(a, b) for a, b in zip(m["simulated_loss"], m["simulated_loss_se"]))
        clos = ", ".join(_fmt(c) if _finite(c) else "unstable" for c in m["closure_loss"])
        wall = ", ".join(f"{t:.0f}" for t in m["wall_time_s"])
        L.append(f"| {method} | {sims} | {clos} | {wall} | {m['failed_fraction']:.2f} | "
                 f"{m['closure_unstable_fraction']:.2f} |")
    fails = [f"* {method}, seed {s}: {f}" for method, m in nat["methods"].items()
             for s, f in zip(m["seeds"], m["failures"]) if f]
    return "\n".join(L + ([""] + fails if fails else []) + [""])


def run_natural_training(
    task: Task,
    out,
    *,
    seeds: Sequence[int] = (0, 1),
    budget_s: float = 300.0,
    stage_train=ClosureThenBPTT(),
    direct: Sequence[str] = DIRECT_METHODS,
    steps: Optional[int] = None,
    sim: Optional[dict] = None,
    score: Optional[dict] = None,
    snapshot_score: Optional[dict] = None,
    max_draws: int = 100,
    n_snapshots: Optional[int] = None,
    target_variance: Optional[float] = TARGET_VARIANCE,
    progress: Optional[ProgressFn] = None,
) -> dict:
    """Growth vs direct training (module docstring); writes ``out`` and returns natural.json's dict.

    Args:
        task: a natural-image task (``momentssn.tasks.natural_image_task``; any task
            with n_exc E targets and as many I cells works).
        out: output folder (compare's files, ``natural.md``, ``natural.json``).
        seeds, budget_s, steps, score, snapshot_score: as in ``compare_methods``
            (budget per run, s; steps caps each run's iterations, per stage for growth).
        stage_train: growth's stage trainer (``momentssn.growth.trainers``).
        direct: fixed-size methods of ``compare`` trained on the full General network.
        sim: BPTT settings (default ``NATURAL_BPTT``).
        max_draws: draws of the paper's start before a seed counts as unstable.
        n_snapshots: networks kept along each run and scored (``train_run``; None: its default).
        target_variance: the task's latents rescaled by :func:`latents_rescaled` to this
            median zero-contrast variance (mV^2); None: the task as it is.
    """
    t0 = time.perf_counter()
    if target_variance is not None:
        task = latents_rescaled(task, target_variance)
    progress = as_callback(progress)
    sim = dict(NATURAL_BPTT if sim is None else sim)
    t1 = time.perf_counter()
    drawn = initial_draws(task, seeds, max_draws)
    t_draws = time.perf_counter() - t1  # the search for stable starts: a cost of direct training
    draws = {seed: d for seed, (_, d) in drawn.items()}
    report(progress, Progress("natural", 0, message=f"draws of the paper's start until stable, per seed: {draws} "
                                                    f"({t_draws:.0f} s)"))
    runs = [("growth", "general")] + [(m, "general") for m in direct]
    options = dict(init=_Drawn(drawn), stage_train=stage_train)
    if n_snapshots is not None:
        options["n_snapshots"] = int(n_snapshots)
    summary = compare_methods(task, runs=runs, seeds=seeds, budget_s=budget_s, steps=steps, out=out, sim=sim,
                              score=score, snapshot_score=snapshot_score, progress=progress, run_options=options)
    nat = dict(task=task.name, N=int(task.n_net), seeds=[int(s) for s in seeds], budget_s=float(budget_s),
               stage_train=repr(stage_train), bptt_settings=sim, initial_draws={str(k): v for k, v in draws.items()},
               methods=_method_rows(summary), total_wall_time_s=time.perf_counter() - t0)
    nat["draw_search_s"] = t_draws
    atomic_write_json(Path(out) / "natural.json", nat)
    atomic_write_text(Path(out) / "natural.md", _markdown(nat))
    return nat


def main(argv=None) -> int:
    """``python -m momentssn.experiments.natural_training --task TASK --out OUT ...``"""
    import jax

    from ..tasks import load_task
    from .console import Printer

    p = argparse.ArgumentParser(description="growth vs direct training on a natural-image task")
    p.add_argument("--task", required=True, help="task .npz written by 'momentssn gsm'")
    p.add_argument("--out", default="out/natural", help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--budget", type=float, default=300.0, help="training budget per run (s)")
    p.add_argument("--stage-train", choices=sorted(STAGE_TRAINERS), default="closure+bptt",
                   help="growth's stage trainer")
    p.add_argument("--direct", nargs="*", default=list(DIRECT_METHODS), help="methods on the full network")
    p.add_argument("--snapshots", type=int, default=None, help="networks scored along each run (default compare's)")
    p.add_argument("--target-variance", type=float, default=TARGET_VARIANCE,
                   help="rescale the latents to this median zero-contrast variance (mV^2; 0: as in the task)")
    args = p.parse_args(argv)
    if args.budget <= 0:
        p.error(f"--budget must be > 0, got {args.budget}")
    jax.config.update("jax_enable_x64", True)
    say = Printer()
    nat = run_natural_training(load_task(args.task), args.out, seeds=args.seeds, budget_s=args.budget,
                               stage_train=STAGE_TRAINERS[args.stage_train], direct=args.direct,
                               n_snapshots=args.snapshots, target_variance=args.target_variance or None,
                               progress=say)
    say.say(_markdown(nat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
