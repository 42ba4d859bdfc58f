"""The `gsm` experiment: learned Gabor projective fields and a maximum-likelihood GSM of
natural image patches, the natural-image task built from them, figures as in the growth
paper's Fig. S1, a results JSON and the arrays.

    run_gsm(out)                      # the embedded scikit-image photographs, 16 x 16, M = 50
    run_gsm(out, path="cifar-10-batches-py")   # CIFAR-10 python batches, or a folder of images

Files written to ``out``:
    results.json   held-out mean FVU (learned, published kind, PCA; ratios), the ML GSM
                   (sigma_x, alpha, beta, grid error), held-out log-likelihood per patch of
                   the GSM and of the fixed-z Gaussian with the same A and C, timings, settings
    arrays.npz     filters (learned, published kind, PCA), Gabor parameters, held-out FVUs,
                   the GSM's prior covariance, the log-likelihoods per held-out patch
    task.npz       the natural-image task (``momentssn.tasks.load_task`` reads it): targets
                   the GSM posterior of y, in the GSM's own units
    ssn_task.npz   the same task with y rescaled (``momentssn.tasks.latents_rescaled``) to
                   a median zero-contrast target variance of 2 mV^2: what ``train`` and
                   ``compare`` train an SSN on
    filters.png, fvu_hist.png, reconstructions.png
"""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import jax
import numpy as np

from .._util import atomic_savez, atomic_write_json
from ..gsm.filters import GaborParams, fvu, learn_gabors, pca_filters
from ..gsm.ml import fit_fixed_z_gaussian, fit_ml_gsm, fit_subset, gaussian_log_likelihood
from ..gsm.patches import PatchSet, default_patches, patches_from_path
from ..progress import Progress, ProgressFn, report
from ..tasks import NATURAL_CONTRASTS, gabor_filters, latent_scale, latents_rescaled, natural_image_task
from .plotting import new_figure, save

__all__ = ["run_gsm", "FVU_PERCENTILES"]

#: Percentiles of the held-out FVU whose patches are shown reconstructed (and form the task).
FVU_PERCENTILES = (10, 30, 50, 70, 90)


def _patches(path, size, n_per_image, held_out, seed) -> PatchSet:
    if path is None:
        return default_patches(size, n_per_image if n_per_image is not None else 2000, held_out, seed)
    return patches_from_path(path, size, n_per_image, held_out, seed)


def _percentile_rows(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Indices of the entries closest to the given percentiles of ``values``."""
    targets = np.percentile(values, percentiles)
    return np.array([int(np.argmin(np.abs(values - t))) for t in targets])


def _filters_figure(banks: dict, size: int):
    """One row of filter images per bank (name -> (P, M)), at most 50 columns each."""
    M = min(50, min(A.shape[1] for A in banks.values()))
    cols = min(M, 10)
    rows_per = -(-M // cols)
    fig, axes = new_figure(rows_per * len(banks), cols, size=(0.9, 0.9))
    for b, (name, A) in enumerate(banks.items()):
        for j in range(rows_per * cols):
            ax = axes[b * rows_per + j // cols, j % cols]
            ax.set_axis_off()
            if j < M:
                f = A[:, j].reshape(size, size)
                lim = np.abs(f).max()
                ax.imshow(f, cmap="gray", vmin=-lim, vmax=lim)
            if j == 0:
                ax.set_title(name, fontsize=7, loc="left")
    return fig


def _fvu_figure(fvus: dict):
    fig, axes = new_figure(1, 1, size=(5.0, 3.4))
    ax = axes[0, 0]
    bins = np.linspace(0.0, 1.0, 41)
    for name, v in fvus.items():
        ax.hist(np.clip(v, 0, 1), bins=bins, histtype="step", label=f"{name}: mean {np.mean(v):.3f}")
    ax.set_xlabel("held-out FVU")
    ax.set_ylabel("patches")
    ax.legend(fontsize=7)
    return fig


def _reconstruction_figure(A: np.ndarray, X: np.ndarray, values: np.ndarray, rows: np.ndarray,
                           percentiles: Sequence[float], size: int):
    coef = np.linalg.lstsq(A, X[rows].T, rcond=None)[0]
    recon = (A @ coef).T
    fig, axes = new_figure(2, len(rows), size=(1.3, 1.4))
    for j, i in enumerate(rows):
        lim = np.abs(X[i]).max()
        for r, img in enumerate((X[i], recon[j])):
            ax = axes[r, j]
            ax.imshow(img.reshape(size, size), cmap="gray", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"{percentiles[j]}th pct\nFVU {values[i]:.2f}", fontsize=7)
    axes[0, 0].set_ylabel("original", fontsize=7)
    axes[1, 0].set_ylabel("learned", fontsize=7)
    return fig


def _fit_filters(ps: PatchSet, n_filters, seed, filter_iters, max_time, progress):
    learned = learn_gabors(ps.train, n_filters, ps.size, seed=seed, max_iter=filter_iters,
                           max_time=max_time, progress=progress)
    s = ps.size / 16.0  # the published kind: 2.5 px envelope, 5 px wavelength on 16 x 16
    banks = {
        "learned": learned.filters,
        "published kind": gabor_filters(n_filters, ps.size, sigma=2.5 * s, wavelength=5.0 * s),
        "PCA": pca_filters(ps.train, n_filters),
    }
    return learned, banks


def _log_likelihoods(fit, gauss, A, X_eval):
    ll_gsm = np.asarray(fit.gsm.log_evidence(X_eval))
    ll_gauss = np.asarray(gaussian_log_likelihood(A, fit.gsm.prior_cov, gauss.z0, gauss.sigma_x, X_eval))
    d = ll_gsm - ll_gauss
    return ll_gsm, ll_gauss, {
        "gsm_mean": float(np.mean(ll_gsm)),
        "gaussian_fixed_z_mean": float(np.mean(ll_gauss)),
        "difference_mean": float(np.mean(d)),
        "difference_se": float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else None,
        "fraction_of_patches_gsm_better": float(np.mean(d > 0)),
        "n_patches": int(d.size),
        "units": "nats per patch",
    }


def run_gsm(
    out,
    *,
    path: Optional[str] = None,
    size: int = 16,
    n_filters: int = 50,
    n_per_image: Optional[int] = None,
    held_out: float = 0.25,
    seed: int = 0,
    filter_iters: int = 500,
    ml_iters: int = 300,
    n_fit: int = 2000,
    n_eval: int = 1000,
    max_time: Optional[float] = None,
    contrasts: Sequence[float] = NATURAL_CONTRASTS,
    progress: Optional[ProgressFn] = None,
) -> dict:
    """Learn filters and the ML GSM on natural patches, write figures, results and arrays to ``out``.

    Args:
        out: output folder (created).  path: None for the embedded scikit-image photographs,
            else CIFAR-10 python batches or a folder of images (``momentssn.gsm.patches``).
        size: patch side (px).  n_filters: M.  n_per_image: patches per source image
            (default 2000; 1 for CIFAR-10).  held_out: fraction of source images held out.
        seed: patches, split, filter initialization and the fitting subset.
        filter_iters, ml_iters: L-BFGS iteration caps.  max_time: seconds for each of the two
            fits (None: no limit).  n_fit: patches the ML fit uses.  n_eval: held-out patches
            the log-likelihoods are evaluated on.
        contrasts: of the natural-image task (patches at the FVU percentiles x contrasts).
    Returns:
        the results dict written to ``results.json``.
    """
    if not jax.config.jax_enable_x64:
        raise ValueError("run_gsm needs 64-bit mode: jax.config.update('jax_enable_x64', True)")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    ps = _patches(path, size, n_per_image, held_out, seed)
    report(progress, Progress("gsm", 1, 4, None, time.perf_counter() - t0,
                              f"{ps.train.shape[0]} training, {ps.test.shape[0]} held-out patches"))
    learned, banks = _fit_filters(ps, n_filters, seed, filter_iters, max_time, progress)
    fvus = {name: fvu(A, ps.test) for name, A in banks.items()}
    report(progress, Progress("gsm", 2, 4, float(np.mean(fvus["learned"])), time.perf_counter() - t0,
                              "filters learned (loss: held-out mean FVU)"))
    fit = fit_ml_gsm(learned.filters, ps.train, n_fit=n_fit, max_iter=ml_iters, max_time=max_time,
                     seed=seed, progress=progress)
    gauss = fit_fixed_z_gaussian(learned.filters, fit.gsm.prior_cov, fit_subset(ps.train, n_fit, seed))
    eval_rows = np.random.default_rng(seed + 1).choice(ps.test.shape[0], min(n_eval, ps.test.shape[0]), replace=False)
    ll_gsm, ll_gauss, ll = _log_likelihoods(fit, gauss, learned.filters, ps.test[eval_rows])
    report(progress, Progress("gsm", 3, 4, ll["difference_mean"], time.perf_counter() - t0,
                              "ML GSM fitted (loss: held-out log-likelihood gain over the Gaussian)"))
    rows = _percentile_rows(fvus["learned"], FVU_PERCENTILES)
    task = natural_image_task(fit.gsm, ps.test[rows], contrasts, name="natural")
    task.save(os.path.join(out, "task.npz"))
    ssn_task = latents_rescaled(task)  # the same targets in units an SSN can reach (mV)
    ssn_task.save(os.path.join(out, "ssn_task.npz"))
    results = _results(ps, learned, fvus, fit, gauss, ll, rows, contrasts, path, seed, t0)
    results["task"]["ssn_file"] = "ssn_task.npz"
    results["task"]["ssn_latent_scale"] = latent_scale(task)
    _write(out, ps, banks, learned.params, fvus, fit, ll_gsm, ll_gauss, eval_rows, rows, results)
    report(progress, Progress("gsm", 4, 4, None, time.perf_counter() - t0, f"written to {out}"))
    return results


def _results(ps, learned, fvus, fit, gauss, ll, rows, contrasts, path, seed, t0) -> dict:
    means = {name: float(np.mean(v)) for name, v in fvus.items()}
    return {
        "data": {
            "source": path or "embedded scikit-image photographs",
            "size": ps.size,
            "n_train": int(ps.train.shape[0]),
            "n_held_out": int(ps.test.shape[0]),
            "train_sources": list(ps.train_sources),
            "held_out_sources": list(ps.test_sources),
            "scale": ps.scale,
            "seed": seed,
        },
        "fvu_held_out_mean": means,
        "fvu_ratio_learned_to_pca": means["learned"] / means["PCA"],
        "fvu_ratio_learned_to_published_kind": means["learned"] / means["published kind"],
        "filters": {
            "n_filters": int(learned.filters.shape[1]),
            "train_fvu": learned.train_fvu,
            "iterations": learned.iterations,
            "wall_s": learned.wall_s,
            "message": learned.message,
        },
        "ml_gsm": {
            "sigma_x": float(fit.gsm.sigma_x),
            "alpha": float(fit.gsm.alpha),
            "beta": float(fit.gsm.beta),
            "train_loglik_per_patch": fit.train_loglik,
            "grid_error": fit.grid_error,
            "iterations": fit.iterations,
            "wall_s": fit.wall_s,
            "message": fit.message,
            "history": fit.history,
        },
        "gaussian_fixed_z": {"z0": gauss.z0, "sigma_x": gauss.sigma_x, "train_loglik_per_patch": gauss.train_loglik},
        "held_out_loglik": ll,
        "task": {
            "file": "task.npz",
            "patch_fvu_percentiles": list(FVU_PERCENTILES),
            "held_out_rows": rows.tolist(),
            "contrasts": [float(c) for c in contrasts],
        },
        "wall_s": time.perf_counter() - t0,
    }


def _write(out, ps, banks, params: GaborParams, fvus, fit, ll_gsm, ll_gauss, eval_rows, rows, results):
    arrays = {f"filters_{k.replace(' ', '_')}": v for k, v in banks.items()}
    arrays.update({f"gabor_{k}": np.asarray(v) for k, v in params._asdict().items()})
    arrays.update({f"fvu_{k.replace(' ', '_')}": v for k, v in fvus.items()})
    arrays.update(prior_cov=np.asarray(fit.gsm.prior_cov), loglik_gsm=ll_gsm, loglik_gaussian=ll_gauss,
                  loglik_rows=eval_rows)
    atomic_savez(os.path.join(out, "arrays.npz"), arrays)
    atomic_write_json(os.path.join(out, "results.json"), results)
    save(_filters_figure(banks, ps.size), os.path.join(out, "filters.png"))
    save(_fvu_figure(fvus), os.path.join(out, "fvu_hist.png"))
    fig = _reconstruction_figure(banks["learned"], ps.test, fvus["learned"], rows, FVU_PERCENTILES, ps.size)
    save(fig, os.path.join(out, "reconstructions.png"))
