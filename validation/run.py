#!/usr/bin/env python
"""Run the validation suites: closure vs simulation, with tolerances and a report.

    python validation/run.py --suite two_population --out out/validation/two_population
    python validation/run.py --suite all --out out/validation [--quick]

Same as ``momentssn validate``.  Writes report.md, summary.json, moments.npz and
figures into --out (one sub-folder per suite for --suite all).  Exit status 1 if a
suite fails its tolerances.
"""

import argparse
import sys


def main(argv=None) -> int:
    from validation.suites import SUITES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="suites:\n" + "\n".join(f"  {k}: {v}" for k, v in SUITES.items()))
    ap.add_argument("--suite", default="all", choices=list(SUITES) + ["all"], help="suite to run (default all)")
    ap.add_argument("--out", default="out/validation", help="output folder (default out/validation)")
    ap.add_argument("--quick", action="store_true", help="fewer trials, shorter runs (smoke test)")
    ap.add_argument("--seed", type=int, default=0, help="simulation seed")
    ap.add_argument("--task", default=None, help="echeveste2020: path of the published task.npz")
    ap.add_argument("--params", default=None,
                    help="echeveste2020: baseline parameters JSON (result.json of `momentssn fit-baseline`)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)  # an entry point: float64 for the closure and simulation
    from validation.suites import run_all, run_suite

    kw = dict(quick=args.quick, progress=not args.quiet, seed=args.seed, task=args.task, params=args.params)
    if args.suite == "all":
        results = run_all(args.out, **kw)
        ok = all(r.passed for r in results.values() if r is not None)
    else:
        ok = run_suite(args.suite, args.out, **kw).passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
