"""The ``momentssn`` command line: ``momentssn <verb> --help``.

Every verb prints progress for long work and writes its results (JSON + figures) to
``--out``.  The command line enables JAX's float64 mode for its own process (the
library never does that by itself), and JAX's persistent compilation cache in
``$XDG_CACHE_HOME/momentssn/xla`` (default ``~/.cache/momentssn/xla``), so that a
second run skips most compilation (a fit's first iterations: ~25 s -> ~14 s on 2
cores).  Set ``JAX_COMPILATION_CACHE_DIR`` to use another folder, or to the empty
string to turn the cache off.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def default_cache_dir() -> Path:
    """Where the command line keeps JAX's compilation cache (module docstring)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "momentssn" / "xla"


def _setup_jax():
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    # XLA CPU scheduler bug workaround (see README): must precede backend initialization.
    flag = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # else JAX has read it (empty: no cache)
        jax.config.update("jax_compilation_cache_dir", str(default_cache_dir()))


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=float))


def cmd_moments(args) -> int:
    """Stationary moments of the two-population network across inputs, with a figure."""
    import jax.numpy as jnp
    import numpy as np

    import momentssn as ms
    from momentssn.experiments.plotting import new_figure, save

    out = Path(args.out)
    net = ms.SSN.two_population()
    hs = np.linspace(0.0, args.h_max, args.n_inputs)
    print(f"stationary moments of the two-population network for {len(hs)} inputs ...", flush=True)
    t0 = time.perf_counter()
    m = ms.stationary_moments(net, jnp.stack([hs, hs], axis=1))
    mean, std = np.asarray(m.mean), np.asarray(m.std)
    print(f"done in {time.perf_counter() - t0:.1f} s", flush=True)
    _write_json(
        out / "moments.json",
        {"h": hs.tolist(), "mean": mean.tolist(), "std": std.tolist(), "cells": ["E", "I"]},
    )
    fig, axes = new_figure(1, 2, size=(4, 3))
    axes = axes[0]
    for j, name in enumerate(("E", "I")):
        axes[0].plot(hs, mean[:, j], label=name)
        axes[1].plot(hs, std[:, j], label=name)
    axes[0].set(xlabel="input h (mV)", ylabel="mean u (mV)")
    axes[1].set(xlabel="input h (mV)", ylabel="std u (mV)")
    axes[1].legend()
    save(fig, out / "moments.png")
    print(f"wrote {out / 'moments.json'} and {out / 'moments.png'}")
    return 0


def cmd_validate(args) -> int:
    """Cross-validation suites (closure vs simulation); exit code 1 if a suite fails."""
    import validation.suites as validation

    kw = dict(quick=args.quick, seed=args.seed, task=args.task, params=args.params)
    if args.suite == "all":
        results = validation.run_all(args.out, **kw)
        return 0 if all(r is None or r.passed for r in results.values()) else 1
    if args.suite not in validation.SUITES:
        raise SystemExit(f"--suite must be 'all' or one of {sorted(validation.SUITES)}")
    return 0 if validation.run_suite(args.suite, args.out, **kw).passed else 1


def cmd_fit_baseline(args) -> int:
    from momentssn.training.fit import fit_baseline_cli

    return fit_baseline_cli(args)


def _bptt_settings(args) -> dict:
    return dict(n_trials=args.n_trials, t_max=args.t_max, t_avg=args.t_avg, dt=args.dt)


def cmd_train(args) -> int:
    """Train one network with one method; result.json, params and a loss figure in --out."""
    import numpy as np

    from momentssn.experiments.compare import simulated_score, train_run
    from momentssn.experiments.plotting import new_figure, save
    from momentssn.tasks import get_task

    out = Path(args.out)
    task = get_task(args.task)
    if args.net is None:
        args.net = "general" if args.method == "growth" else "baseline15"
    print(f"training '{args.net}' by {args.method} on task '{task.name}' for up to {args.max_time:.0f} s",
          flush=True)
    run = train_run(args.method, args.net, task, budget_s=args.max_time, seed=args.seed, steps=args.steps,
                    sim=_bptt_settings(args), out=out, resume=args.resume)
    result = dict(method=run.method, net=run.net_kind, seed=run.seed, task=str(args.task), failed=run.failed,
                  failure=run.failure, wall_time_s=run.wall_time_s, loss_kind=run.loss_kind, trace=run.trace,
                  params=run.params)
    if not run.failed and not args.no_check:
        print("scoring the trained network by a long simulation ...", flush=True)
        sc = simulated_score(run.net, run.inputs, run.target_mean, run.target_cov, seed=args.seed + 12345)
        result.update(simulated_loss=sc.loss, simulated_loss_per_stimulus=sc.loss_per_stimulus.tolist(),
                      n_diverged=sc.n_diverged.tolist())
        print(f"simulated loss {sc.loss:.4g}", flush=True)
    _write_json(out / "result.json", result)
    if run.trace["loss"]:
        fig, axes = new_figure(1, 2, size=(4.2, 3.2))
        loss = np.asarray(run.trace["loss"], float)
        axes[0, 0].semilogy(run.trace["iteration"], loss)
        axes[0, 1].semilogy(run.trace["wall_time_s"], loss)
        axes[0, 0].set(xlabel="iteration", ylabel=f"loss: {run.loss_kind}")
        axes[0, 1].set(xlabel="wall time (s)")
        save(fig, out / "loss.png")
    print(f"wrote {out / 'result.json'}" + ("" if run.failed else " and the parameters"), flush=True)
    return 1 if run.failed else 0


def cmd_compare(args) -> int:
    """Several training methods on the same task, seeds and budget; report.md in --out."""
    from momentssn.experiments.compare import compare_methods
    from momentssn.tasks import get_task

    runs = []
    for spec in args.runs:
        method, _, net = spec.partition(":")
        if not net:
            raise SystemExit(f"--runs entries are METHOD:NET (e.g. bptt:ring), got {spec!r}")
        runs.append((method, net))
    summary = compare_methods(get_task(args.task), runs=runs, seeds=args.seeds, budget_s=args.budget,
                              out=args.out, sim=_bptt_settings(args))
    w = summary["winner"]
    if w:
        print(f"lowest simulated loss: {w['run']} ({w['median_simulated_loss']:.4g}) "
              f"in {w['median_wall_time_s']:.0f} s; report: {Path(args.out) / 'report.md'}", flush=True)
    else:
        print("every run failed; see the report", flush=True)
    return 0


def _add_bptt_options(q) -> None:
    q.add_argument("--n-trials", type=int, default=100, help="BPTT: trials per stimulus")
    q.add_argument("--t-max", type=float, default=500.0, help="BPTT: simulated time from rest (ms)")
    q.add_argument("--t-avg", type=float, default=100.0, help="BPTT: moments averaged over the last t-avg ms")
    q.add_argument("--dt", type=float, default=0.2, help="BPTT: time step (ms)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="momentssn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)

    m = sub.add_parser("moments", help="stationary moments of the two-population network vs input")
    m.add_argument("--out", default="out/moments", help="output folder (JSON + figure)")
    m.add_argument("--h-max", type=float, default=19.0, help="largest input (mV)")
    m.add_argument("--n-inputs", type=int, default=20, help="number of inputs from 0 to h-max")
    m.set_defaults(func=cmd_moments)

    v = sub.add_parser("validate", help="run cross-validation suites (closure vs simulation)")
    v.add_argument("--suite", default="all", help="suite name or 'all'")
    v.add_argument("--out", default="out/validation", help="output folder (report.md, JSON, figures)")
    v.add_argument("--quick", action="store_true", help="fewer trials and stimuli")
    v.add_argument("--seed", type=int, default=0, help="simulation seed")
    v.add_argument("--task", default=None, help="path of the published task.npz (echeveste2020 suite)")
    v.add_argument("--params", default=None, help="fitted Baseline15 result.json for echeveste2020")
    v.set_defaults(func=cmd_validate)

    f = sub.add_parser("fit-baseline", help="fit the 15-parameter baseline SSN with L-BFGS")
    f.add_argument("--task", default="default", help="'default' (embedded) or a path to task.npz")
    f.add_argument("--out", default="out/baseline", help="output folder")
    f.add_argument("--method", default="jaxopt", choices=("jaxopt", "optax", "scipy"))
    f.add_argument("--restarts", type=int, default=2, help="random restarts besides the default start")
    f.add_argument("--max-iter", type=int, default=300)
    f.add_argument("--max-time", type=float, default=110.0,
                   help="time budget in seconds (all restarts; compilation included, checked between iterations)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--loss", default="stationary", choices=("stationary", "transient"))
    f.add_argument("--no-check", action="store_true", help="skip the simulation check")
    f.add_argument("--resume", action="store_true", help="start from the checkpoint in --out")
    f.set_defaults(func=cmd_fit_baseline)

    from momentssn.experiments.compare import DEFAULT_RUNS, METHODS, NETS

    t = sub.add_parser("train", help="train a network with one method (closure or simulation)")
    t.add_argument("--method", required=True, choices=METHODS)
    t.add_argument("--net", default=None, choices=NETS,
                   help="parameterization (default: general for growth, baseline15 otherwise)")
    t.add_argument("--task", default="default", help="'default' (embedded) or a path to task.npz")
    t.add_argument("--out", default="out/train", help="output folder (result.json, params, checkpoints)")
    t.add_argument("--max-time", type=float, default=300.0, help="training budget (s)")
    t.add_argument("--steps", type=int, default=None, help="cap on iterations (default: the budget decides)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    t.add_argument("--no-check", action="store_true", help="skip the long-simulation score")
    _add_bptt_options(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compare", help="compare training methods on the same task, seeds and budget")
    c.add_argument("--task", default="default", help="'default' (embedded) or a path to task.npz")
    c.add_argument("--out", default="out/compare", help="output folder (report.md, summary.json, figures)")
    c.add_argument("--runs", nargs="+", default=[f"{m}:{n}" for m, n in DEFAULT_RUNS],
                   help="METHOD:NET pairs (default: %(default)s)")
    c.add_argument("--seeds", type=int, nargs="+", default=[0])
    c.add_argument("--budget", type=float, default=360.0, help="training budget per run (s)")
    _add_bptt_options(c)
    c.set_defaults(func=cmd_compare)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _setup_jax()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
