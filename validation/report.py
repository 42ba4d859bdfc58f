"""What a validation suite returns and writes: :class:`SuiteResult`, ``report.md``,
``summary.json`` (strict JSON: NaN -> null), ``moments.npz`` and the index of a run of
several suites.  All files are written atomically."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Dict

from momentssn._util import atomic_savez, atomic_write_json, atomic_write_text
from momentssn.experiments.crosscheck_report import CrosscheckReport

from .checks import pct

__all__ = ["SuiteResult", "markdown", "write_suite", "write_index"]


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


def _cell(err, se, rel=True) -> str:
    e, s = float(err), float(se)
    if not math.isfinite(e):
        return "—"
    if rel:
        return f"{100 * e:.2f}% ± {100 * s:.2f}%" if math.isfinite(s) else f"{100 * e:.2f}%"
    return f"{e:.3g} ± {s:.2g}" if math.isfinite(s) else f"{e:.3g}"


def markdown(res: SuiteResult) -> str:
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
    if r.step is not None:
        st = r.step
        lines += ["", "## Time step", "",
                  f"Step error of the simulation at dt = {st['dt']:g} ms (integrator of order {st['order']}), "
                  f"measured by step doubling on the same noise path (dt and dt/2), beside the Monte Carlo error. "
                  f"The errors above include it; a ratio below 1 means the step does not limit the comparison.", "",
                  "| # | stimulus | max abs step error, mean (mV) | max abs step error, std (mV) | "
                  "step error / MC SE | step below MC error |", "|---|---|---|---|---|---|"]
        for b in range(r.n_stimuli):
            lines.append(f"| {b} | {res.stimulus_labels[b]} | {st['mean_max_abs'][b]:.2g} | "
                         f"{st['std_max_abs'][b]:.2g} | {st['ratio_to_mc'][b]:.2f} | "
                         f"{'yes' if st['adequate'][b] else '**no**'} |")
    if r.transient is not None:
        tr = r.transient
        lines += ["", "## Transient from rest", "",
                  f"Closure (RK4, dt {tr.dt:g} ms) vs across-trial moments of {tr.n_trials} trials (same dt), "
                  f"{tr.t[-1]:g} ms. Error: max_t ||closure - sim|| / max_t ||sim||.", "",
                  "| # | stimulus | mean err | std err | z rms mean/std | max abs z mean/std |",
                  "|---|---|---|---|---|---|"]
        for k, b in enumerate(tr.stimuli):
            lines.append(
                f"| {b} | {res.stimulus_labels[b]} | {pct(tr.err['mean'][k])} | {pct(tr.err['std'][k])} | "
                f"{tr.z_rms['mean'][k]:.2f} / {tr.z_rms['std'][k]:.2f} | "
                f"{tr.z_max['mean'][k]:.2f} / {tr.z_max['std'][k]:.2f} |")
    if res.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    lines += ["", "## Figures", ""]
    for k, f in res.files.items():
        if f.endswith(".png"):
            lines += [f"![{k}]({os.path.basename(f)})", ""]
    return "\n".join(lines) + "\n"


def _arrays(report: CrosscheckReport) -> dict:
    """The moment arrays of a report, for ``moments.npz``."""
    return dict(h=report.h, theory_mean=report.theory.mean, theory_cov=report.theory.cov,
                sim_mean=report.sim.mean, sim_cov=report.sim.cov, se_mean=report.sim_se.mean,
                se_cov=report.sim_se.cov, std_se=report.std_se, corr_se=report.corr_se)


def write_suite(res: SuiteResult) -> None:
    """Write ``res.files["report"]``, ``["summary"]`` and ``["moments"]``."""
    atomic_savez(res.files["moments"], _arrays(res.report))
    atomic_write_text(res.files["report"], markdown(res))
    atomic_write_json(res.files["summary"], res.to_dict())


def write_index(out: Path, results: Dict[str, SuiteResult], descriptions: Dict[str, str]) -> None:
    """``out/report.md`` (a table of the suites) and ``out/summary.json``."""
    lines = ["# momentssn validation", "", "| suite | result | description |", "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| `{name}` | [{'PASS' if r.passed else 'FAIL'}]({name}/report.md) | {descriptions[name]} |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    summary = {n: {"passed": r.passed, "checks": [c.to_dict() for c in r.checks],
                   "report": os.path.relpath(r.files["report"], out)}
               for n, r in results.items()}
    summary["passed"] = all(r.passed for r in results.values())
    atomic_write_json(out / "summary.json", summary)
