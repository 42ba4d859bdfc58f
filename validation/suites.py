"""Validation suites: named networks run through both routes, with stated tolerances.

Each suite runs :func:`momentssn.crosscheck.crosscheck` (Gaussian closure vs stochastic
simulation, float64) on one network and a set of stimuli, judges the errors against
the suite's tolerances and writes, into an output folder,

* ``report.md``    -- settings, tolerances, the checks, a table per stimulus (errors
  with their Monte Carlo noise floor, z-scores, pass/fail) and the figures;
* ``summary.json`` -- the same as data (``CrosscheckReport.to_dict(arrays=False)``
  plus the checks);
* ``moments.npz``  -- closure and simulated moments and their standard errors;
* figures (PNG): theory-vs-simulation scatter, transient time courses, and for
  ``two_population`` the moments and errors vs the input h.

Suites (``SUITES``): ``two_population``, ``ou``, ``random100``, ``echeveste2020``.
Tolerances are of the form ``err <= tol + n_se * err_se`` (the closure error must be
below ``tol`` up to ``n_se`` sampling-noise floors), or bounds on z-scores where the
closure is exact.  ``quick=True`` uses fewer trials and shorter runs (same checks;
the noise allowance grows accordingly) so that tests can run a suite in seconds.

Entry points: :func:`run_suite`, :func:`run_all` (the ``momentssn validate`` command
calls them) and ``python validation/run.py`` in the repository.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from momentssn.experiments import plotting
from momentssn.experiments.crosscheck import CrosscheckReport, closure_moments, crosscheck, write_figures
from momentssn.networks import random_ei_network
from momentssn.model import SSN

__all__ = [
    "SUITES",
    "Check",
    "SuiteResult",
    "run_suite",
    "run_all",
    "random_ei_network",
    "ou_network",
    "default_task_path",
    "load_baseline_theta",
]

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

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def default_task_path() -> Path:
    """``../shared/echeveste2020/task.npz`` next to the repository (may not exist)."""
    return _PACKAGE_ROOT.parent / "shared" / "echeveste2020" / "task.npz"


# --------------------------------------------------------------------------- networks
# random_ei_network lives in momentssn.networks (shared with tests and benchmarks).


def ou_network(n: int = 6, seed: int = 0, tau_noise: float = 20.0) -> SSN:
    """W = 0: u is the input noise (OU, correlated, seeded) low-pass filtered by tau.

    tau_i spread over 8-25 ms; Sigma_eta = L L^T / n + 0.2 I (mV^2).  E/I labels only
    for display (first half E).
    """
    rng = np.random.default_rng(seed)
    tau = np.linspace(8.0, 25.0, n)
    L = rng.normal(size=(n, n))
    Sig = L @ L.T / n + 0.2 * np.eye(n)
    return SSN(np.zeros((n, n)), tau, 0.5 * (Sig + Sig.T), tau_noise, n_exc=n // 2)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Check:
    """One pass/fail statement of a suite."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": bool(self.passed), "detail": self.detail}


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    """What :func:`run_suite` returns (and writes to ``out_dir``)."""

    name: str
    description: str
    passed: bool
    checks: tuple
    report: CrosscheckReport
    stimulus_labels: tuple
    stimulus_pass: tuple  # per stimulus: True / False / None (not checked)
    settings: dict
    tolerances: dict
    notes: tuple
    out_dir: str
    files: dict
    elapsed: float

    def to_dict(self) -> dict:
        return {
            "suite": self.name,
            "description": self.description,
            "passed": bool(self.passed),
            "checks": [c.to_dict() for c in self.checks],
            "stimuli": list(self.stimulus_labels),
            "stimulus_pass": list(self.stimulus_pass),
            "settings": self.settings,
            "tolerances": self.tolerances,
            "notes": list(self.notes),
            "files": self.files,
            "elapsed_s": round(self.elapsed, 2),
            "crosscheck": self.report.to_dict(arrays=False),
        }


@dataclasses.dataclass
class _Plan:
    """A suite, before it runs: the network, stimuli, settings and how to judge."""

    net: SSN
    h: np.ndarray  # (B, N)
    labels: List[str]
    settings: dict  # crosscheck keyword arguments
    tolerances: dict  # documented in the report
    judge: Callable  # (report, plan) -> (checks, per-stimulus pass, notes)
    x: Optional[np.ndarray] = None  # scalar stimulus parameter (for the sweep figure)
    transient_stimuli: Optional[List[int]] = None
    extra: dict = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- judging helpers


def _tol_mask(report: CrosscheckReport, tol: Dict[str, float], n_se: float) -> np.ndarray:
    """(B,) err <= tol + n_se * err_se for every measure in ``tol`` (and status ok)."""
    return report.within(tol, moments=tuple(tol), n_se=n_se, per_stimulus=True)


def _pct(x) -> str:
    x = float(x)
    return "nan" if not math.isfinite(x) else f"{100 * x:.2f}%"


def _status_check(report: CrosscheckReport) -> Check:
    bad = [f"{b}: {s}" + (f" ({report.closure_message[b]})" if report.closure_message[b] else "")
           for b, s in enumerate(report.status) if s != "ok"]
    nd = int(np.sum(report.n_diverged))
    return Check("both routes ran on every stimulus", not bad,
                 "all stimuli ok" + (f" ({nd} diverged trials excluded)" if nd else "") if not bad
                 else "; ".join(bad))


def _tolerance_checks(report, tol, n_se, mask=None, label="") -> (List[Check], np.ndarray):
    """One check per measure: err <= tol + n_se se on the stimuli in ``mask``."""
    B = report.n_stimuli
    mask = np.ones(B, bool) if mask is None else np.asarray(mask)
    checks = []
    for m, t in tol.items():
        e, s = report.err[m], report.err_se[m]
        ok_b = report.ok & np.isfinite(e) & (e <= t + n_se * np.nan_to_num(s))
        worst = int(np.nanargmax(np.where(mask, e - t - n_se * np.nan_to_num(s), -np.inf))) if mask.any() else 0
        rel = m != "corr"
        fmt = _pct if rel else (lambda v: f"{float(v):.3g}")
        checks.append(Check(
            f"{m} error <= {fmt(t)} + {n_se:g} SE{label}",
            bool(np.all(ok_b[mask])),
            f"worst stimulus {worst}: {fmt(e[worst])} (noise floor {fmt(s[worst])})",
        ))
    return checks, _tol_mask(report, tol, n_se)


# --------------------------------------------------------------------------- the suites


def _plan_two_population(quick: bool, seed: int, **_) -> _Plan:
    net = SSN.two_population()
    hs = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 19.0]) if quick else np.arange(20.0)
    H = np.stack([hs, hs], axis=1)
    tr_idx = [int(np.argmin(np.abs(hs - v))) for v in (1.0, 3.0, 15.0)]
    # quick: no transient (it costs two more compilations; the ou suite covers the transient path)
    settings = dict(t_max=4000.0, n_trials=64, dt=0.5, burn_in=1000.0, transient=False,
                    seed=seed) if quick else dict(
        t_max=12000.0, n_trials=256, dt=0.5, burn_in=1500.0, transient=tr_idx, transient_trials=1024,
        seed=seed)
    # Measured (256 trials x 12 s, dt 0.5 and 0.1 ms): mean within 0.2% for h >= 3; std within
    # ~0.8% (noise floor ~0.4%) for h >= 4 but off by 2.2-2.9% at h = 3, 5% at h = 2, 20% at h = 1.
    tol_hi = {"mean": 0.01, "std": 0.01, "cov": 0.02}  # h >= 4
    tol_3 = {"mean": 0.01, "std": 0.03, "cov": 0.06}  # h = 3
    n_se = 3.0

    def judge(report: CrosscheckReport, plan: _Plan):
        hi, at3 = hs >= 4.0, np.isclose(hs, 3.0)
        above = hi | at3
        near = (hs >= 0.5) & (hs <= 2.0)
        checks = [_status_check(report)]
        c, mask_hi = _tolerance_checks(report, tol_hi, n_se, hi, " for h >= 4")
        checks += c
        mask_3 = np.zeros(len(hs), bool)
        if at3.any():
            c, mask_3 = _tolerance_checks(report, tol_3, n_se, at3, " at h = 3")
            checks += c
        es, ss = report.err["std"], report.err_se["std"]
        far = float(np.nanmax(es[above]))
        near_max = float(np.nanmax(es[near])) if near.any() else float("nan")
        b_near = int(np.flatnonzero(near)[np.nanargmax(es[near])]) if near.any() else 0
        checks.append(Check(
            "closure visibly off near threshold (std error at h in [0.5, 2] > 2x the largest at h >= 3)",
            bool(near_max > 2.0 * far),
            f"std error {_pct(near_max)} at h = {hs[b_near]:g} vs at most {_pct(far)} for h >= 3",
        ))
        per = tuple(bool(mask_hi[b]) if hi[b] else (bool(mask_3[b]) if at3[b] else None) for b in range(len(hs)))
        # where is the closure detectably off: error > 1% and > 3 noise floors
        off = {m: [b for b in range(len(hs)) if report.err[m][b] > max(0.01, 3 * report.err_se[m][b])]
               for m in ("mean", "std")}
        desc = {m: ", ".join(f"h = {hs[b]:g} ({_pct(report.err[m][b])} ± {_pct(report.err_se[m][b])})"
                             for b in off[m]) or "nowhere" for m in off}
        notes = [
            f"The closure's std is off by more than 1% and 3 noise floors at {desc['std']}; elsewhere "
            f"its std error is at most {_pct(np.nanmax(np.where([b in off['std'] for b in range(len(hs))], np.nan, es)))}.",
            f"The closure's mean is off by more than 1% and 3 noise floors at {desc['mean']}.",
            "At h = 0 the mean is ~0.01 mV, so its relative error is not meaningful (see the absolute "
            "error column, mV).",
            "All stimuli share the simulation's noise realizations (common random numbers), so the "
            "sampling errors of neighbouring h are strongly correlated (the std error ~0.8% for h >= 8 "
            "is one ~2-SE draw, not a trend).",
        ]
        return checks, per, notes

    tols = {"h >= 4": {k: f"{_pct(v)} + {n_se:g} SE" for k, v in tol_hi.items()},
            "h = 3": {k: f"{_pct(v)} + {n_se:g} SE" for k, v in tol_3.items()},
            "near threshold": "std error at h in [0.5, 2] > 2 x the largest std error at h >= 3",
            "h < 3": "reported, not checked"}
    return _Plan(net, H, [f"h = {v:g}" for v in hs], settings, tols, judge, x=hs, transient_stimuli=tr_idx)


def _plan_ou(quick: bool, seed: int, **_) -> _Plan:
    net = ou_network()
    H = np.array([[1.0, -2.0, 0.5, 3.0, 0.0, -1.0]])
    settings = dict(t_max=4000.0, n_trials=64, dt=0.5, burn_in=250.0, transient=True, transient_trials=512,
                    transient_t_max=150.0, seed=seed) if quick else dict(
        t_max=20000.0, n_trials=256, dt=0.5, burn_in=250.0, transient=True, transient_trials=2048,
        transient_t_max=150.0, seed=seed)
    zmax, zrms, zmax_tr = 4.0, 2.0, 5.0

    def judge(report: CrosscheckReport, plan: _Plan):
        checks = [_status_check(report)]
        for m in ("mean", "std", "cov", "corr"):
            checks.append(Check(f"max |z| of {m} entries <= {zmax:g}", bool(np.all(report.z_max[m] <= zmax)),
                                f"max |z| = {np.nanmax(report.z_max[m]):.2f}, rms z = {np.nanmax(report.z_rms[m]):.2f}"))
            checks.append(Check(f"rms z of {m} entries <= {zrms:g}", bool(np.all(report.z_rms[m] <= zrms)),
                                f"rms z = {np.nanmax(report.z_rms[m]):.2f} (~1 expected)"))
        tr = report.transient
        if tr is not None:
            for m in ("mean", "std"):
                checks.append(Check(
                    f"transient {m}: rms z <= {zrms:g} and max |z| <= {zmax_tr:g}",
                    bool(np.all(tr.z_rms[m] <= zrms) and np.all(tr.z_max[m] <= zmax_tr)),
                    f"rms z = {np.nanmax(tr.z_rms[m]):.2f}, max |z| = {np.nanmax(tr.z_max[m]):.2f} "
                    f"over {tr.t.size - 1} times x {report.N} neurons"))
        per = tuple(bool(report.consistent(zmax, ("mean", "std", "cov", "corr"), per_stimulus=True)[b])
                    for b in range(report.n_stimuli))
        notes = ["W = 0: the closure is exact (Gaussian u), so only sampling noise separates the routes; "
                 "z = (closure - simulation) / SE should look standard normal (rms ~1).",
                 "The simulation scheme's own bias (exact OU, exponential Euler for u) is O(dt^2) ~1e-5 "
                 "relative at dt = 0.5 ms, far below the noise."]
        return checks, per, notes

    return _Plan(net, H, ["h = (1, -2, 0.5, 3, 0, -1)"], settings,
                 {"stationary": f"max |z| <= {zmax:g} and rms z <= {zrms:g} for mean, std, cov, corr",
                  "transient": f"rms z <= {zrms:g}, max |z| <= {zmax_tr:g}"},
                 judge)


def _plan_random100(quick: bool, seed: int, **_) -> _Plan:
    net = random_ei_network(100, seed=0)
    rng = np.random.default_rng(1)
    levels = np.array([2.0, 5.0, 10.0, 15.0])
    H = levels[:, None] * (1.0 + 0.2 * rng.normal(size=(levels.size, 100)))
    settings = dict(t_max=3000.0, n_trials=32, dt=0.5, burn_in=500.0, transient=[0, levels.size - 1],
                    transient_trials=128, transient_t_max=150.0, seed=seed) if quick else dict(
        t_max=10000.0, n_trials=128, dt=0.5, burn_in=1000.0, transient=[0, levels.size - 1],
        transient_trials=512, transient_t_max=150.0, seed=seed)
    tol = {"mean": 0.01, "std": 0.02, "cov": 0.05, "corr": 0.5}
    n_se = 3.0

    def judge(report, plan):
        checks = [_status_check(report)]
        c, mask = _tolerance_checks(report, tol, n_se)
        checks += c
        notes = ["corr is the Frobenius norm of the off-diagonal correlation differences over 9900 entries "
                 "(0.5 ~ 0.005 per pair), absolute."]
        return checks, tuple(bool(v) for v in mask), notes

    return _Plan(net, H, [f"h ~ {v:g} (x (1 + 0.2 N(0,1)))" for v in levels], settings,
                 {k: (f"{_pct(v)}" if k != "corr" else f"{v:g}") + f" + {n_se:g} SE" for k, v in tol.items()},
                 judge)


def load_baseline_theta(param, params) -> "jnp.ndarray":
    """Baseline15 theta from ``params``: None (defaults), a path to a JSON file, or a dict.

    The JSON may be a ``Parameterization.to_json`` document, a fit result holding one
    (under any key, one level down), ``{"params": {...}}``, ``{"theta": [...]}``, or a
    bare ``{name: value}`` dict of the 15 physical parameters.
    """
    if params is None:
        return param.default_theta()
    if isinstance(params, (str, os.PathLike)):
        with open(os.fspath(params)) as fh:
            doc = json.load(fh)
        where = os.fspath(params)
    else:
        doc, where = params, "params"

    def attempt(d):
        if not isinstance(d, dict):
            return None
        if "parameterization" in d and "params" in d:
            kind = str(d["parameterization"]).lower()
            if kind != param.kind:
                raise ValueError(f"{where} holds {kind!r} parameters, the echeveste2020 suite needs baseline15")
            return param.to_theta(d["params"])
        if isinstance(d.get("params"), dict):
            return attempt(d["params"])
        if "theta" in d and not isinstance(d["theta"], dict):
            return jnp.asarray(np.asarray(d["theta"], dtype=float))
        if all(n in d for n in param.names):
            return param.to_theta({n: d[n] for n in param.names})
        return None

    theta = attempt(doc)
    if theta is None and isinstance(doc, dict):
        for v in doc.values():
            theta = attempt(v)
            if theta is not None:
                break
    if theta is None:
        raise ValueError(
            f"{where}: no baseline15 parameters found (expected a momentssn parameter document, "
            f"'params', 'theta', or the names {', '.join(param.names)})")
    return theta


def _plan_echeveste2020(quick: bool, seed: int, task=None, params=None, **_) -> _Plan:
    path = Path(task) if task is not None else default_task_path()
    if not path.exists():
        raise FileNotFoundError(
            f"the echeveste2020 suite needs the published task: {path} not found "
            "(pass its path: run_suite('echeveste2020', out, task=PATH) / --task PATH)")
    try:
        from momentssn.params.base import get_parameterization
    except ImportError as err:  # pragma: no cover - only without momentssn.parameterizations
        raise RuntimeError(
            "the echeveste2020 suite needs the 15-parameter baseline (momentssn.parameterizations, "
            "Baseline15), which is not available; pass the baseline parameters with --params "
            "result.json (from `momentssn fit-baseline`) once it is") from err
    from momentssn.tasks import load_task

    tk = load_task(path)
    param = get_parameterization("baseline15", m=tk.n_net // 2)
    theta = load_baseline_theta(param, params)
    net = param.network(theta)
    H = np.asarray(param.inputs(theta, jnp.asarray(tk.inputs)), float)
    last = int(H.shape[0]) - 1
    settings = dict(t_max=3000.0, n_trials=32, dt=0.5, burn_in=500.0, transient=[0, last], transient_trials=128,
                    transient_t_max=120.0, seed=seed) if quick else dict(
        t_max=10000.0, n_trials=128, dt=0.5, burn_in=1000.0, transient=[0, last], transient_trials=512,
        transient_t_max=120.0, seed=seed)
    tol = {"mean": 0.01, "std": 0.05, "cov": 0.10, "corr": 1.0}
    n_se = 3.0

    def judge(report, plan):
        checks = [_status_check(report)]
        c, mask = _tolerance_checks(report, tol, n_se)
        checks += c
        src = "default (unfitted) Baseline15 parameters" if params is None else f"parameters from {params}"
        notes = [f"Network: {src}; task {path}.",
                 "corr: Frobenius norm of the off-diagonal correlation differences (9900 entries), absolute."]
        return checks, tuple(bool(v) for v in mask), notes

    labels = [f"contrast {c:g}" for c in np.asarray(tk.contrasts)]
    return _Plan(net, H, labels, settings,
                 {k: (f"{_pct(v)}" if k != "corr" else f"{v:g}") + f" + {n_se:g} SE" for k, v in tol.items()},
                 judge, extra={"task": str(path), "params": None if params is None else str(params)})


_PLANS = {
    "two_population": _plan_two_population,
    "ou": _plan_ou,
    "random100": _plan_random100,
    "echeveste2020": _plan_echeveste2020,
}


# --------------------------------------------------------------------------- writing


def _cell(err, se, rel=True) -> str:
    e, s = float(err), float(se)
    if not math.isfinite(e):
        return "—"
    if rel:
        return f"{100 * e:.2f}% ± {100 * s:.2f}%" if math.isfinite(s) else f"{100 * e:.2f}%"
    return f"{e:.3g} ± {s:.2g}" if math.isfinite(s) else f"{e:.3g}"


def _markdown(res: SuiteResult, plan: _Plan) -> str:
    r = res.report
    st = r.settings
    lines = [
        f"# Validation suite `{res.name}`: {'PASS' if res.passed else 'FAIL'}",
        "",
        res.description + ".",
        "",
        f"Network: N = {r.N} ({'quick' if res.settings.get('quick') else 'full'} settings). Simulation: "
        f"{r.n_trials} trials x {st['t_max']:g} ms per stimulus (burn-in {st['burn_in']:g} ms, dt {st['dt']:g} ms, "
        f"{st['dtype']}, seed {st['seed']}, {st['n_groups']} trial groups for the standard errors); closure "
        f"in {st['closure_dtype']}. Wall time {res.elapsed:.0f} s.",
        "",
        "Errors are relative norms ||closure - simulation|| / ||simulation|| (corr: absolute Frobenius norm "
        "over the off-diagonal entries); `± x` is the Monte Carlo noise floor of that error (the value it "
        "would have from sampling noise alone if the closure were exact). z = (closure - simulation) / SE "
        "per entry.",
        "",
        "## Tolerances",
        "",
    ]
    for k, v in res.tolerances.items():
        if isinstance(v, dict):
            lines.append(f"- {k}: " + ", ".join(f"{m} {t}" for m, t in v.items()))
        else:
            lines.append(f"- {k}: {v}")
    lines += ["", "## Checks", ""]
    for c in res.checks:
        lines.append(f"- [{'x' if c.passed else ' '}] **{'pass' if c.passed else 'FAIL'}** {c.name}: {c.detail}")
    lines += ["", "## Per stimulus", "",
              "| # | stimulus | status | mean | abs. mean (mV) | std | var | cov | corr | z rms mean/cov | "
              "max abs z mean/cov | pass |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b in range(r.n_stimuli):
        p = res.stimulus_pass[b]
        ps = "—" if p is None else ("pass" if p else "**FAIL**")
        zr = f"{r.z_rms['mean'][b]:.2f} / {r.z_rms['cov'][b]:.2f}"
        zm = f"{r.z_max['mean'][b]:.2f} / {r.z_max['cov'][b]:.2f}"
        status = r.status[b] + (f" ({int(r.n_diverged[b])} trials diverged)" if r.n_diverged[b] else "")
        lines.append(
            f"| {b} | {res.stimulus_labels[b]} | {status} | {_cell(r.err['mean'][b], r.err_se['mean'][b])} | "
            f"{_cell(r.err['mean_abs'][b], r.err_se['mean_abs'][b], rel=False)} | "
            f"{_cell(r.err['std'][b], r.err_se['std'][b])} | {_cell(r.err['var'][b], r.err_se['var'][b])} | "
            f"{_cell(r.err['cov'][b], r.err_se['cov'][b])} | "
            f"{_cell(r.err['corr'][b], r.err_se['corr'][b], rel=False)} | {zr} | {zm} | {ps} |")
    if r.transient is not None:
        tr = r.transient
        lines += ["", "## Transient from rest", "",
                  f"Closure (RK4, dt {tr.dt:g} ms) vs across-trial moments of {tr.n_trials} trials (same dt), "
                  f"{tr.t[-1]:g} ms. Error: max_t ||closure - sim|| / max_t ||sim||.", "",
                  "| # | stimulus | mean err | std err | z rms mean/std | max abs z mean/std |",
                  "|---|---|---|---|---|---|"]
        for k, b in enumerate(tr.stimuli):
            lines.append(
                f"| {b} | {res.stimulus_labels[b]} | {_pct(tr.err['mean'][k])} | {_pct(tr.err['std'][k])} | "
                f"{tr.z_rms['mean'][k]:.2f} / {tr.z_rms['std'][k]:.2f} | "
                f"{tr.z_max['mean'][k]:.2f} / {tr.z_max['std'][k]:.2f} |")
    if res.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    lines += ["", "## Figures", ""]
    for k, f in res.files.items():
        if f.endswith(".png"):
            lines += [f"![{k}]({os.path.basename(f)})", ""]
    return "\n".join(lines) + "\n"


def _save_npz(path: str, report: CrosscheckReport) -> str:
    np.savez_compressed(
        path, h=report.h, theory_mean=report.theory.mean, theory_cov=report.theory.cov,
        sim_mean=report.sim.mean, sim_cov=report.sim.cov, se_mean=report.sim_se.mean,
        se_cov=report.sim_se.cov, std_se=report.std_se, corr_se=report.corr_se)
    return path


# --------------------------------------------------------------------------- entry points


def run_suite(name: str, out_dir, *, quick: bool = False, progress: bool = True, seed: int = 0,
              task=None, params=None) -> SuiteResult:
    """Run one validation suite and write its report into ``out_dir``.

    Args:
        name: a key of ``SUITES``.
        out_dir: folder for report.md, summary.json, moments.npz and the figures
            (created if needed).
        quick: fewer trials / shorter runs (for tests; the same checks).
        progress: print progress (suite, closure, simulation chunks, stimulus i/B).
        seed: simulation seed.
        task: ``echeveste2020`` only: path of the published task .npz (default
            ``../shared/echeveste2020/task.npz``).
        params: ``echeveste2020`` only: baseline parameters, a JSON path (fit result
            from ``momentssn fit-baseline`` or a parameter document) or a dict;
            default: ``Baseline15`` defaults (unfitted).

    Returns:
        :class:`SuiteResult` (``.passed``, ``.checks``, ``.report``, ``.files``).
        Needs 64-bit mode for float64 (otherwise float32, with a warning).
    """
    if name not in _PLANS:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(m, flush=True)) if progress else (lambda m: None)
    say(f"[validate {name}] {SUITES[name]}")
    plan = _PLANS[name](quick=quick, seed=seed, task=task, params=params)
    kw = dict(plan.settings)
    say(f"[validate {name}] {plan.h.shape[0]} stimuli, N = {plan.net.N}, {kw['n_trials']} trials x "
        f"{kw['t_max']:g} ms{' (quick)' if quick else ''}")
    report = crosscheck(plan.net, plan.h, progress=progress, **kw)
    files = {}
    report = write_figures(report, out / "crosscheck.png", stimuli=None, transient_stimuli=plan.transient_stimuli)
    files.update(report.figures)
    if plan.x is not None:
        tx = tm = ts = None
        if not quick:  # the closure on a fine grid for the lines
            say(f"[validate {name}] closure on a fine grid of h")
            tx = np.linspace(plan.x.min(), plan.x.max(), 4 * (len(plan.x) - 1) + 1)
            m, _, _, _ = closure_moments(plan.net.astype(jnp.result_type(float)), np.stack([tx] * plan.net.N, 1))
            tm = m.mean
            ts = np.sqrt(np.maximum(np.diagonal(m.cov, axis1=-2, axis2=-1), 0.0))
        fig = plotting.sweep_figure(plan.x, report, theory_x=tx, theory_mean=tm, theory_std=ts)
        files["sweep"] = plotting.save(fig, out / "sweep.png")
    checks, per, notes = plan.judge(report, plan)
    passed = all(c.passed for c in checks)
    files["moments"] = _save_npz(str(out / "moments.npz"), report)
    files["report"] = str(out / "report.md")
    files["summary"] = str(out / "summary.json")
    settings = dict(kw, quick=bool(quick), **plan.extra)
    res = SuiteResult(name, SUITES[name], passed, tuple(checks), report, tuple(plan.labels), tuple(per),
                      settings, plan.tolerances, tuple(notes), str(out), files, time.perf_counter() - t0)
    with open(files["report"], "w") as fh:
        fh.write(_markdown(res, plan))
    with open(files["summary"], "w") as fh:
        json.dump(_jsonable(res.to_dict()), fh, indent=1)
    for c in checks:
        say(f"[validate {name}] {'pass' if c.passed else 'FAIL'}: {c.name} -- {c.detail}")
    say(f"[validate {name}] {'PASS' if passed else 'FAIL'} in {res.elapsed:.0f} s -> {files['report']}")
    return res


def _jsonable(x):
    from momentssn.experiments.crosscheck import _tojson

    return _tojson(x)


def run_all(out_dir, *, quick: bool = False, progress: bool = True, suites: Optional[Sequence[str]] = None,
            seed: int = 0, task=None, params=None) -> Dict[str, Optional[SuiteResult]]:
    """Run several suites (default: all) into ``out_dir/<suite>/`` and write an index
    ``out_dir/report.md`` and ``out_dir/summary.json``.

    ``echeveste2020`` is skipped (reported as such, value None) when the published
    task is not found and no ``task`` was given.  Returns {name: SuiteResult or None}.
    """
    names = list(SUITES) if suites is None else list(suites)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: Dict[str, Optional[SuiteResult]] = {}
    skipped: Dict[str, str] = {}
    for i, name in enumerate(names):
        if progress:
            print(f"[validate] suite {i + 1}/{len(names)}: {name}", flush=True)
        if name == "echeveste2020" and task is None and not default_task_path().exists():
            skipped[name] = f"published task not found at {default_task_path()}"
            results[name] = None
            if progress:
                print(f"[validate] skipped {name}: {skipped[name]}", flush=True)
            continue
        results[name] = run_suite(name, out / name, quick=quick, progress=progress, seed=seed,
                                  task=task, params=params)
    lines = ["# momentssn validation", "", "| suite | result | description |", "|---|---|---|"]
    for name in names:
        r = results[name]
        res = f"skipped ({skipped[name]})" if r is None else (
            f"[{'PASS' if r.passed else 'FAIL'}]({name}/report.md)")
        lines.append(f"| `{name}` | {res} | {SUITES[name]} |")
    with open(out / "report.md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    summary = {n: (None if r is None else {"passed": r.passed, "checks": [c.to_dict() for c in r.checks],
                                           "report": os.path.relpath(r.files["report"], out)})
               for n, r in results.items()}
    summary["skipped"] = skipped
    summary["passed"] = all(r.passed for r in results.values() if r is not None)
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    return results
