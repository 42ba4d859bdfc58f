"""Maximum-likelihood GSM with the projective fields A fixed, and its Gaussian baseline.

Model (``momentssn.gsm.model``): x = z A y + sigma_x xi, y ~ N(0, C), z ~ Gamma(alpha, rate beta).
Fitted by maximum likelihood on patches x_i (P,), z integrated out:

    log p(x) = log ∫ N(x; 0, z^2 A C A^T + sigma_x^2 I) Gamma(z; alpha, beta) dz          (1)

Parameters: C = L L^T (L lower triangular, log-diagonal), log sigma_x and log alpha, with
beta = alpha (E[z] = 1).  (z A y with y ~ N(0, C) equals (z / k) A (k y): scaling C by k^2
and z by 1 / k leaves p(x) unchanged, so the mean of z is not identifiable; we fix it at 1.)

The Gaussian factor at one z, for every patch at once (Woodbury and the determinant lemma,
nothing of size P x P; G = A^T A, c = L^T A^T x (M,), s = z^2 / sigma_x^2)::

    log N(x; 0, z^2 A C A^T + sigma_x^2 I) = -P/2 log(2 pi sigma_x^2) - 1/2 log det(I + s L^T G L)
                                             - |x|^2 / (2 sigma_x^2) + s / (2 sigma_x^2) c^T (I + s L^T G L)^-1 c    (2)

Training objective (``grid_log_likelihood``): (1) on t = log z by the trapezoid rule on a
fixed uniform grid t_0 .. t_0 + (K - 1) h shared by all patches (one eigendecomposition of
L^T G L serves every node and patch: O(M^3 + K M n); derivatives by autodiff), plus the part
z < e^{t_0} in closed form: there s -> 0, (2) -> log N(x; 0, sigma_x^2 I), and
∫_{-inf}^{t_0} e^{alpha t - beta e^t} dt ≈ e^{alpha t_0} / alpha (relative error
~beta e^{t_0}).  For the smooth, analytic integrand in t the trapezoid error is
~exp(-2 pi^2 sd_t^2 / h^2) with sd_t the posterior spread of log z; the range must hold
every patch's posterior (a fitted alpha < 1 gives a long left tail, a high-contrast patch
a mode near z = 20 for 8 x 8 patches).  Defaults: log z in [-12, 6], h = 0.03 (601 nodes).  Reported log-likelihoods come from the accurate
adaptive quadrature of ``GSM.log_evidence``; ``GSMFit.grid_error`` states the difference.

Gaussian baseline (``fit_fixed_z_gaussian``): the same A and C with z fixed at z0,
x ~ N(0, z0^2 A C A^T + sigma^2 I), z0 and sigma by maximum likelihood (exact, (2)).
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..progress import Progress, ProgressFn, report
from ..training.lbfgs import minimize_lbfgs
from .filters import fvu
from .model import GSM

__all__ = [
    "gaussian_log_likelihood",
    "grid_log_likelihood",
    "GSMFit",
    "fit_ml_gsm",
    "fit_subset",
    "GaussianFit",
    "fit_fixed_z_gaussian",
    "pack_params",
    "unpack_params",
]

def _log_normal_at_scales(filters, L, sigma2, X, t):
    """(K, n) eq. (2) at z = e^t for t (K,) and patches X (n, P); L: Cholesky factor of C.

    With L^T G L = U diag(lam) U^T (one eigendecomposition) and c' = U^T c::

        log det(I + s L^T G L) = sum_i log(1 + s lam_i),
        c^T (I + s L^T G L)^-1 c = sum_i c'_i^2 / (1 + s lam_i)

    so all K nodes for n patches cost one (n, M) x (M, K) product.  Derivatives go
    through ``eigh`` (exactly repeated lam would give NaN, which L-BFGS treats as +inf
    and backtracks from; learned filters and a fitted C have distinct lam).
    """
    P = filters.shape[0]
    AL = filters @ L
    lam, U = jnp.linalg.eigh(AL.T @ AL)  # L^T G L
    lam = jnp.maximum(lam, 0.0)
    c2 = (X @ AL @ U) ** 2  # (n, M)
    s = jnp.exp(2.0 * t) / sigma2  # (K,)
    r = 1.0 / (1.0 + s[:, None] * lam[None])  # (K, M)
    logdet = jnp.sum(jnp.log1p(s[:, None] * lam[None]), axis=1)  # (K,)
    base = -0.5 * P * jnp.log(2.0 * jnp.pi * sigma2) - 0.5 * jnp.sum(X**2, axis=1) / sigma2  # (n,)
    return base[None] - 0.5 * logdet[:, None] + (0.5 * s / sigma2)[:, None] * (r @ c2.T)


def gaussian_log_likelihood(filters, prior_cov, z0, sigma_x, patches) -> jax.Array:
    """(n,) log N(x; 0, z0^2 A C A^T + sigma_x^2 I) of patches (n, P), exact (eq. 2)."""
    L = jnp.linalg.cholesky(jnp.asarray(prior_cov))
    t = jnp.log(jnp.atleast_1d(jnp.asarray(z0, L.dtype)))
    return _log_normal_at_scales(jnp.asarray(filters), L, jnp.asarray(sigma_x) ** 2, jnp.asarray(patches), t)[0]


def grid_log_likelihood(filters, L, sigma_x, alpha, beta, patches, t) -> jax.Array:
    """(n,) log p(x) of eq. (1) by the trapezoid rule on the uniform grid t (K,) in log z,
    plus the closed-form part below t[0] (module docstring).  L: (M, M) Cholesky factor of C."""
    sigma2 = sigma_x**2
    h = t[1] - t[0]
    log_prior = alpha * jnp.log(beta) - jax.scipy.special.gammaln(alpha) + alpha * t - beta * jnp.exp(t)
    w = jnp.full(t.shape, jnp.log(h)).at[0].add(-math.log(2.0)).at[-1].add(-math.log(2.0))
    terms = _log_normal_at_scales(filters, L, sigma2, patches, t) + (log_prior + w)[:, None]  # (K, n)
    P = filters.shape[0]
    x2 = jnp.sum(patches**2, axis=1)
    tail = (
        -0.5 * P * jnp.log(2.0 * jnp.pi * sigma2) - 0.5 * x2 / sigma2
        + alpha * jnp.log(beta) - jax.scipy.special.gammaln(alpha) + alpha * t[0] - jnp.log(alpha)
    )
    return jax.scipy.special.logsumexp(jnp.concatenate([terms, tail[None]], axis=0), axis=0)


# --------------------------------------------------------------------------- parameters


def pack_params(prior_cov, sigma_x, alpha) -> np.ndarray:
    """(M (M - 1) / 2 + M + 2,) unconstrained: L's strict lower triangle, log diag L,
    log sigma_x, log alpha."""
    L = np.linalg.cholesky(np.asarray(prior_cov, dtype=np.float64))
    M = L.shape[0]
    il = np.tril_indices(M, -1)
    return np.concatenate([L[il], np.log(np.diag(L)), [np.log(sigma_x), np.log(alpha)]])


def unpack_params(theta, M: int):
    """theta -> (L (M, M), sigma_x, alpha); beta = alpha."""
    il = np.tril_indices(M, -1)
    n_off = il[0].size
    L = jnp.zeros((M, M), theta.dtype).at[il].set(theta[:n_off])
    L = L + jnp.diag(jnp.exp(theta[n_off : n_off + M]))
    return L, jnp.exp(theta[n_off + M]), jnp.exp(theta[n_off + M + 1])


class GSMFit(NamedTuple):
    """gsm: the ML GSM (float64 leaves); train_loglik: mean log p(x) per patch on the fitting
    patches (grid quadrature); grid_error: max |grid - GSM.log_evidence| over those patches
    (up to 200); history: negative mean log-likelihood per pixel after each L-BFGS
    iteration; iterations; wall_s; message."""

    gsm: GSM
    train_loglik: float
    grid_error: float
    history: list
    iterations: int
    wall_s: float
    message: str


def _initial_guess(A, X):
    """C0 = mean of the least-squares coefficients' outer products, sigma0^2 = mean residual
    variance per pixel, alpha0 = 2."""
    coef = np.linalg.lstsq(A, X.T, rcond=None)[0].T  # (n, M)
    C0 = coef.T @ coef / X.shape[0]
    M = A.shape[1]
    C0 = C0 + 1e-3 * np.trace(C0) / M * np.eye(M)
    res = np.mean(fvu(A, X) * np.sum(X**2, axis=1)) / A.shape[0]
    return C0, float(np.sqrt(max(res, 1e-6))), 2.0


def fit_subset(patches, n_fit: Optional[int], seed: int = 0) -> np.ndarray:
    """The patches ``fit_ml_gsm`` fits: a seeded subset of ``n_fit`` rows (all if fewer)."""
    X = np.asarray(patches, dtype=np.float64)
    if n_fit is None or X.shape[0] <= n_fit:
        return X
    return X[np.random.default_rng(seed).choice(X.shape[0], int(n_fit), replace=False)]


def fit_ml_gsm(
    filters,
    patches,
    *,
    n_fit: Optional[int] = 2000,
    log_z: tuple = (-12.0, 6.0),
    h: float = 0.03,
    max_iter: int = 300,
    max_time: Optional[float] = None,
    seed: int = 0,
    progress: Optional[ProgressFn] = None,
) -> GSMFit:
    """ML prior covariance C, pixel noise sigma_x and Gamma shape alpha (beta = alpha) for the
    fixed filters (P, M), from patches (n, P) (a seeded subset of ``n_fit`` if given), by
    L-BFGS on the grid objective (module docstring) over log z in ``log_z`` with step h.
    Needs float64."""
    A = np.asarray(filters, dtype=np.float64)
    X = np.asarray(patches, dtype=np.float64)
    if X.ndim != 2 or A.ndim != 2 or X.shape[1] != A.shape[0]:
        raise ValueError(f"patches must be (n, P={A.shape[0]}) for filters (P, M), got {X.shape}")
    if not (h > 0 and log_z[1] - log_z[0] > 2 * h):
        raise ValueError(f"need h > 0 and log_z = (lo, hi) with hi - lo > 2 h, got {log_z}, {h}")
    X = fit_subset(X, n_fit, seed)
    M, P = A.shape[1], A.shape[0]
    C0, s0, a0 = _initial_guess(A, X)
    t = jnp.arange(log_z[0], log_z[1] + 0.5 * h, h)
    Aj, Xj = jnp.asarray(A), jnp.asarray(X)

    def loss(theta):
        L, sx, al = unpack_params(theta, M)
        return -jnp.mean(grid_log_likelihood(Aj, L, sx, al, al, Xj, t)) / P

    t0 = time.perf_counter()

    def callback(it, _x, value):
        report(progress, Progress("ML GSM", it, max_iter, value, time.perf_counter() - t0))

    res = minimize_lbfgs(loss, jnp.asarray(pack_params(C0, s0, a0)), max_iter=max_iter, max_time=max_time,
                         callback=callback, ftol=1e-10, patience=5)
    L, sx, al = unpack_params(jnp.asarray(res.x), M)
    gsm = GSM(A, L @ L.T, float(sx), float(al), float(al))
    sub = X[:200]
    grid = np.asarray(grid_log_likelihood(Aj, L, sx, al, al, jnp.asarray(sub), t))
    exact = np.asarray(gsm.log_evidence(sub))
    return GSMFit(
        gsm, -float(res.value) * P, float(np.max(np.abs(grid - exact))), list(res.history),
        res.iterations, time.perf_counter() - t0, res.message,
    )


class GaussianFit(NamedTuple):
    """z0, sigma_x: ML scale and pixel noise of x ~ N(0, z0^2 A C A^T + sigma_x^2 I);
    train_loglik: mean log-likelihood per patch on the fitting patches."""

    z0: float
    sigma_x: float
    train_loglik: float


def fit_fixed_z_gaussian(filters, prior_cov, patches, *, max_iter: int = 100) -> GaussianFit:
    """The Gaussian with the GSM's A and C and z fixed: z0 and sigma_x by maximum likelihood."""
    A, C = jnp.asarray(filters), jnp.asarray(prior_cov)
    X = jnp.asarray(patches)
    P = A.shape[0]

    def loss(u):
        return -jnp.mean(gaussian_log_likelihood(A, C, jnp.exp(u[0]), jnp.exp(u[1]), X)) / P

    sigma0 = float(np.sqrt(np.mean(np.asarray(X) ** 2)) * 0.5)
    res = minimize_lbfgs(loss, jnp.asarray([0.0, np.log(sigma0)]), max_iter=max_iter, ftol=1e-12, patience=5)
    return GaussianFit(float(np.exp(res.x[0])), float(np.exp(res.x[1])), -float(res.value) * P)
