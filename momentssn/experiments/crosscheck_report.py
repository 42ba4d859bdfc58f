"""What :func:`~momentssn.experiments.crosscheck.crosscheck` returns: the report of
closure vs simulation, its verdicts (``within``, ``consistent``), a plain-text summary
and a JSON-ready dict.

Standard errors.  Per-entry Monte Carlo standard errors come from the spread of
independent groups of trials (``SimulationResult.standard_error``; for the std and
the correlations the same batch-means formula is applied to the group estimates
of those quantities, which accounts for the correlations between the errors of
the covariance entries).  The SE attached to an error measure ``e`` is its
*noise floor*: the same norm applied to the per-entry SEs, e.g.
``err_se["mean"] = ||SE(mu_sim)|| / ||mu_sim||``.  It is the root-mean-square value
of ``e`` if the closure were exact (sampling noise alone) and bounds the first-order
SE of ``e`` from above.  Reading: ``err >> err_se`` is a closure error,
``err ~ err_se`` is sampling noise (measures: :mod:`.crosscheck_stats`).

z-scores, per entry, ``z = (theory - sim) / SE(sim)`` for the means, stds,
covariances (upper triangle, diagonal included) and correlations (off-diagonal);
under an exact closure they are roughly standard normal (Student-t with G' - 1
degrees of freedom, G' = number of trial groups), so ``z_rms ~ 1``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .._util import to_json
from ..moments import Moments

__all__ = ["CrosscheckReport", "TransientComparison", "MEASURES", "STATUS_OK", "fmt_number"]

#: The error measures of a report, in display order.
MEASURES: Tuple[str, ...] = ("mean", "std", "var", "cov", "corr")

#: ``status`` of a stimulus on which both routes produced moments.
STATUS_OK = "ok"


@dataclasses.dataclass(frozen=True)
class TransientComparison:
    """Time courses from rest (u = 0, eta stationary) by both routes (numpy arrays).

    stimuli: (B',) indices (into the report's stimuli) of the B' stimuli compared here.
    dt: step (ms) of both the simulation and the RK4 closure.
    t: (T,) ms.  mean_th, std_th: (B', T, N) closure (``propagate_moments``), mV.
    mean_sim, std_sim: (B, T, N) across-trial moments of the simulation, mV.
    mean_se, std_se: (B, T, N) their standard errors (sqrt(var / n) and
    std / sqrt(2 (n - 1)), n = kept trials; Gaussian approximation for the std).
    n_trials: trials simulated per stimulus.
    err: {"mean", "std"} -> (B',) max_t ||th(t) - sim(t)|| / max_t ||sim(t)|| (relative).
    z_max: {"mean", "std"} -> (B',) largest |th - sim| / SE over times t > 0 and neurons.
    z_rms: {"mean", "std"} -> (B',) rms of those z-scores.

    The simulator integrates the recurrent input with a first-order (exponential Euler)
    step, exact at fixed points but O(dt) off during fast transients: at dt = 0.5 ms the
    rise of the two-population mean at h = 19 mV is off by ~0.1 mV (z ~ 30 with 1024
    trials), at dt = 0.05 ms by < 0.02 mV (z ~ 2.5).  Hence the small default step.
    """

    stimuli: Tuple[int, ...]
    dt: float
    t: np.ndarray
    mean_th: np.ndarray
    std_th: np.ndarray
    mean_sim: np.ndarray
    std_sim: np.ndarray
    mean_se: np.ndarray
    std_se: np.ndarray
    n_trials: int
    err: Dict[str, np.ndarray]
    z_max: Dict[str, np.ndarray]
    z_rms: Dict[str, np.ndarray]

    def to_dict(self) -> dict:
        return to_json(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class CrosscheckReport:
    """Closure vs simulation for B stimuli (all arrays numpy, leading axis B).

    Attributes:
        h: (B, N) inputs (mV).  ``squeeze``: h was given as (N,).
        theory: closure ``Moments`` mean (B, N) mV, cov (B, N, N) mV^2 (NaN where the
            closure has no stable fixed point).
        sim: simulation ``Moments`` pooled over the window and the kept trials.
        sim_se: their Monte Carlo standard errors (``Moments``).
        std_se: (B, N) SE of the simulated stds; corr_se: (B, N, N) SE of the
            simulated correlations (diagonal 0).
        err, err_se: {measure: (B,)} error measures and their noise floors (module
            docstring); measures ``MEASURES`` plus ``"mean_abs"`` (mV).
        z: {"mean": (B, N), "std": (B, N), "cov": (B, N, N), "corr": (B, N, N)}
            per-entry z-scores (theory - sim) / SE; ``z["cov"]`` diagonal = variances.
        z_rms, z_max: {"mean", "std", "cov", "corr"} -> (B,) rms and max |z| over the
            independent entries (upper triangle for cov, strict upper for corr).
        status: (B,) strings: "ok", "closure unstable", "simulation diverged" (all
            trials), "closure unstable; simulation diverged".
        closure_stable: (B,) bool; max_real_eig: (B,) largest Re eig of J (1/ms);
        closure_message: (B,) explanation when the closure failed, else "".
        n_diverged: (B,) diverged trials (excluded from the simulation moments).
        n_trials, n_samples: trials per stimulus and pooled samples per stimulus.
        settings: the simulation settings (t_max, dt, burn_in, seed, dtype, n_groups).
        timings: wall-clock seconds of the closure / simulation / transient parts.
        transient: :class:`TransientComparison` or None.
        figures: {name: path} of the figures written.
        step: the simulation's time-step error, measured by step doubling on the same
            noise path (``momentssn.step_error``), separately from the Monte Carlo error:
            {"mean_max_abs": (B,) mV, "std_max_abs": (B,) mV, largest |error| of a mean
            and of a std; "ratio_to_mc": (B,) largest |error| / MC SE; "adequate": (B,)
            bool, ratio <= 1}; ``None`` unless ``crosscheck(step_check=True)``.
        labels: (N,) neuron labels ("E0", "I1", ...).
    """

    h: np.ndarray
    squeeze: bool
    theory: Moments
    sim: Moments
    sim_se: Moments
    std_se: np.ndarray
    corr_se: np.ndarray
    err: Dict[str, np.ndarray]
    err_se: Dict[str, np.ndarray]
    z: Dict[str, np.ndarray]
    z_rms: Dict[str, np.ndarray]
    z_max: Dict[str, np.ndarray]
    status: Tuple[str, ...]
    closure_stable: np.ndarray
    max_real_eig: np.ndarray
    closure_message: Tuple[str, ...]
    n_diverged: np.ndarray
    n_trials: int
    n_samples: np.ndarray
    settings: Dict[str, object]
    timings: Dict[str, float]
    labels: Tuple[str, ...]
    transient: Optional[TransientComparison] = None
    figures: Dict[str, str] = dataclasses.field(default_factory=dict)
    step: Optional[Dict[str, np.ndarray]] = None

    # ---- sizes
    @property
    def n_stimuli(self) -> int:
        return int(self.h.shape[0])

    @property
    def N(self) -> int:
        return int(self.h.shape[1])

    @property
    def ok(self) -> np.ndarray:
        """(B,) bool: both routes produced moments (closure stable, some trials kept)."""
        return np.array([s == STATUS_OK for s in self.status])

    # ---- verdicts
    def within(self, tol, moments: Sequence[str] = ("mean", "std"), n_se: float = 0.0,
               per_stimulus: bool = False):
        """Are the errors below ``tol`` (+ ``n_se`` noise floors)?

        Args:
            tol: a float (same tolerance for every measure) or {measure: tol}.
            moments: measures to check (from ``MEASURES`` and "mean_abs").
            n_se: allowance for sampling noise: passes if err <= tol + n_se * err_se.
            per_stimulus: return a (B,) bool array instead of one bool.
        A stimulus whose status is not "ok" fails.
        """
        tols = tol if isinstance(tol, dict) else {m: float(tol) for m in moments}
        ok = self.ok.copy()
        for m in moments:
            if m == "corr" and self.N == 1:
                continue  # no off-diagonal entries
            e, s = self.err[m], self.err_se[m]
            allow = tols[m] + n_se * np.nan_to_num(s, nan=0.0)
            ok &= np.isfinite(e) & (e <= allow)
        return ok if per_stimulus else bool(np.all(ok))

    def consistent(self, n_se: float = 4.0, moments: Sequence[str] = ("mean", "cov"),
                   per_stimulus: bool = False):
        """Is every simulated entry within ``n_se`` standard errors of the closure?

        Checks max |z| <= n_se over the entries of ``moments`` ("mean", "std", "cov",
        "corr").  With many entries (N ~ 100: ~5000 covariance entries) a few |z| > 4
        are expected by chance; use ``z_rms`` (~1 for an exact closure) there.
        A stimulus whose status is not "ok" fails.
        """
        ok = self.ok.copy()
        for m in moments:
            zm = self.z_max[m]
            if m == "corr" and self.N == 1:
                continue
            ok &= np.isfinite(zm) & (zm <= n_se)
        return ok if per_stimulus else bool(np.all(ok))

    # ---- output
    def stimulus(self, b: int) -> dict:
        """One stimulus as a flat dict of floats (errors, SEs, z statistics, status)."""
        row = {"stimulus": int(b), "status": self.status[b], "n_diverged": int(self.n_diverged[b]),
               "max_real_eig": float(self.max_real_eig[b])}
        for m in self.err:
            row[f"err_{m}"] = float(self.err[m][b])
            row[f"se_{m}"] = float(self.err_se[m][b])
        for m in self.z_rms:
            row[f"z_rms_{m}"] = float(self.z_rms[m][b])
            row[f"z_max_{m}"] = float(self.z_max[m][b])
        return row

    def to_dict(self, arrays: bool = True) -> dict:
        """JSON-serialisable dict (NaN/inf -> None).  ``arrays=False`` drops the
        moment arrays and per-entry z-scores (keeps the per-stimulus summaries)."""
        d = {
            "h": self.h,
            "n_stimuli": self.n_stimuli,
            "N": self.N,
            "status": list(self.status),
            "closure_stable": self.closure_stable,
            "max_real_eig": self.max_real_eig,
            "closure_message": list(self.closure_message),
            "n_diverged": self.n_diverged,
            "n_trials": self.n_trials,
            "n_samples": self.n_samples,
            "settings": self.settings,
            "timings": self.timings,
            "err": self.err,
            "err_se": self.err_se,
            "z_rms": self.z_rms,
            "z_max": self.z_max,
            "figures": self.figures,
            "labels": list(self.labels),
        }
        if arrays:
            d.update(
                theory={"mean": self.theory.mean, "cov": self.theory.cov},
                sim={"mean": self.sim.mean, "cov": self.sim.cov},
                sim_se={"mean": self.sim_se.mean, "cov": self.sim_se.cov},
                std_se=self.std_se,
                corr_se=self.corr_se,
                z=self.z,
            )
        if self.step is not None:
            d["step_error"] = self.step
        if self.transient is not None:
            tr = self.transient.to_dict()
            d["transient"] = tr if arrays else {k: tr[k] for k in ("stimuli", "dt", "n_trials", "err", "z_max", "z_rms")}
        return to_json(d)

    def summary(self) -> str:
        """A plain-text table, one line per stimulus."""
        lines = [
            f"{'stim':>4} {'status':<10} " + " ".join(f"{m + ' err (se)':>19}" for m in MEASURES)
            + f" {'z_rms m/cov':>12} {'z_max m/cov':>12}"
        ]
        for b in range(self.n_stimuli):
            cells = []
            for m in MEASURES:
                e, s = self.err[m][b], self.err_se[m][b]
                cells.append(f"{fmt_number(e):>9} ({fmt_number(s):>7})")
            zr = f"{fmt_number(self.z_rms['mean'][b], 3)}/{fmt_number(self.z_rms['cov'][b], 3)}"
            zm = f"{fmt_number(self.z_max['mean'][b], 3)}/{fmt_number(self.z_max['cov'][b], 3)}"
            st = self.status[b] if len(self.status[b]) <= 10 else self.status[b][:9] + "."
            lines.append(f"{b:>4} {st:<10} " + " ".join(f"{c:>19}" for c in cells) + f" {zr:>12} {zm:>12}")
        if self.step is not None:
            r = self.step["ratio_to_mc"]
            lines.append(f"time step {self.step['dt']:g} ms: largest step error / MC SE per stimulus "
                         + ", ".join(fmt_number(x, 3) for x in r)
                         + (" (below the Monte Carlo error)" if np.all(r <= 1) else " (NOT below the Monte Carlo error)"))
        return "\n".join(lines)

    def __repr__(self) -> str:  # keep notebooks readable
        return (f"CrosscheckReport(B={self.n_stimuli}, N={self.N}, n_trials={self.n_trials}, "
                f"status={list(self.status)})\n" + self.summary())


def fmt_number(x, digits: int = 3) -> str:
    x = float(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"
