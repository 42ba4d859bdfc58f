"""Learned Gabor projective fields: least-squares reconstruction of patches, FVU, PCA.

A filter bank A (P, M), P = size^2 pixels (row-major), column j a unit-norm Gabor::

    x' =  (c - x0_j) cos(theta_j) + (r - y0_j) sin(theta_j)         (c, r: column, row, centred at
    y' = -(c - x0_j) sin(theta_j) + (r - y0_j) cos(theta_j)          (size - 1) / 2, as tasks.gabor_filters)
    g_j = exp(-x'^2 / (2 sigma_j^2) - y'^2 / (2 (aspect_j sigma_j)^2)) cos(2 pi x' / wavelength_j + phase_j)
    A[:, j] = g_j / |g_j|

so every filter has 7 learnable numbers: orientation theta, position (x0, y0), envelope scale
sigma (along the wave), aspect (across / along), wavelength (1 / frequency) and phase.
theta = 0 .. pi, x0 = y0 = 0, sigma = 2.5, aspect = 1, wavelength = 5, phase = 0 on 16 x 16 is
``tasks.gabor_filters`` (the published kind: orientations only).

Fraction of variance unexplained of the least-squares reconstruction of a zero-mean patch x::

    a* = argmin_a |x - A a|^2,   FVU(x) = |x - A a*|^2 / |x|^2 = 1 - x^T A (A^T A)^-1 A^T x / |x|^2

The mean over patches depends on the data only through S = mean_i x_i x_i^T / |x_i|^2 (P, P)::

    mean FVU = 1 - tr((A^T A)^-1 A^T S A)

so learning costs O(P^2 M) per evaluation whatever the number of patches, and the best
M-dimensional linear basis (PCA of S, its top M eigenvectors) reaches 1 - (sum of the top M
eigenvalues of S): the floor any A of M filters can reach.

Learning (``learn_gabors``): L-BFGS (``momentssn.training.lbfgs.minimize_lbfgs``) on the
unconstrained parameters, from the initialization of the growth paper's Table S1
(orientation U(-pi, pi), position uniform over the patch; we add sigma log-uniform in
[size/8, size/4], wavelength = sigma * U(2, 3.5), phase U(-pi, pi), aspect 1).  Bounds
(through a sigmoid): position within the patch, sigma in [0.5, size/2] px, aspect in
[0.25, 4], wavelength in [2, 2 size] px (2 px: the Nyquist limit).  A ridge eps tr(A^T A)/M
(eps = 1e-8) keeps the training loss finite if two filters coincide; reported FVUs
(``fvu``) use an exact least-squares projection (SVD of A).
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..progress import Progress, ProgressFn, report
from ..training.lbfgs import minimize_lbfgs

__all__ = [
    "GaborParams",
    "gabor_bank",
    "fvu",
    "mean_fvu_loss",
    "normalized_second_moment",
    "pca_filters",
    "init_gabor_params",
    "learn_gabors",
    "LearnedFilters",
]

_RIDGE = 1e-8


class GaborParams(NamedTuple):
    """Physical parameters of M Gabors, each (M,): theta (rad), x0, y0 (px from the patch
    centre; x0 along columns, y0 along rows), sigma (px), aspect (ratio), wavelength (px),
    phase (rad)."""

    theta: jax.Array
    x0: jax.Array
    y0: jax.Array
    sigma: jax.Array
    aspect: jax.Array
    wavelength: jax.Array
    phase: jax.Array


def gabor_bank(p: GaborParams, size: int) -> jax.Array:
    """(size^2, M) unit-norm Gabor filters (module docstring), row-major pixels."""
    c = 0.5 * (size - 1)
    r, col = jnp.meshgrid(jnp.arange(size) - c, jnp.arange(size) - c, indexing="ij")
    dx = col.reshape(-1, 1) - p.x0[None]  # (P, M)
    dy = r.reshape(-1, 1) - p.y0[None]
    ct, st = jnp.cos(p.theta), jnp.sin(p.theta)
    xr = dx * ct + dy * st
    yr = -dx * st + dy * ct
    env = jnp.exp(-(xr**2) / (2.0 * p.sigma**2) - yr**2 / (2.0 * (p.aspect * p.sigma) ** 2))
    g = env * jnp.cos(2.0 * jnp.pi * xr / p.wavelength + p.phase)
    return g / jnp.linalg.norm(g, axis=0, keepdims=True)


def fvu(filters, patches) -> np.ndarray:
    """(n,) FVU of each zero-mean patch (n, P) under least squares on the (P, M) filters.

    Exact projection onto range(A) by the SVD (rank cutoff 1e-10 of the largest singular value).
    """
    A = np.asarray(filters, dtype=np.float64)
    X = np.asarray(patches, dtype=np.float64)
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    Q = U[:, s > 1e-10 * s.max()]
    n2 = np.sum(X**2, axis=1)
    return np.sum((X - (X @ Q) @ Q.T) ** 2, axis=1) / n2


def normalized_second_moment(patches) -> np.ndarray:
    """S = mean_i x_i x_i^T / |x_i|^2 (P, P) of patches (n, P): mean FVU = 1 - tr(P_A S)."""
    X = np.asarray(patches, dtype=np.float64)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    return Xn.T @ Xn / X.shape[0]


def mean_fvu_loss(filters: jax.Array, S: jax.Array) -> jax.Array:
    """mean FVU = 1 - tr((A^T A + eps I)^-1 A^T S A), eps = 1e-8 tr(A^T A) / M (differentiable)."""
    G = filters.T @ filters
    M = G.shape[0]
    G = G + _RIDGE * jnp.trace(G) / M * jnp.eye(M, dtype=G.dtype)
    B = filters.T @ S @ filters
    return 1.0 - jnp.trace(jnp.linalg.solve(G, B))


def pca_filters(patches, n_components: int) -> np.ndarray:
    """(P, M) the top M eigenvectors of S (``normalized_second_moment``): the M-dimensional
    linear basis of least mean FVU on these patches."""
    S = normalized_second_moment(patches)
    if not 1 <= n_components <= S.shape[0]:
        raise ValueError(f"n_components must be in 1..{S.shape[0]}, got {n_components}")
    _, V = np.linalg.eigh(S)
    return V[:, ::-1][:, :n_components].copy()


# --------------------------------------------------------------------------- learning

# (lo, hi, log-scale) of each bounded parameter, as a function of the patch size
def _bounds(size: int):
    h = 0.5 * (size - 1)
    return {
        "x0": (-h, h, False),
        "y0": (-h, h, False),
        "sigma": (0.5, 0.5 * size, True),
        "aspect": (0.25, 4.0, True),
        "wavelength": (2.0, 2.0 * size, True),
    }


def _to_physical(u: jax.Array, M: int, size: int) -> GaborParams:
    """Unconstrained (7 M,) -> GaborParams (bounded through a sigmoid, theta and phase free)."""
    parts = dict(zip(GaborParams._fields, u.reshape(7, M)))
    for name, (lo, hi, log) in _bounds(size).items():
        s = jax.nn.sigmoid(parts[name])
        parts[name] = jnp.exp(jnp.log(lo) + (jnp.log(hi) - jnp.log(lo)) * s) if log else lo + (hi - lo) * s
    return GaborParams(**parts)


def _to_unconstrained(p: GaborParams, size: int) -> np.ndarray:
    parts = {k: np.asarray(v, dtype=np.float64) for k, v in p._asdict().items()}
    for name, (lo, hi, log) in _bounds(size).items():
        v = parts[name]
        frac = (np.log(v) - np.log(lo)) / (np.log(hi) - np.log(lo)) if log else (v - lo) / (hi - lo)
        frac = np.clip(frac, 1e-6, 1 - 1e-6)
        parts[name] = np.log(frac) - np.log1p(-frac)
    return np.concatenate([parts[k] for k in GaborParams._fields])


def init_gabor_params(n_filters: int, size: int, seed: int = 0) -> GaborParams:
    """Table S1's initialization (module docstring), seeded."""
    rng = np.random.default_rng(seed)
    M, h = int(n_filters), 0.5 * (size - 1)
    sigma = np.exp(rng.uniform(np.log(size / 8.0), np.log(size / 4.0), M))
    sigma = np.clip(sigma, 0.6, 0.45 * size)
    return GaborParams(
        theta=rng.uniform(-np.pi, np.pi, M),
        x0=rng.uniform(-h, h, M),
        y0=rng.uniform(-h, h, M),
        sigma=sigma,
        aspect=np.ones(M),
        wavelength=np.clip(sigma * rng.uniform(2.0, 3.5, M), 2.05, 1.9 * size),
        phase=rng.uniform(-np.pi, np.pi, M),
    )


class LearnedFilters(NamedTuple):
    """filters: (P, M) unit-norm Gabors; params: their GaborParams (numpy); train_fvu: mean
    FVU on the training patches (exact); history: training loss per iteration; iterations;
    wall_s: seconds; message: why L-BFGS stopped."""

    filters: np.ndarray
    params: GaborParams
    train_fvu: float
    history: list
    iterations: int
    wall_s: float
    message: str


def learn_gabors(
    patches,
    n_filters: int,
    size: int,
    *,
    seed: int = 0,
    max_iter: int = 500,
    max_time: Optional[float] = None,
    init: Optional[GaborParams] = None,
    progress: Optional[ProgressFn] = None,
) -> LearnedFilters:
    """M Gabor projective fields minimizing the mean FVU of the training patches (n, P).

    Needs float64 (``jax_enable_x64``) for a well-conditioned least-squares loss.
    """
    X = np.asarray(patches, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != size * size:
        raise ValueError(f"patches must be (n, {size * size}) for size {size}, got {X.shape}")
    if int(n_filters) < 1 or int(n_filters) > X.shape[1]:
        raise ValueError(f"n_filters must be in 1..{X.shape[1]}, got {n_filters}")
    M = int(n_filters)
    S = jnp.asarray(normalized_second_moment(X))
    p0 = init if init is not None else init_gabor_params(M, size, seed)
    u0 = jnp.asarray(_to_unconstrained(p0, size))

    def loss(u):
        return mean_fvu_loss(gabor_bank(_to_physical(u, M, size), size), S)

    t0 = time.perf_counter()

    def callback(it, _x, value):
        report(progress, Progress("gabor filters", it, max_iter, value, time.perf_counter() - t0))

    res = minimize_lbfgs(loss, u0, max_iter=max_iter, max_time=max_time, callback=callback, ftol=1e-10, patience=5)
    p = _to_physical(jnp.asarray(res.x), M, size)
    A = np.asarray(gabor_bank(p, size))
    params = GaborParams(*(np.asarray(v) for v in p))
    return LearnedFilters(
        A, params, float(np.mean(fvu(A, X))), list(res.history), res.iterations, time.perf_counter() - t0, res.message
    )
