"""The validation suites as plans: for each, the network, the stimuli, the crosscheck
settings (full and ``quick``), the tolerances and the judge that turns a
``CrosscheckReport`` into checks, per-stimulus verdicts and notes.

``PLANS`` maps a suite name to ``plan(quick, seed, task=None, params=None) -> Plan``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

import jax.numpy as jnp
import numpy as np

from momentssn.experiments.crosscheck_report import CrosscheckReport
from momentssn.model import SSN
from momentssn.networks import random_ei_network
from momentssn.params.base import get_parameterization
from momentssn.datasets import BUILTIN_TASKS
from momentssn.tasks import get_task

from .checks import Check, pct, status_check, tolerance_checks, tolerance_text

__all__ = ["Plan", "PLANS", "ou_network", "random_ei_network", "load_baseline_theta"]


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


@dataclasses.dataclass
class Plan:
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


def _plan_two_population(quick: bool, seed: int, **_) -> Plan:
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

    def judge(report: CrosscheckReport, plan: Plan):
        hi, at3 = hs >= 4.0, np.isclose(hs, 3.0)
        above = hi | at3
        near = (hs >= 0.5) & (hs <= 2.0)
        checks = [status_check(report)]
        c, mask_hi = tolerance_checks(report, tol_hi, n_se, hi, " for h >= 4")
        checks += c
        mask_3 = np.zeros(len(hs), bool)
        if at3.any():
            c, mask_3 = tolerance_checks(report, tol_3, n_se, at3, " at h = 3")
            checks += c
        es = report.err["std"]
        far = float(np.nanmax(es[above]))
        near_max = float(np.nanmax(es[near])) if near.any() else float("nan")
        b_near = int(np.flatnonzero(near)[np.nanargmax(es[near])]) if near.any() else 0
        checks.append(Check(
            "closure visibly off near threshold (std error at h in [0.5, 2] > 2x the largest at h >= 3)",
            bool(near_max > 2.0 * far),
            f"std error {pct(near_max)} at h = {hs[b_near]:g} vs at most {pct(far)} for h >= 3",
        ))
        per = tuple(bool(mask_hi[b]) if hi[b] else (bool(mask_3[b]) if at3[b] else None) for b in range(len(hs)))
        # where is the closure detectably off: error > 1% and > 3 noise floors
        off = {m: [b for b in range(len(hs)) if report.err[m][b] > max(0.01, 3 * report.err_se[m][b])]
               for m in ("mean", "std")}
        desc = {m: ", ".join(f"h = {hs[b]:g} ({pct(report.err[m][b])} ± {pct(report.err_se[m][b])})"
                             for b in off[m]) or "nowhere" for m in off}
        notes = [
            f"The closure's std is off by more than 1% and 3 noise floors at {desc['std']}; elsewhere "
            f"its std error is at most {pct(np.nanmax(np.where([b in off['std'] for b in range(len(hs))], np.nan, es)))}.",
            f"The closure's mean is off by more than 1% and 3 noise floors at {desc['mean']}.",
            "At h = 0 the mean is ~0.01 mV, so its relative error is not meaningful (see the absolute "
            "error column, mV).",
            "All stimuli share the simulation's noise realizations (common random numbers), so the "
            "sampling errors of neighbouring h are strongly correlated (the std error ~0.8% for h >= 8 "
            "is one ~2-SE draw, not a trend).",
        ]
        return checks, per, notes

    tols = {"h >= 4": {k: f"{pct(v)} + {n_se:g} SE" for k, v in tol_hi.items()},
            "h = 3": {k: f"{pct(v)} + {n_se:g} SE" for k, v in tol_3.items()},
            "near threshold": "std error at h in [0.5, 2] > 2 x the largest std error at h >= 3",
            "h < 3": "reported, not checked"}
    return Plan(net, H, [f"h = {v:g}" for v in hs], settings, tols, judge, x=hs, transient_stimuli=tr_idx)


def _plan_ou(quick: bool, seed: int, **_) -> Plan:
    net = ou_network()
    H = np.array([[1.0, -2.0, 0.5, 3.0, 0.0, -1.0]])
    settings = dict(t_max=4000.0, n_trials=64, dt=0.5, burn_in=250.0, transient=True, transient_trials=512,
                    transient_t_max=150.0, seed=seed) if quick else dict(
        t_max=20000.0, n_trials=256, dt=0.5, burn_in=250.0, transient=True, transient_trials=2048,
        transient_t_max=150.0, seed=seed)
    zmax, zrms, zmax_tr = 4.0, 2.0, 5.0

    def judge(report: CrosscheckReport, plan: Plan):
        checks = [status_check(report)]
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

    return Plan(net, H, ["h = (1, -2, 0.5, 3, 0, -1)"], settings,
                 {"stationary": f"max |z| <= {zmax:g} and rms z <= {zrms:g} for mean, std, cov, corr",
                  "transient": f"rms z <= {zrms:g}, max |z| <= {zmax_tr:g}"},
                 judge)


def _plan_random100(quick: bool, seed: int, **_) -> Plan:
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
        checks = [status_check(report)]
        c, mask = tolerance_checks(report, tol, n_se)
        checks += c
        notes = ["corr is the Frobenius norm of the off-diagonal correlation differences over 9900 entries "
                 "(0.5 ~ 0.005 per pair), absolute."]
        return checks, tuple(bool(v) for v in mask), notes

    return Plan(net, H, [f"h ~ {v:g} (x (1 + 0.2 N(0,1)))" for v in levels], settings,
                 tolerance_text(tol, n_se),
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


def _plan_echeveste2020(quick: bool, seed: int, task=None, params=None, **_) -> Plan:
    # the published task ships with momentssn; a path (or another name) may replace it
    path = "echeveste2020" if task is None else task
    if not (isinstance(path, str) and path in BUILTIN_TASKS) and not Path(path).exists():
        raise FileNotFoundError(
            f"the echeveste2020 suite needs the published task: {path} not found "
            "(omit --task for the one shipped with momentssn, or pass its path)")
    tk = get_task(str(path))
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
        checks = [status_check(report)]
        c, mask = tolerance_checks(report, tol, n_se)
        checks += c
        src = "default (unfitted) Baseline15 parameters" if params is None else f"parameters from {params}"
        notes = [f"Network: {src}; task {path}.",
                 "corr: Frobenius norm of the off-diagonal correlation differences (9900 entries), absolute."]
        return checks, tuple(bool(v) for v in mask), notes

    labels = [f"contrast {c:g}" for c in np.asarray(tk.contrasts)]
    return Plan(net, H, labels, settings,
                 tolerance_text(tol, n_se),
                 judge, extra={"task": str(path), "params": None if params is None else str(params)})


PLANS: Dict[str, Callable[..., Plan]] = {
    "two_population": _plan_two_population,
    "ou": _plan_ou,
    "random100": _plan_random100,
    "echeveste2020": _plan_echeveste2020,
}
