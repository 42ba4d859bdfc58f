"""Pass/fail statements of the validation suites and the helpers that judge a report
against tolerances of the form ``err <= tol + n_se * err_se``."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Tuple

import numpy as np

from momentssn.experiments.crosscheck_report import STATUS_OK, CrosscheckReport

__all__ = ["Check", "pct", "status_check", "tolerance_checks", "tolerance_text"]


@dataclasses.dataclass(frozen=True)
class Check:
    """One pass/fail statement of a suite."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": bool(self.passed), "detail": self.detail}


def _tol_mask(report: CrosscheckReport, tol: Dict[str, float], n_se: float) -> np.ndarray:
    """(B,) err <= tol + n_se * err_se for every measure in ``tol`` (and status ok)."""
    return report.within(tol, moments=tuple(tol), n_se=n_se, per_stimulus=True)


def pct(x) -> str:
    x = float(x)
    return "nan" if not math.isfinite(x) else f"{100 * x:.2f}%"


def status_check(report: CrosscheckReport) -> Check:
    bad = [f"{b}: {s}" + (f" ({report.closure_message[b]})" if report.closure_message[b] else "")
           for b, s in enumerate(report.status) if s != STATUS_OK]
    nd = int(np.sum(report.n_diverged))
    return Check("both routes ran on every stimulus", not bad,
                 "all stimuli ok" + (f" ({nd} diverged trials excluded)" if nd else "") if not bad
                 else "; ".join(bad))


def tolerance_checks(report, tol, n_se, mask=None, label="") -> Tuple[List[Check], np.ndarray]:
    """One check per measure: err <= tol + n_se se on the stimuli in ``mask``."""
    B = report.n_stimuli
    mask = np.ones(B, bool) if mask is None else np.asarray(mask)
    checks = []
    for m, t in tol.items():
        e, s = report.err[m], report.err_se[m]
        ok_b = report.ok & np.isfinite(e) & (e <= t + n_se * np.nan_to_num(s))
        worst = int(np.nanargmax(np.where(mask, e - t - n_se * np.nan_to_num(s), -np.inf))) if mask.any() else 0
        rel = m != "corr"
        fmt = pct if rel else (lambda v: f"{float(v):.3g}")
        checks.append(Check(
            f"{m} error <= {fmt(t)} + {n_se:g} SE{label}",
            bool(np.all(ok_b[mask])),
            f"worst stimulus {worst}: {fmt(e[worst])} (noise floor {fmt(s[worst])})",
        ))
    return checks, _tol_mask(report, tol, n_se)


def tolerance_text(tol: Dict[str, float], n_se: float) -> Dict[str, str]:
    """{measure: "1.00% + 3 SE"} for the report (corr is absolute, the others relative)."""
    return {k: (pct(v) if k != "corr" else f"{v:g}") + f" + {n_se:g} SE" for k, v in tol.items()}
