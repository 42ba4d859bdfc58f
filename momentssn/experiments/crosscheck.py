"""Cross-validation of the two routes: Gaussian moment closure vs stochastic simulation.

:func:`crosscheck` runs, on the same network and the same stimuli,

* the stationary closure (``stationary_solve``, float64 when 64-bit mode is on), and
* the stochastic simulation (``simulate``, float64 by default here for fidelity),

and returns a :class:`CrosscheckReport` with, per stimulus, the error of every moment
*together with the Monte Carlo standard error of the simulation estimate*, so that a
closure error can be told from sampling noise.

Error measures (per stimulus b; ``th`` = closure, ``sim`` = simulation, norms are
Euclidean / Frobenius):

=========  ==========================================================================
``mean``   ||mu_th - mu_sim|| / ||mu_sim||                              (relative)
``std``    ||sd_th - sd_sim|| / ||sd_sim||                              (relative)
``var``    ||diag S_th - diag S_sim|| / ||diag S_sim||                  (relative)
``cov``    ||S_th - S_sim||_F / ||S_sim||_F                             (relative)
``corr``   ||R_th - R_sim||_F over the off-diagonal entries             (absolute)
=========  ==========================================================================

(plus ``mean_abs`` = rms_i |mu_th,i - mu_sim,i| in mV, useful where mu ~ 0).

Standard errors.  Per-entry Monte Carlo standard errors come from the spread of
independent groups of trials (``SimulationResult.standard_error``; for the std and
the correlations the same batch-means formula is applied to the group estimates
of those quantities, which accounts for the correlations between the errors of
the covariance entries).  The SE attached to an error measure ``e`` is its
*noise floor*: the same norm applied to the per-entry SEs, e.g.
``err_se["mean"] = ||SE(mu_sim)|| / ||mu_sim||``.  It is the root-mean-square value
of ``e`` if the closure were exact (sampling noise alone) and bounds the first-order
SE of ``e`` from above.  Reading: ``err >> err_se`` is a closure error,
``err ~ err_se`` is sampling noise.

z-scores, per entry, ``z = (theory - sim) / SE(sim)`` for the means, stds,
covariances (upper triangle, diagonal included) and correlations (off-diagonal);
under an exact closure they are roughly standard normal (Student-t with G' - 1
degrees of freedom, G' = number of trial groups), so ``z_rms ~ 1``.

Stimuli of one batch share their noise realizations in the simulation (common random
numbers, see ``momentssn.simulate``): errors of different stimuli are correlated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from typing import Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import UnstableNetworkError
from ..model import SSN
from ..moments import Moments
from ..closure.transient import propagate_moments
from ..simulation.simulate import simulate
from ..closure.stationary import stationary_solve

__all__ = [
    "crosscheck",
    "CrosscheckReport",
    "TransientComparison",
    "MEASURES",
    "relative_error",
    "compare_moments",
    "closure_moments",
    "write_figures",
]

#: The error measures of a report, in display order.
MEASURES: Tuple[str, ...] = ("mean", "std", "var", "cov", "corr")

_STATUS_OK = "ok"


# --------------------------------------------------------------------------- small pure helpers


def relative_error(theory, sim, axis=None) -> np.ndarray:
    """||theory - sim|| / ||sim|| over ``axis`` (default all); NaN where ||sim|| = 0."""
    d = np.sqrt(np.nansum((np.asarray(theory) - np.asarray(sim)) ** 2, axis=axis))
    n = np.sqrt(np.nansum(np.asarray(sim) ** 2, axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, d / np.where(n > 0, n, 1.0), np.nan)


def _norm(x, axes) -> np.ndarray:
    return np.sqrt(np.sum(np.asarray(x) ** 2, axis=axes))


def _safe_div(a, b) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((b > 0) & np.isfinite(b), a / np.where(b > 0, b, 1.0), np.nan)


def _std(cov) -> np.ndarray:
    """(.., N, N) -> (.., N) standard deviations."""
    return np.sqrt(np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0))


def _corr(cov) -> np.ndarray:
    """(.., N, N) covariance -> correlation matrix (zero-variance rows give 0; NaN stays NaN)."""
    s = _std(cov)
    d = s[..., :, None] * s[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, cov / np.where(d > 0, d, 1.0), np.where(np.isnan(d), np.nan, 0.0))


def _group_se(fn, pooled_cov, group_cov, group_n) -> np.ndarray:
    """Batch-means standard error of ``fn(cov)`` from G independent trial groups.

    pooled_cov (B, N, N), group_cov (B, G, N, N), group_n (B, G) samples per group.
    The formula of ``SimulationResult.standard_error``:
    SE^2 = G'/(G'-1) sum_g w_g^2 (f_g - f)^2, w_g = n_g / n, G' = #groups with n_g > 0.
    Returns the SE with the shape of ``fn(pooled_cov)`` (NaN if G' < 2).
    """
    n_g = np.asarray(group_n, float)
    w = n_g / np.maximum(n_g.sum(-1, keepdims=True), 1.0)  # (B, G)
    gp = (n_g > 0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fac = np.where(gp > 1, gp / np.maximum(gp - 1, 1), np.nan)  # (B,)
    f = fn(pooled_cov)  # (B, ...)
    fg = fn(group_cov)  # (B, G, ...)
    extra = (1,) * (f.ndim - 1)
    d = np.where((n_g > 0).reshape(n_g.shape + extra), fg - f[:, None], 0.0)
    ww = w.reshape(w.shape + extra)
    return np.sqrt(fac.reshape((-1,) + extra) * np.sum((ww * d) ** 2, axis=1))


def _tojson(x):
    """numpy / jax values -> JSON-able Python (NaN and inf -> None)."""
    if isinstance(x, dict):
        return {str(k): _tojson(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_tojson(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)) or np.isscalar(x) and isinstance(x, np.generic):
        a = np.asarray(x)
        if a.dtype == bool:
            return a.tolist()
        if np.issubdtype(a.dtype, np.integer):
            return a.tolist()
        if np.issubdtype(a.dtype, np.floating):
            obj = np.where(np.isfinite(a), a, np.nan).astype(object)
            obj[~np.isfinite(a)] = None
            return obj.tolist()
        return a.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# --------------------------------------------------------------------------- containers


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
        return _tojson(dataclasses.asdict(self))


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
        return np.array([s == _STATUS_OK for s in self.status])

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
        if self.transient is not None:
            tr = self.transient.to_dict()
            d["transient"] = tr if arrays else {k: tr[k] for k in ("stimuli", "dt", "n_trials", "err", "z_max", "z_rms")}
        return _tojson(d)

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
                cells.append(f"{_fmt(e):>9} ({_fmt(s):>7})")
            zr = f"{_fmt(self.z_rms['mean'][b], 3)}/{_fmt(self.z_rms['cov'][b], 3)}"
            zm = f"{_fmt(self.z_max['mean'][b], 3)}/{_fmt(self.z_max['cov'][b], 3)}"
            st = self.status[b] if len(self.status[b]) <= 10 else self.status[b][:9] + "."
            lines.append(f"{b:>4} {st:<10} " + " ".join(f"{c:>19}" for c in cells) + f" {zr:>12} {zm:>12}")
        return "\n".join(lines)

    def __repr__(self) -> str:  # keep notebooks readable
        return (f"CrosscheckReport(B={self.n_stimuli}, N={self.N}, n_trials={self.n_trials}, "
                f"status={list(self.status)})\n" + self.summary())


def _fmt(x, digits: int = 3) -> str:
    x = float(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"


# --------------------------------------------------------------------------- comparison maths


def compare_moments(theory: Moments, sim: Moments, sim_se: Moments, std_se, corr_se):
    """Error measures, noise floors and z-scores (numpy, batched over the leading axis).

    theory, sim, sim_se: ``Moments`` with mean (B, N), cov (B, N, N); std_se (B, N),
    corr_se (B, N, N).  Returns (err, err_se, z, z_rms, z_max) as in
    :class:`CrosscheckReport`.
    """
    mt, ct = np.asarray(theory.mean, float), np.asarray(theory.cov, float)
    ms_, cs = np.asarray(sim.mean, float), np.asarray(sim.cov, float)
    sem, sec = np.asarray(sim_se.mean, float), np.asarray(sim_se.cov, float)
    N = mt.shape[-1]
    sdt, sds = _std(ct), _std(cs)
    vt, vs = np.diagonal(ct, axis1=-2, axis2=-1), np.diagonal(cs, axis1=-2, axis2=-1)
    sev = np.diagonal(sec, axis1=-2, axis2=-1)
    rt, rs = _corr(ct), _corr(cs)
    off = ~np.eye(N, dtype=bool)

    def nrm(x):  # norm over all non-batch axes
        return _norm(x, tuple(range(1, np.ndim(x))))

    offn = lambda x: np.sqrt(np.sum(np.where(off, x, 0.0) ** 2, axis=(-2, -1)))  # noqa: E731
    err = {
        "mean": _safe_div(nrm(mt - ms_), nrm(ms_)),
        "std": _safe_div(nrm(sdt - sds), nrm(sds)),
        "var": _safe_div(nrm(vt - vs), nrm(vs)),
        "cov": _safe_div(nrm(ct - cs), nrm(cs)),
        "corr": offn(rt - rs) if N > 1 else np.full(mt.shape[0], np.nan),
        "mean_abs": nrm(mt - ms_) / math.sqrt(N),
    }
    err_se = {
        "mean": _safe_div(nrm(sem), nrm(ms_)),
        "std": _safe_div(nrm(std_se), nrm(sds)),
        "var": _safe_div(nrm(sev), nrm(vs)),
        "cov": _safe_div(nrm(sec), nrm(cs)),
        "corr": offn(corr_se) if N > 1 else np.full(mt.shape[0], np.nan),
        "mean_abs": nrm(sem) / math.sqrt(N),
    }
    # propagate NaN moments (unstable closure / all trials diverged) into the errors
    bad = ~(np.all(np.isfinite(mt), -1) & np.all(np.isfinite(ms_), -1))
    for d in (err, err_se):
        for k in d:
            d[k] = np.where(bad, np.nan, d[k])
    z = {
        "mean": _safe_div(mt - ms_, sem),
        "std": _safe_div(sdt - sds, std_se),
        "cov": _safe_div(ct - cs, sec),
        "corr": np.where(off, _safe_div(rt - rs, corr_se), 0.0),
    }
    iu = np.triu_indices(N)
    iu1 = np.triu_indices(N, 1)
    flat = {
        "mean": z["mean"],
        "std": z["std"],
        "cov": z["cov"][:, iu[0], iu[1]],
        "corr": z["corr"][:, iu1[0], iu1[1]],
    }
    z_rms, z_max = {}, {}
    for k, v in flat.items():
        fin = np.isfinite(v)
        cnt = fin.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z_rms[k] = np.where(cnt > 0, np.sqrt(np.sum(np.where(fin, v, 0.0) ** 2, -1) / np.maximum(cnt, 1)), np.nan)
            z_max[k] = np.where(cnt > 0, np.max(np.where(fin, np.abs(v), -np.inf), -1, initial=-np.inf), np.nan)
        z_rms[k] = np.where(bad, np.nan, z_rms[k])
        z_max[k] = np.where(bad, np.nan, z_max[k])
    return err, err_se, z, z_rms, z_max


def _neuron_labels(net: SSN) -> Tuple[str, ...]:
    if net.n_exc is None:
        return tuple(f"u{i}" for i in range(net.N))
    return tuple(("E" if i < net.n_exc else "I") + str(i) for i in range(net.N))


def closure_moments(net: SSN, H, progress: bool = False):
    """Stationary closure for every stimulus, one at a time; never raises on instability.

    H: (B, N) inputs (mV).  The stimuli are solved one by one with h of shape (N,), so
    the solver compiles once per network size whatever B is (a batched solve would
    recompile for every new B; on CPU it is not faster).

    Returns (Moments mean (B, N), cov (B, N, N) as numpy, NaN where unstable;
    stable (B,) bool; max_real_eig (B,) 1/ms; messages (B,) "" or why it failed).
    """
    H = np.atleast_2d(np.asarray(H, float))
    B, N = H.shape
    mean, cov = np.full((B, N), np.nan), np.full((B, N, N), np.nan)
    stable, eig, msgs = np.zeros(B, bool), np.full(B, np.nan), []
    for b in range(B):
        if progress and B > 1:
            print(f"\rcrosscheck: closure, stimulus {b + 1}/{B}", end="\n" if b == B - 1 else "", flush=True)
        try:
            m, info = stationary_solve(net, jnp.asarray(H[b], net.dtype))
        except UnstableNetworkError as exc:  # defensive: stationary_solve reports, not raises
            eig[b] = float(getattr(exc, "max_real_eig", np.nan))
            msgs.append(str(exc))
            continue
        conv, e, res = bool(info.converged), float(info.max_real_eig), float(info.residual)
        mb, cb = np.asarray(m.mean, float), np.asarray(m.cov, float)
        eig[b] = e
        stable[b] = conv and e < 0 and np.all(np.isfinite(mb)) and np.all(np.isfinite(cb))
        if stable[b]:
            mean[b], cov[b] = mb, cb
            msgs.append("")
        elif not conv:
            msgs.append(
                f"no fixed point found: the mean dynamics diverge or Newton failed "
                f"(relative residual {res:.3g}, largest Re eig of J {e:.4g} /ms)"
            )
        else:
            msgs.append(f"unstable fixed point: largest Re eig of J {e:.4g} /ms >= 0")
    return Moments(mean, cov), stable, eig, tuple(msgs)


def _status(stable: bool, all_diverged: bool) -> str:
    if stable and not all_diverged:
        return _STATUS_OK
    if not stable and all_diverged:
        return "closure unstable; simulation diverged"
    return "closure unstable" if not stable else "simulation diverged"


def _default_burn_in(net: SSN, t_max: float) -> float:
    slow = max(float(np.max(np.asarray(net.tau))), float(net.tau_noise))
    return min(0.25 * t_max, 25.0 * slow)


@contextlib.contextmanager
def _quiet_divergence():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="simulate: .* diverged", category=RuntimeWarning)
        yield


def _transient(net_th: SSN, net_sim: SSN, H, *, t_max, dt, n_trials, seed, stride, dtype, progress,
               stimuli=None):
    """Closure trajectory (RK4) vs across-trial simulation moments, from rest."""
    tr_th = propagate_moments(net_th, H, t_max, dt, save_every=stride)
    with _quiet_divergence():
        sim = simulate(net_sim, H, t_max, dt, n_trials, seed, burn_in=0.0, dtype=dtype,
                       record_stride=stride, progress=progress)
    rec = sim.time_resolved
    T = min(tr_th.t.shape[0], rec.t.shape[0])
    t = np.asarray(rec.t[:T], float)
    mth = np.asarray(tr_th.mean[:, :T], float)
    sth = np.asarray(tr_th.std[:, :T], float)
    msim = np.asarray(rec.mean[:, :T], float)
    ssim = np.asarray(rec.std[:, :T], float)
    n = np.asarray(n_trials - sim.n_diverged, float)[:, None, None]  # (B, 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = ssim / np.sqrt(np.maximum(n, 1.0))
        sse = ssim / np.sqrt(2.0 * np.maximum(n - 1.0, 1.0))
    err, z_max, z_rms = {}, {}, {}
    for k, th, sm, se in (("mean", mth, msim, mse), ("std", sth, ssim, sse)):
        num = np.max(_norm(th - sm, -1), -1)
        den = np.max(_norm(sm, -1), -1)
        err[k] = _safe_div(num, den)
        zz = _safe_div(th - sm, se)[:, 1:]  # t = 0 is deterministic (SE 0)
        fin = np.isfinite(zz)
        cnt = fin.reshape(zz.shape[0], -1).sum(-1)
        with np.errstate(invalid="ignore"):
            z_max[k] = np.where(cnt > 0, np.max(np.where(fin, np.abs(zz), -np.inf).reshape(zz.shape[0], -1), -1), np.nan)
            z_rms[k] = np.where(cnt > 0, np.sqrt(np.sum(np.where(fin, zz, 0.0) ** 2, (1, 2)) / np.maximum(cnt, 1)), np.nan)
    stimuli = tuple(range(H.shape[0])) if stimuli is None else tuple(int(b) for b in stimuli)
    return TransientComparison(stimuli, float(dt), t, mth, sth, msim, ssim, mse, sse, int(n_trials), err,
                               z_max, z_rms)


# --------------------------------------------------------------------------- the entry point


def crosscheck(
    net: SSN,
    h,
    *,
    t_max: float = 10_000.0,
    dt: float = 0.5,
    n_trials: int = 64,
    seed: int = 0,
    burn_in: Optional[float] = None,
    dtype=None,
    n_groups: Optional[int] = None,
    transient=False,
    transient_t_max: Optional[float] = None,
    transient_dt: Optional[float] = None,
    transient_trials: Optional[int] = None,
    transient_points: int = 150,
    figure=None,
    neurons: Optional[Sequence[int]] = None,
    progress: bool = False,
) -> CrosscheckReport:
    """Run both routes on ``net`` and inputs ``h`` and compare their moments.

    Args:
        net: the network.
        h: (N,) or (B, N) constant input (mV).
        t_max: simulated duration per trial (ms), burn-in included.
        dt: simulation step (ms) (also the RK4 step of the transient closure).
        n_trials: trials per stimulus for the stationary moments.
        seed: simulation seed.
        burn_in: (ms) discarded start of every trial; default
            min(t_max / 4, 25 max(tau_i, tau_noise)).
        dtype: simulation dtype; default float64 when ``jax_enable_x64`` is on (the
            closure then also runs in float64), else float32 (with a warning).
        n_groups: trial groups for the standard errors (default: ``simulate``'s,
            the largest divisor of n_trials <= 32).
        transient: also compare time courses from rest (``propagate_moments`` vs the
            across-trial moments of a second simulation): True for every stimulus, or a
            sequence of stimulus indices.
        transient_dt: step (ms) of that comparison, for both routes; default
            min(dt, 0.05) (see :class:`TransientComparison` on why it is small).
        transient_t_max: duration of the transient (ms); default
            6 max(tau_i, tau_noise).
        transient_trials: trials of the transient simulation (default
            max(256, n_trials)).
        transient_points: about this many recorded times.
        figure: None, or a path (e.g. "out/check.png"): writes the theory-vs-simulation
            scatter there and, with ``transient``, the time courses next to it
            ("<stem>_transient<suffix>").
        neurons: neurons shown in the transient figure (default: up to 2 E and 2 I).
        progress: print what is being done (and, on a terminal, the simulation's
            chunk progress).

    Returns:
        :class:`CrosscheckReport`.  A closure without a stable fixed point and
        diverged simulation trials are *reported* (``status``, ``closure_message``,
        ``n_diverged``), not raised.

    Both routes and the comparison run under ``jax.default_matmul_precision("highest")``
    (a context manager: the global setting is untouched).
    """
    x64 = bool(jax.config.jax_enable_x64)
    if dtype is None:
        dtype = jnp.float64 if x64 else jnp.float32
        if not x64:
            warnings.warn(
                "crosscheck: 64-bit mode is off, so the closure and the simulation run in float32; "
                "enable jax_enable_x64 for a faithful comparison", RuntimeWarning, stacklevel=2)
    dtype = jnp.dtype(dtype)
    fdt = jnp.float64 if x64 else jnp.float32
    net_th = net.astype(fdt)
    H = np.asarray(h, dtype=float)
    squeeze = H.ndim == 1
    if H.ndim not in (1, 2) or H.shape[-1] != net.N:
        raise ValueError(f"h must have shape ({net.N},) or (B, {net.N}), got {H.shape}")
    H = np.atleast_2d(H)
    B, N = H.shape
    t_max, dt, n_trials = float(t_max), float(dt), int(n_trials)
    if burn_in is None:
        burn_in = _default_burn_in(net, t_max)
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    # the simulation's chunk counter rewrites one line: only on a terminal (simulate's
    # default), where a log file would get one long line of carriage returns
    sim_progress = None if progress else False
    timings = {}

    with jax.default_matmul_precision("highest"):
        t0 = time.perf_counter()
        say(f"crosscheck: closure for {B} stimuli (N = {N})")
        theory, stable, eig, msgs = closure_moments(net_th, H, progress=progress)
        timings["closure"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        say(f"crosscheck: simulation of {B} stimuli x {n_trials} trials x {t_max:g} ms "
            f"(dt {dt:g} ms, burn-in {burn_in:g} ms, {dtype.name})")
        with _quiet_divergence():
            res = simulate(net, jnp.asarray(H, dtype), t_max, dt, n_trials, seed, burn_in=burn_in,
                           dtype=dtype, n_groups=n_groups, progress=sim_progress)
        se = res.standard_error()
        sim = Moments(np.asarray(res.moments.mean, float), np.asarray(res.moments.cov, float))
        sim_se = Moments(np.asarray(se.mean, float), np.asarray(se.cov, float))
        g_cov = np.asarray(res.group_moments.cov, float)
        g_n = np.asarray(res.group_n_samples, float)
        std_se = _group_se(_std, sim.cov, g_cov, g_n)
        corr_se = _group_se(_corr, sim.cov, g_cov, g_n) * (~np.eye(N, dtype=bool))
        n_div = np.asarray(res.n_diverged).reshape(B)
        timings["simulation"] = time.perf_counter() - t0

        err, err_se, z, z_rms, z_max = compare_moments(theory, sim, sim_se, std_se, corr_se)

        tr = None
        tr_idx = [] if transient is False or transient is None else (
            list(range(B)) if transient is True else [int(b) for b in transient])
        if tr_idx:
            t0 = time.perf_counter()
            tdt = float(transient_dt) if transient_dt is not None else min(dt, 0.05)
            slow = max(float(np.max(np.asarray(net.tau))), float(net.tau_noise))
            T_tr = float(transient_t_max) if transient_t_max is not None else 6.0 * slow
            stride = max(1, int(round(T_tr / tdt / max(int(transient_points), 1))))
            T_tr = max(1, int(round(T_tr / (tdt * stride)))) * stride * tdt
            n_tr = int(transient_trials) if transient_trials is not None else max(256, n_trials)
            say(f"crosscheck: transient from rest, {len(tr_idx)} stimuli x {n_tr} trials x {T_tr:g} ms "
                f"(dt {tdt:g} ms)")
            tr = _transient(net_th, net, jnp.asarray(H[tr_idx], dtype), t_max=T_tr, dt=tdt, n_trials=n_tr,
                            stimuli=tr_idx,
                            seed=seed + 1, stride=stride, dtype=dtype, progress=sim_progress)
            timings["transient"] = time.perf_counter() - t0

    all_div = (n_div >= n_trials) | ~np.all(np.isfinite(sim.mean), -1)
    status = tuple(_status(bool(stable[b]), bool(all_div[b])) for b in range(B))
    report = CrosscheckReport(
        h=H,
        squeeze=squeeze,
        theory=theory,
        sim=sim,
        sim_se=sim_se,
        std_se=std_se,
        corr_se=corr_se,
        err=err,
        err_se=err_se,
        z=z,
        z_rms=z_rms,
        z_max=z_max,
        status=status,
        closure_stable=stable,
        max_real_eig=eig,
        closure_message=msgs,
        n_diverged=n_div,
        n_trials=n_trials,
        n_samples=np.asarray(res.n_samples).reshape(B),
        settings=dict(t_max=t_max, dt=dt, burn_in=float(burn_in), seed=int(seed), dtype=dtype.name,
                      n_groups=int(g_n.shape[-1]), closure_dtype=jnp.dtype(fdt).name),
        timings=timings,
        labels=_neuron_labels(net),
        transient=tr,
    )
    for b in range(B):
        say(f"crosscheck: stimulus {b + 1}/{B} [{status[b]}] "
            + ", ".join(f"{m} {_fmt(err[m][b])} (se {_fmt(err_se[m][b])})" for m in ("mean", "std", "cov"))
            + f", z_rms mean/cov {_fmt(z_rms['mean'][b])}/{_fmt(z_rms['cov'][b])}")
    if figure is not None:
        report = write_figures(report, figure, neurons=neurons)
    return report


def write_figures(report: CrosscheckReport, path, neurons=None, stimuli=None,
                  transient_stimuli=None) -> CrosscheckReport:
    """Write the scatter figure to ``path`` (and, if the report has a transient, the time
    courses to "<stem>_transient<suffix>"); returns the report with ``figures`` filled in.

    ``stimuli``: stimuli in the scatter (default all); ``transient_stimuli``: rows of the
    transient figure (default: up to 3); ``neurons``: neurons of the transient figure.
    """
    from . import plotting

    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    ext = ext or ".png"
    figs = dict(report.figures)
    figs["scatter"] = plotting.save(plotting.crosscheck_figure(report, stimuli=stimuli), root + ext)
    if report.transient is not None:
        figs["transient"] = plotting.save(
            plotting.transient_figure(report, neurons=neurons, stimuli=transient_stimuli),
            root + "_transient" + ext)
    return dataclasses.replace(report, figures=figs)
