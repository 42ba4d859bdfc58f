"""Validation suites: named networks run through both routes, with stated tolerances.

Each suite runs :func:`momentssn.experiments.crosscheck.crosscheck` (Gaussian closure
vs stochastic simulation, float64) on one network and a set of stimuli, judges the
errors against the suite's tolerances and writes, into an output folder,

* ``report.md``    -- settings, tolerances, the checks, a table per stimulus (errors
  with their Monte Carlo noise floor, z-scores, pass/fail) and the figures;
* ``summary.json`` -- the same as data (``CrosscheckReport.to_dict(arrays=False)``
  plus the checks);
* ``moments.npz``  -- closure and simulated moments and their standard errors;
* figures (PNG): theory-vs-simulation scatter, transient time courses, and for
  ``two_population`` the moments and errors vs the input h.

Suites (``SUITES``): ``two_population``, ``ou``, ``random100``, ``echeveste2020`` (it
needs the published task, given by path).  The networks, settings and tolerances are
in :mod:`validation.plans`, the checks in :mod:`validation.checks`, the files in
:mod:`validation.report`.  Tolerances are of the form ``err <= tol + n_se * err_se``
(the closure error must be below ``tol`` up to ``n_se`` sampling-noise floors), or
bounds on z-scores where the closure is exact.  ``quick=True`` uses fewer trials and
shorter runs (same checks; the noise allowance grows accordingly) so that tests can
run a suite in seconds.

Entry points: :func:`run_suite`, :func:`run_all`; ``momentssn validate`` runs them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Union

import jax.numpy as jnp
import numpy as np

from momentssn.experiments import plotting
from momentssn.experiments.console import as_callback
from momentssn.experiments.crosscheck import closure_moments, crosscheck
from momentssn.progress import Progress, ProgressFn, report

from .plans import PLANS, Plan
from .report import SuiteResult, write_index, write_suite

__all__ = ["SUITES", "SuiteResult", "run_suite", "run_all"]

#: name -> one-line description of every suite.
SUITES: Dict[str, str] = {
    "two_population": (
        "Hennequin et al. (2018) 1E-1I network, h = 0..19 mV to E and I: closure within ~1% of "
        "simulation for h >= 3, visibly off near threshold (h ~ 1)"
    ),
    "ou": "W = 0 (pure filtered OU noise, 6 neurons, correlated noise): the closure is exact, "
          "agreement within Monte Carlo error (z-scores), stationary and transient",
    "random100": "a seeded random 100-neuron E/I network (50 E, 50 I), 4 heterogeneous input levels",
    "echeveste2020": "the published 15-parameter ring task (Echeveste et al. 2020, 100 cells, 5 stimuli) "
                     "with baseline parameters (defaults, or a fitted result JSON)",
}

if set(SUITES) != set(PLANS):  # pragma: no cover - a suite without its plan
    raise ImportError(f"validation: SUITES {sorted(SUITES)} and PLANS {sorted(PLANS)} differ")

#: ``progress`` of the entry points: True (print), False / None (silent) or a callback.
ProgressArg = Union[bool, None, ProgressFn]


def _teller(name: str, progress: Optional[ProgressFn], t0: float) -> Callable[[str], None]:
    def say(message: str) -> None:
        report(progress, Progress(f"validate {name}", 0, elapsed_s=time.perf_counter() - t0, message=message))
    return say


def _sweep_figure(plan: Plan, rep, quick: bool, say):
    """Moments and errors vs h; with the full settings the closure is drawn on a fine grid."""
    tx = tm = ts = None
    if not quick:
        say("closure on a fine grid of h")
        tx = np.linspace(plan.x.min(), plan.x.max(), 4 * (len(plan.x) - 1) + 1)
        m, _, _, _ = closure_moments(plan.net.astype(jnp.result_type(float)), np.stack([tx] * plan.net.N, 1))
        tm = m.mean
        ts = np.sqrt(np.maximum(np.diagonal(m.cov, axis1=-2, axis2=-1), 0.0))
    return plotting.sweep_figure(plan.x, rep, theory_x=tx, theory_mean=tm, theory_std=ts)


def run_suite(name: str, out_dir, *, quick: bool = False, progress: ProgressArg = True, seed: int = 0,
              task=None, params=None) -> SuiteResult:
    """Run one validation suite and write its report into ``out_dir``.

    Args:
        name: a key of ``SUITES``.
        out_dir: folder for report.md, summary.json, moments.npz and the figures
            (created if needed).
        quick: fewer trials / shorter runs (for tests; the same checks).
        progress: True prints progress as whole lines (suite, closure, simulation,
            stimulus i/B; ``momentssn.experiments.console.Printer``), False / None is
            silent, a callable receives the ``Progress`` events.
        seed: simulation seed.
        task: ``echeveste2020`` only: the task (a path or a built-in name); default the
            published task shipped with momentssn.
        params: ``echeveste2020`` only: baseline parameters, a JSON path (fit result
            from ``momentssn fit-baseline`` or a parameter document) or a dict;
            default: ``Baseline15`` defaults (unfitted).

    Returns:
        :class:`SuiteResult` (``.passed``, ``.checks``, ``.report``, ``.files``).
        Needs 64-bit mode for float64 (otherwise float32, with a warning).
    """
    if name not in PLANS:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    t0 = time.perf_counter()
    progress = as_callback(progress)
    say = _teller(name, progress, t0)
    say(SUITES[name])
    plan = PLANS[name](quick=quick, seed=seed, task=task, params=params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(plan.settings)
    say(f"{plan.h.shape[0]} stimuli, N = {plan.net.N}, {kw['n_trials']} trials x {kw['t_max']:g} ms"
        f"{' (quick)' if quick else ''}")
    # every simulated number with both error bars: Monte Carlo and time step (step doubling)
    rep = crosscheck(plan.net, plan.h, progress=progress, step_check=True, **kw)
    rep = plotting.write_crosscheck_figures(rep, out / "crosscheck.png", transient_stimuli=plan.transient_stimuli)
    files = dict(rep.figures)
    if plan.x is not None:
        files["sweep"] = plotting.save(_sweep_figure(plan, rep, quick, say), out / "sweep.png")
    checks, per, notes = plan.judge(rep, plan)
    passed = all(c.passed for c in checks)
    files.update(moments=str(out / "moments.npz"), report=str(out / "report.md"), summary=str(out / "summary.json"))
    res = SuiteResult(name, SUITES[name], passed, tuple(checks), rep, tuple(plan.labels), tuple(per),
                      dict(kw, quick=bool(quick), **plan.extra), plan.tolerances, tuple(notes), str(out), files,
                      time.perf_counter() - t0)
    write_suite(res)
    for c in checks:
        say(f"{'pass' if c.passed else 'FAIL'}: {c.name} -- {c.detail}")
    say(f"{'PASS' if passed else 'FAIL'} in {res.elapsed:.0f} s -> {files['report']}")
    return res


def run_all(out_dir, *, quick: bool = False, progress: ProgressArg = True, suites: Optional[Sequence[str]] = None,
            seed: int = 0, task=None, params=None) -> Dict[str, SuiteResult]:
    """Run several suites (default: all) into ``out_dir/<suite>/`` and write an index
    ``out_dir/report.md`` and ``out_dir/summary.json``.

    ``echeveste2020`` runs on the published task shipped with momentssn unless ``task``
    names another.  Returns {name: SuiteResult}.
    """
    names = list(SUITES) if suites is None else list(suites)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(map(repr, unknown))}; choose from {', '.join(SUITES)}")
    out = Path(out_dir)
    progress = as_callback(progress)
    say = _teller("all", progress, time.perf_counter())
    results: Dict[str, SuiteResult] = {}
    for i, name in enumerate(names):
        say(f"suite {i + 1}/{len(names)}: {name}")
        results[name] = run_suite(name, out / name, quick=quick, progress=progress, seed=seed,
                                  task=task, params=params)
    write_index(out, results, SUITES)
    return results
