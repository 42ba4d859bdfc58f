"""The ``momentssn`` command line: ``momentssn <verb> --help``.

Every verb prints progress for long work (whole lines when stdout is not a terminal)
and writes its results (strict JSON, arrays in .npz, figures) to ``--out``.  Bad
arguments are refused by the parser before any computation; an error ends the run
with a one- or two-line message on stderr and a non-zero exit status (``--debug``
shows the traceback), and a failed run leaves no empty ``--out`` folder behind.

The command line enables JAX's float64 mode for its own process (the library never
does that by itself), and JAX's persistent compilation cache in
``$XDG_CACHE_HOME/momentssn/xla`` (default ``~/.cache/momentssn/xla``), so that a
second run skips most compilation (a fit's first iterations: ~25 s -> ~14 s on 2
cores).  Set ``JAX_COMPILATION_CACHE_DIR`` to use another folder, or to the empty
string to turn the cache off.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from validation.suites import SUITES, run_all, run_suite

from ._util import atomic_write_json
from .experiments import cli_args as types
from .experiments.baseline import Correction, fit_baseline, stop_reason
from .experiments.compare import DEFAULT_RUNS, METHODS, NETS, compare_methods, train_run
from .experiments.compare_phases import LBFGS_FRACTION
from .experiments.console import Printer
from .experiments.natural_images import run_gsm
from .experiments.plotting import new_figure, save
from .growth.trainers import STAGE_TRAINERS
from .params.init import PaperInit
from .losses.simulated import simulated_score
from .model import SSN
from .closure.stationary import stationary_moments
from .tasks import get_task


def default_cache_dir() -> Path:
    """Where the command line keeps JAX's compilation cache (module docstring)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "momentssn" / "xla"


def _setup_jax():
    os.environ.setdefault("MPLBACKEND", "Agg")
    # XLA CPU scheduler bug workaround (see README): must precede backend initialization.
    flag = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    jax.config.update("jax_enable_x64", True)
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # else JAX has read it (empty: no cache)
        jax.config.update("jax_compilation_cache_dir", str(default_cache_dir()))


# --------------------------------------------------------------------------- verbs


def _moments_figure(hs, mean, std):
    fig, axes = new_figure(1, 2, size=(4, 3))
    axes = axes[0]
    for j, name in enumerate(("E", "I")):
        axes[0].plot(hs, mean[:, j], label=name)
        axes[1].plot(hs, std[:, j], label=name)
    axes[0].set(xlabel="input h (mV)", ylabel="mean u (mV)")
    axes[1].set(xlabel="input h (mV)", ylabel="std u (mV)")
    axes[1].legend()
    return fig


def cmd_moments(args, say: Printer) -> int:
    """Stationary moments of the two-population network across inputs, with a figure."""
    out = Path(args.out)
    net = SSN.two_population()
    hs = np.linspace(0.0, args.h_max, args.n_inputs)
    say.say(f"stationary moments of the two-population network for {len(hs)} inputs ...")
    t0 = time.perf_counter()
    m = stationary_moments(net, jnp.stack([hs, hs], axis=1))
    mean, std = np.asarray(m.mean), np.asarray(m.std)
    say.say(f"done in {time.perf_counter() - t0:.1f} s")
    atomic_write_json(out / "moments.json", {"h": hs, "mean": mean, "std": std, "cells": ["E", "I"]})
    save(_moments_figure(hs, mean, std), out / "moments.png")
    say.say(f"wrote {out / 'moments.json'} and {out / 'moments.png'}")
    return 0


def cmd_validate(args, say: Printer) -> int:
    """Cross-validation suites (closure vs simulation); exit status 1 if a suite fails."""
    kw = dict(quick=args.quick, seed=args.seed, task=args.task, params=args.params, progress=say)
    if args.suite == "all":
        results = run_all(args.out, **kw)
        return 0 if all(r.passed for r in results.values()) else 1
    return 0 if run_suite(args.suite, args.out, **kw).passed else 1


def cmd_fit_baseline(args, say: Printer) -> int:
    """Fit the 15-parameter baseline; result.json, checkpoint and figures in --out."""
    correction = None if args.fit == "closure" else Correction(rounds=args.rounds, refit_iters=args.refit_iters, refit_time=args.refit_time)
    run = fit_baseline(get_task(args.task), args.out, task_label=str(args.task), method=args.method,
                       restarts=args.restarts, max_iter=args.max_iter, max_time=args.max_time, seed=args.seed,
                       loss=args.loss, correction=correction, resume=args.resume, check=not args.no_check,
                       progress=say)
    say.say(f"closure fit: {stop_reason(run.fit)}")
    if run.correction is not None:
        say.say(f"correction: {run.correction.stopped}; kept round {run.correction.best_round}")
    nets = (run.scores or {}).get("networks", {})
    if nets:
        say.say("simulated loss (eq. 7, +- Monte Carlo SE), fresh noise seed:")
        for name, sc in nets.items():
            say.say(f"  {name:>18}: {sc['simulated_loss']:.4g} +- {sc['simulated_loss_se']:.2g}"
                    f"   (closure loss {sc['closure_loss']:.4g})")
        if "published network" in nets:
            ratio = nets["fitted"]["simulated_loss"] / nets["published network"]["simulated_loss"]
            say.say(f"  fitted / published = {ratio:.2f}")
    say.say(f"wrote {Path(args.out) / 'result.json'} and figures")
    return 0


def cmd_gsm(args, say: Printer) -> int:
    """Natural-image GSM: learned Gabor projective fields and the maximum-likelihood GSM."""
    res = run_gsm(args.out, path=args.images, size=args.size, n_filters=args.filters, seed=args.seed,
                  filter_iters=args.filter_iters, ml_iters=args.ml_iters, max_time=args.max_time, progress=say)
    fvu = res.get("fvu_held_out_mean", {})
    if fvu:
        say.say("held-out mean FVU: " + ", ".join(f"{k} {v:.4g}" for k, v in fvu.items()
                                                  if isinstance(v, (int, float))))
    say.say(f"wrote {Path(args.out) / 'results.json'}, the natural-image task (task.npz) and figures")
    return 0


def _bptt_settings(args) -> dict:
    return dict(n_trials=args.n_trials, t_max=args.t_max, t_avg=args.t_avg, dt=args.dt)


def _loss_figure(run):
    fig, axes = new_figure(1, 2, size=(4.2, 3.2))
    loss = np.asarray(run.trace["loss"], float)
    axes[0, 0].semilogy(run.trace["iteration"], loss)
    axes[0, 1].semilogy(run.trace["wall_time_s"], loss)
    axes[0, 0].set(xlabel="iteration", ylabel=f"loss: {run.loss_kind}")
    axes[0, 1].set(xlabel="wall time (s)")
    return fig


def cmd_train(args, say: Printer) -> int:
    """Train one network with one method; result.json, params and a loss figure in --out."""
    out = Path(args.out)
    task = get_task(args.task)
    net = args.net or ("general" if args.method == "growth" else "baseline15")
    say.say(f"training '{net}' by {args.method} on task '{task.name}' for up to {args.max_time:.0f} s")
    opts = _run_options(args, task, [] if args.method == "growth" else [net])
    run = train_run(args.method, net, task, budget_s=args.max_time, seed=args.seed, steps=args.steps,
                    sim=_bptt_settings(args), out=out, resume=args.resume, progress=say, **opts)
    result = dict(method=run.method, net=run.net_kind, seed=run.seed, task=str(args.task), failed=run.failed,
                  failure=run.failure, wall_time_s=run.wall_time_s, loss_kind=run.loss_kind, trace=run.trace,
                  params=run.params)
    if not run.failed and not args.no_check:
        say.say("scoring the trained network by a long simulation ...")
        sc = simulated_score(run.net, run.inputs, run.target_mean, run.target_cov, seed=args.seed + 12345,
                             step_check=True)
        result.update(simulated_loss=sc.loss, simulated_loss_se=sc.loss_se, simulated_loss_step_error=sc.step_error,
                      simulation_dt_ms=sc.dt, simulated_loss_per_stimulus=sc.loss_per_stimulus,
                      n_diverged=sc.n_diverged)
        if not np.isfinite(sc.loss):
            result["simulated_loss_note"] = "every trial of some stimulus diverged"
        say.say(f"simulated loss {sc.loss:.4g} +- {sc.loss_se:.2g} (Monte Carlo SE); time step {sc.dt:g} ms "
                f"biases it by {sc.step_error:+.2g}")
    atomic_write_json(out / "result.json", result)
    if run.trace["loss"]:
        save(_loss_figure(run), out / "loss.png")
    say.say(f"wrote {out / 'result.json'}" + ("" if run.failed else " and the parameters"))
    if run.failed:
        raise RuntimeError(f"training failed: {run.failure}")
    return 0


def cmd_compare(args, say: Printer) -> int:
    """Several training methods on the same task, seeds and budget; report.md in --out."""
    if args.score_time <= 500.0:
        raise ValueError(f"--score-time must exceed the 500 ms burn-in of the score, got {args.score_time:g} ms")
    task = get_task(args.task)
    opts = _run_options(args, task, [n for m, n in args.runs if m != "growth"])
    summary = compare_methods(task, runs=args.runs, seeds=args.seeds, budget_s=args.budget,
                              out=args.out, sim=_bptt_settings(args), progress=say,
                              score=dict(n_trials=args.score_trials, t_max=args.score_time),
                              run_options=dict(opts, n_snapshots=args.snapshots), resume=args.resume)
    w, ref = summary["winner"], summary["reference"]
    if w:
        for row in summary["rows"]:
            say.say(f"  {row['tag']}: simulated loss {row['simulated_loss'] or float('nan'):.4g} +- "
                    f"{row['simulated_loss_se'] or float('nan'):.2g}, closure loss {row['closure_loss']:.4g}"
                    + (f", {row['ratio_to_reference']:.3g}x the published network" if row["ratio_to_reference"] else ""))
        say.say(f"lowest simulated loss: {w['run']} ({w['median_simulated_loss']:.4g} +- {w['se']:.2g}) "
                f"in {w['median_wall_time_s']:.0f} s" + (f"; the published network {ref['loss']:.4g} +- "
                                                         f"{ref['loss_se']:.2g}" if ref else "")
                + f"; report: {Path(args.out) / 'report.md'}")
    else:
        say.say(f"every run failed; see {Path(args.out) / 'report.md'}")
    return 0


# --------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """An argument error is two lines on stderr (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def _add_bptt_options(q) -> None:
    q.add_argument("--n-trials", type=types.count, default=100, help="BPTT: trials per stimulus (>= 1)")
    q.add_argument("--t-max", type=types.positive, default=500.0, help="BPTT: simulated time from rest (ms)")
    q.add_argument("--t-avg", type=types.positive, default=100.0,
                   help="BPTT: moments averaged over the last t-avg ms")
    q.add_argument("--dt", type=types.positive, default=0.2, help="BPTT: time step (ms)")


def _add_lbfgs_fraction(q) -> None:
    q.add_argument("--lbfgs-fraction", type=types.fraction, default=LBFGS_FRACTION,
                   help="corrected, hybrid: share of the budget of their first phase, L-BFGS on the closure "
                        "(0 < f < 1; default: %(default)s)")


def _add_start_options(q) -> None:
    q.add_argument("--init", default="default", choices=("default", "paper"),
                   help="start of the fixed-size methods: the parameterization's default, or 'paper': the growth "
                        "paper's random start (W ~ N(0, 1/N) with Dale's signs, noise factor 0.9 I + 0.1 11^T), "
                        "redrawn until the closure is stable at every stimulus; general network only")
    q.add_argument("--stage-trainer", default="bptt", choices=tuple(STAGE_TRAINERS),
                   help="growth: how each stage is trained (BPTT, Adam on the closure, or Adam on the closure then "
                        "BPTT; default: %(default)s)")


def _run_options(args, task, nets) -> dict:
    """``init`` and ``stage_train`` of ``train_run`` from --init / --stage-trainer; ``nets``:
    the networks of the fixed-size runs (the paper's start exists for 'general' only)."""
    # 'bptt' is train_run's own growth (None), which also keeps snapshots of the last stage
    stage = None if args.stage_trainer == "bptt" else STAGE_TRAINERS[args.stage_trainer]
    opts = dict(lbfgs_fraction=args.lbfgs_fraction, stage_train=stage)
    if args.init == "paper":
        other = sorted(set(nets) - {"general"})
        if other:
            raise ValueError(f"--init paper is the start of the general network, not of {', '.join(other)}")
        opts["init"] = PaperInit(h_raw=np.asarray(task.inputs))
    return opts


def _verb(sub, common, name, func, help):
    p = sub.add_parser(name, help=help, description=help, parents=[common])
    p.set_defaults(func=func)
    return p


def _task_option(p, help="'default' (the embedded task), 'echeveste2020' (the published task, shipped with momentssn) or the path of a task .npz"):
    p.add_argument("--task", type=types.task_spec, default="default", help=help)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="momentssn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")

    m = _verb(sub, common, "moments", cmd_moments, "stationary moments of the two-population network vs input")
    m.add_argument("--out", type=types.out_folder, default="out/moments", help="output folder (JSON + figure)")
    m.add_argument("--h-max", type=types.finite, default=19.0, help="largest input (mV)")
    m.add_argument("--n-inputs", type=types.count, default=20, help="number of inputs from 0 to h-max (>= 1)")

    v = _verb(sub, common, "validate", cmd_validate, "run cross-validation suites (closure vs simulation)")
    v.formatter_class = argparse.RawDescriptionHelpFormatter
    v.epilog = "suites:\n" + "\n".join(f"  {k}: {d}" for k, d in SUITES.items())
    v.add_argument("--suite", default="all", choices=list(SUITES) + ["all"], help="suite to run (default: all)")
    v.add_argument("--out", type=types.out_folder, default="out/validation", help="output folder (report.md, JSON, figures)")
    v.add_argument("--quick", action="store_true", help="fewer trials and stimuli (a smoke test)")
    v.add_argument("--seed", type=types.seed, default=0, help="simulation seed (>= 0)")
    v.add_argument("--task", type=types.task_spec, default=None,
                   help="echeveste2020 suite: the task (default: the published task shipped with momentssn; "
                        "or a path)")
    v.add_argument("--params", type=types.existing_file, default=None,
                   help="echeveste2020: Baseline15 parameters (result.json of fit-baseline; default: defaults)")

    f = _verb(sub, common, "fit-baseline", cmd_fit_baseline,
              "fit the 15-parameter baseline SSN: L-BFGS on the closure, then iterated closure correction")
    _task_option(f)
    f.add_argument("--out", type=types.out_folder, default="out/baseline", help="output folder")
    f.add_argument("--fit", default="corrected", choices=("corrected", "closure"),
                   help="corrected: closure fit, then refits to targets shifted by the simulated-minus-closure "
                        "discrepancy while the simulated loss improves; closure: the closure fit only "
                        "(default: %(default)s)")
    f.add_argument("--rounds", type=types.count, default=Correction().rounds,
                   help="correction rounds at most (default: %(default)s)")
    f.add_argument("--refit-iters", type=types.count, default=Correction().refit_iters,
                   help="L-BFGS iterations of each correction refit at most (default: %(default)s)")
    f.add_argument("--refit-time", type=types.positive, default=Correction().refit_time,
                   help="time cap of each correction refit in seconds (default: %(default)s)")
    f.add_argument("--method", default="jaxopt", choices=("jaxopt", "optax", "scipy"),
                   help="L-BFGS backend (default: %(default)s)")
    f.add_argument("--restarts", type=types.nonnegative_int, default=0,
                   help="random restarts of the closure fit besides the default start (default: %(default)s)")
    f.add_argument("--max-iter", type=types.count, default=100,
                   help="L-BFGS iterations per start (>= 1; default: %(default)s)")
    f.add_argument("--max-time", type=types.positive, default=240.0,
                   help="time cap of the closure fit in seconds (all starts; compilation included, checked "
                        "between iterations; default: %(default)s)")
    f.add_argument("--seed", type=types.seed, default=0, help="seed of the random restarts (>= 0)")
    f.add_argument("--loss", default="stationary", choices=("stationary", "transient"),
                   help="closure moments fitted (default: %(default)s)")
    f.add_argument("--no-check", action="store_true", help="skip the simulation check")
    f.add_argument("--resume", action="store_true", help="start from the checkpoint in --out (an error if none)")

    t = _verb(sub, common, "train", cmd_train, "train a network with one method (closure or simulation)")
    t.add_argument("--method", required=True, choices=METHODS, help="training method")
    t.add_argument("--net", default=None, choices=NETS,
                   help="parameterization (default: general for growth, baseline15 otherwise)")
    _task_option(t)
    t.add_argument("--out", type=types.out_folder, default="out/train", help="output folder (result.json, params, checkpoints)")
    t.add_argument("--max-time", type=types.positive, default=300.0, help="training budget (s)")
    t.add_argument("--steps", type=types.count, default=None,
                   help="cap on iterations (>= 1; default: the budget decides)")
    t.add_argument("--seed", type=types.seed, default=0, help="seed of the method (>= 0)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out (an error if none)")
    t.add_argument("--no-check", action="store_true", help="skip the long-simulation score")
    _add_lbfgs_fraction(t)
    _add_start_options(t)
    _add_bptt_options(t)

    g = _verb(sub, common, "gsm", cmd_gsm,
              "learn Gabor projective fields and a maximum-likelihood GSM on natural image patches")
    g.add_argument("--out", type=types.out_folder, default="out/gsm",
                   help="output folder (results.json, arrays.npz, task.npz, figures)")
    g.add_argument("--images", type=types.existing_path, default=None,
                   help="CIFAR-10 python batches or a folder of images (default: the photographs shipped "
                        "with scikit-image)")
    g.add_argument("--size", type=types.count, default=16, help="patch side (pixels)")
    g.add_argument("--filters", type=types.count, default=50, help="number of projective fields M (>= 1)")
    g.add_argument("--seed", type=types.seed, default=0, help="seed of patches, split and initialization (>= 0)")
    g.add_argument("--filter-iters", type=types.count, default=500, help="L-BFGS iterations of the filter fit")
    g.add_argument("--ml-iters", type=types.count, default=300, help="L-BFGS iterations of the ML GSM fit")
    g.add_argument("--max-time", type=types.positive, default=None, help="time cap of each fit (s; default none)")

    c = _verb(sub, common, "compare", cmd_compare, "compare training methods on the same task, seeds and budget")
    _task_option(c)
    c.add_argument("--out", type=types.out_folder, default="out/compare", help="output folder (report.md, summary.json, figures)")
    c.add_argument("--runs", type=types.run_spec, nargs="+", default=list(DEFAULT_RUNS),
                   help="METHOD:NET pairs, methods " + ", ".join(METHODS) + "; nets " + ", ".join(NETS)
                   + " (default: " + " ".join(f"{m}:{n}" for m, n in DEFAULT_RUNS) + ")")
    c.add_argument("--seeds", type=types.seed, nargs="+", default=[0], help="seeds, one run per method each")
    c.add_argument("--budget", type=types.positive, default=360.0, help="training budget per run (s)")
    c.add_argument("--score-trials", type=types.count, default=64,
                   help="trials per stimulus of the simulation every final network is scored by (>= 1)")
    c.add_argument("--score-time", type=types.positive, default=2000.0,
                   help="simulated time of each scoring trial (ms; the first 500 ms are burn-in)")
    c.add_argument("--snapshots", type=types.nonnegative_int, default=7,
                   help="networks kept per run at wall times budget * 2^-k (k = n-1 .. 0) and scored by "
                        "simulation afterwards (32 trials x 1.5 s at most)")
    c.add_argument("--resume", action="store_true",
                   help="keep the runs an interrupted compare with the same settings finished in --out "
                        "(an unfinished run starts anew)")
    _add_lbfgs_fraction(c)
    _add_start_options(c)
    _add_bptt_options(c)
    return p


# --------------------------------------------------------------------------- running a verb


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` and its sub-folders if no file is left in them."""
    for root, dirs, files in os.walk(folder, topdown=False):
        if not files and not os.listdir(root):
            os.rmdir(root)


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:  # "[Errno 17] ..." -> "File exists: out"
        text = f"{exc.strerror}: {exc.filename}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # argument errors exit here (status 2), before any JAX work
    _setup_jax()
    out = Path(args.out)
    created = not out.exists()
    ok = False
    try:
        status = int(args.func(args, Printer()) or 0)
        ok = True
        return status
    except KeyboardInterrupt:
        print(f"momentssn {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"momentssn {args.verb}: error: {_message(exc)}", file=sys.stderr)
        return 1
    finally:
        if not ok and created and out.is_dir():
            _remove_if_empty(out)


if __name__ == "__main__":
    sys.exit(main())
