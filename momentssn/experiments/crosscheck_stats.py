"""Error measures, noise floors and z-scores of closure vs simulated moments (numpy).

Per stimulus b (``th`` = closure, ``sim`` = simulation; Euclidean / Frobenius norms):

=========  ==========================================================================
``mean``   ||mu_th - mu_sim|| / ||mu_sim||                              (relative)
``std``    ||sd_th - sd_sim|| / ||sd_sim||                              (relative)
``var``    ||diag S_th - diag S_sim|| / ||diag S_sim||                  (relative)
``cov``    ||S_th - S_sim||_F / ||S_sim||_F                             (relative)
``corr``   ||R_th - R_sim||_F over the off-diagonal entries             (absolute)
=========  ==========================================================================

(plus ``mean_abs`` = rms_i |mu_th,i - mu_sim,i| in mV, useful where mu ~ 0).  The
noise floor ``err_se`` of a measure is the same norm applied to the per-entry standard
errors; z = (theory - sim) / SE per entry.  Pure functions, no JAX.
"""

from __future__ import annotations

import math

import numpy as np

from ..moments import Moments

__all__ = ["relative_error", "compare_moments", "z_summary", "group_se", "std_of", "corr_of", "safe_div", "norm"]


def relative_error(theory, sim, axis=None) -> np.ndarray:
    """||theory - sim|| / ||sim|| over ``axis`` (default all); NaN where ||sim|| = 0."""
    d = np.sqrt(np.nansum((np.asarray(theory) - np.asarray(sim)) ** 2, axis=axis))
    n = np.sqrt(np.nansum(np.asarray(sim) ** 2, axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, d / np.where(n > 0, n, 1.0), np.nan)


def norm(x, axes) -> np.ndarray:
    return np.sqrt(np.sum(np.asarray(x) ** 2, axis=axes))


def safe_div(a, b) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((b > 0) & np.isfinite(b), a / np.where(b > 0, b, 1.0), np.nan)


def std_of(cov) -> np.ndarray:
    """(.., N, N) -> (.., N) standard deviations."""
    return np.sqrt(np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0))


def corr_of(cov) -> np.ndarray:
    """(.., N, N) covariance -> correlation matrix (zero-variance rows give 0; NaN stays NaN)."""
    s = std_of(cov)
    d = s[..., :, None] * s[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, cov / np.where(d > 0, d, 1.0), np.where(np.isnan(d), np.nan, 0.0))


def group_se(fn, pooled_cov, group_cov, group_n) -> np.ndarray:
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
    sdt, sds = std_of(ct), std_of(cs)
    vt, vs = np.diagonal(ct, axis1=-2, axis2=-1), np.diagonal(cs, axis1=-2, axis2=-1)
    sev = np.diagonal(sec, axis1=-2, axis2=-1)
    rt, rs = corr_of(ct), corr_of(cs)
    off = ~np.eye(N, dtype=bool)

    def nrm(x):  # norm over all non-batch axes
        return norm(x, tuple(range(1, np.ndim(x))))

    offn = lambda x: np.sqrt(np.sum(np.where(off, x, 0.0) ** 2, axis=(-2, -1)))  # noqa: E731
    err = {
        "mean": safe_div(nrm(mt - ms_), nrm(ms_)),
        "std": safe_div(nrm(sdt - sds), nrm(sds)),
        "var": safe_div(nrm(vt - vs), nrm(vs)),
        "cov": safe_div(nrm(ct - cs), nrm(cs)),
        "corr": offn(rt - rs) if N > 1 else np.full(mt.shape[0], np.nan),
        "mean_abs": nrm(mt - ms_) / math.sqrt(N),
    }
    err_se = {
        "mean": safe_div(nrm(sem), nrm(ms_)),
        "std": safe_div(nrm(std_se), nrm(sds)),
        "var": safe_div(nrm(sev), nrm(vs)),
        "cov": safe_div(nrm(sec), nrm(cs)),
        "corr": offn(corr_se) if N > 1 else np.full(mt.shape[0], np.nan),
        "mean_abs": nrm(sem) / math.sqrt(N),
    }
    # propagate NaN moments (unstable closure / all trials diverged) into the errors
    bad = ~(np.all(np.isfinite(mt), -1) & np.all(np.isfinite(ms_), -1))
    for d in (err, err_se):
        for k in d:
            d[k] = np.where(bad, np.nan, d[k])
    z = {
        "mean": safe_div(mt - ms_, sem),
        "std": safe_div(sdt - sds, std_se),
        "cov": safe_div(ct - cs, sec),
        "corr": np.where(off, safe_div(rt - rs, corr_se), 0.0),
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
        rms, mx = z_summary(v)
        z_rms[k] = np.where(bad, np.nan, rms)
        z_max[k] = np.where(bad, np.nan, mx)
    return err, err_se, z, z_rms, z_max


def z_summary(z) -> tuple:
    """(rms, max |z|) over the finite entries of each row: z (B, ...) -> two (B,) arrays
    (NaN for a row without a finite entry)."""
    v = np.asarray(z, float).reshape(np.shape(z)[0], -1)
    fin = np.isfinite(v)
    cnt = fin.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.where(cnt > 0, np.sqrt(np.sum(np.where(fin, v, 0.0) ** 2, -1) / np.maximum(cnt, 1)), np.nan)
        mx = np.where(cnt > 0, np.max(np.where(fin, np.abs(v), -np.inf), -1, initial=-np.inf), np.nan)
    return rms, mx
