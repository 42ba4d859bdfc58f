"""The Gaussian scale mixture (GSM) image model and its exact posterior moments.

Generative model (Echeveste et al. 2020; Wainwright & Simoncelli 2000)::

    y ~ N(0, C)                       latents, (M,)
    z ~ Gamma(alpha, beta)            contrast; alpha the shape, beta the RATE (mean alpha / beta)
    x = z A y + sigma_x xi,  xi ~ N(0, I_P)          image, (P,);  A = filters, (P, M)

Posterior, for one image x::

    p(z | x)      ∝ N(x; 0, z^2 A C A^T + sigma_x^2 I) Gamma(z; alpha, beta)
    y | z, x      ~ N(mu_z, Sigma_z)
    Sigma_z       = (C^-1 + z^2/sigma_x^2 A^T A)^-1
    mu_z          = (z / sigma_x^2) Sigma_z A^T x
    E[y | x]      = E_z[mu_z]
    Cov[y | x]    = E_z[Sigma_z] + Cov_z[mu_z]          (law of total covariance)

Latent-space diagonalisation.  With C = L L^T and L^T A^T A L = U diag(lam) U^T
(a generalized eigenproblem of the pair (A^T A, C^-1), computed as the SVD of A L),
the (M, M) basis W = L U
satisfies W^T C^-1 W = I and W^T A^T A W = diag(lam).  Then for every z, with
s = z^2 / sigma_x^2 and b = W^T A^T x (M,)::

    Sigma_z = W diag(1 / (1 + s lam)) W^T
    mu_z    = W v_z,          v_z = (z / sigma_x^2) b / (1 + s lam)
    log det(z^2 A C A^T + sigma_x^2 I) = P log sigma_x^2 + sum_i log(1 + s lam_i)     (determinant lemma)
    x^T (z^2 A C A^T + sigma_x^2 I)^-1 x = (|x|^2 - s sum_i b_i^2 / (1 + s lam_i)) / sigma_x^2  (Woodbury)

so one eigendecomposition serves every z and nothing of size P x P is ever formed;
the part of x orthogonal to range(A) only enters through the z-independent |x|^2.

Quadrature over z.  We integrate over t = log z, where the log-density (with the
Jacobian dz = z dt, additive constants dropped) is::

    f(t) = alpha t - beta e^t - 1/2 sum_i log(1 + s lam_i) + s/(2 sigma_x^2) sum_i b_i^2 / (1 + s lam_i),  s = e^{2t}/sigma_x^2.

f is analytic in the strip |Im t| < pi/2.  Every local maximum of f lies in
[t_L, t_R], where beta e^{t_L} + e^{2 t_L} sum(lam)/sigma_x^2 = alpha and
beta e^{t_R} = alpha + |P_A x|^2 / (4 sigma_x^2) (bounds on f').  The algorithm:

1. scan f on a uniform grid of ``n_scan`` points over [t_L, t_R]; refine the best
   grid cell by golden-section search -> mode t*, maximum f*;
2. find the outermost points where f = f* - ``drop`` (bisection; outside [t_L - 1, t_R + 1]
   f is monotone with |f'| >= 0.63 alpha, which gives guaranteed brackets), so the
   neglected mass is below about exp(-drop) relative (drop = 50: ~2e-22);
3. composite Gauss-Legendre: panels with geometrically growing widths
   sigma_t * (1, 1, 2, 4, ...) on both sides of t*, where sigma_t = (-f''(t*))^{-1/2},
   the outermost panel on each side reaching the end of the interval;
   ``n_panels`` panels per side, ``n_gauss`` nodes per panel (defaults 8 x 24:
   384 nodes).

Large contrasts: near the mode, components with s lam_i > 1 use the form
s b^2 / (1 + s lam) = b^2 / lam - b^2 / (lam (1 + s lam)) with the constant dropped,
so f carries no O(|x|^2 / sigma_x^2) cancellation and the weights stay accurate.

Accuracy (float64, defaults; tests/gsm/test_gsm_model.py asserts < 1e-10 relative, max-norm):

* published-task GSM (M = 50), x = z A y* for z = 0 .. 1000 and noisy draws of the
  model: 1e-15 .. 1e-11 against an independent dense trapezoid rule in log z using
  direct (M, M) algebra (the 1e-11 at z = 1000 is the reference's own rounding);
  <= 3e-14 against scipy.integrate.quad_vec (epsrel 1e-13) for z <= 10 and noisy draws;
* random P = 20, M = 5 problems with the likelihood in pixel space (P x P Cholesky at
  every z) and scipy quad_vec, sigma_x 0.1 .. 3, alpha 0.5 .. 7: ~1e-15 (moments),
  log evidence to ~1e-13 absolute;
* default vs a much finer quadrature (n_scan 2000, 14 x 80 nodes, drop 100) up to
  z = 1e6: <= 3e-13.

In float32 the same code runs (a warning is issued) but rounding of f, which is
O(|x|^2 / sigma_x^2), limits it: ~1e-6 relative on the task's contrasts (z <= 1),
1e-4 at z = 30, 4e-3 at z = 1000, meaningless beyond.  **Enable float64**
(``jax.config.update("jax_enable_x64", True)``) before building a GSM.

Assumption: secondary maxima of p(log z | x) narrower than the scan-grid spacing are
not searched for (f is a sum of a concave part and sigmoids in t; for images drawn
from the model it is unimodal in practice).

Transformations: everything is jit-able and vmap-able (a batch is vmapped).
Derivatives (forward and reverse mode) with respect to x and every leaf of the GSM
come from a custom JVP (``_posterior``): the node placement is held fixed (exact up to
the neglected tail mass), and the tangents are those of the same posterior written
with dense (M, M) algebra in the fixed latent basis (posterior precision
W^T C^-1 W + s W^T A^T A W at every node, Cholesky-factored), so no derivative goes
through the SVD: they stay accurate where the generalized eigenvalues lam are
degenerate, as in the ring-symmetric default task (tests/gsm/test_gsm_model.py checks them
against finite differences on exactly degenerate and on random problems).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from .._util import is_concrete
from ..moments import Moments, symmetrize

__all__ = ["GSM", "ZPosterior", "LatentBasis", "latent_basis", "gamma_rate"]

_LEAVES = ("filters", "prior_cov", "sigma_x", "alpha", "beta")
_STATIC = ("n_scan", "n_panels", "n_gauss", "drop")
_GOLDEN = 0.5 * (math.sqrt(5.0) - 1.0)


class LatentBasis(NamedTuple):
    """The basis that diagonalises C^-1 and A^T A simultaneously.

    W: (M, M) with W^T C^-1 W = I and W^T A^T A W = diag(lam).
    lam: (M,) generalized eigenvalues of (A^T A, C^-1), >= 0 (descending).
    """

    W: jax.Array
    lam: jax.Array


def latent_basis(filters: jax.Array, prior_cov: jax.Array) -> LatentBasis:
    """C = L L^T (Cholesky) and the SVD A L = Q diag(sv) U^T, so W = L U and lam = sv^2.

    This is the eigendecomposition L^T A^T A L = U diag(lam) U^T of the module
    docstring, computed from A L without squaring its condition number: the 50
    published Gabors span only ~30 dimensions numerically, and eigh of L^T A^T A L would
    give their tiny eigenvalues with absolute errors ~1e-13 (even negative ones), while
    the SVD keeps lam_i consistent with b_i = (A W_i)^T x, i.e. b_i^2 <= lam_i |x|^2.

    Args:
        filters: (P, M) A (P >= M or not).  prior_cov: (M, M) C, positive definite.
    """
    L = jnp.linalg.cholesky(prior_cov)
    _, sv, Ut = jnp.linalg.svd(filters @ L, full_matrices=True)
    M = prior_cov.shape[0]
    lam = jnp.zeros(M, sv.dtype).at[: sv.shape[0]].set(sv**2)  # P < M: the rest is null space
    return LatentBasis(L @ Ut.T, lam)


class ZPosterior(NamedTuple):
    """The posterior over the contrast z on the quadrature nodes (for one image or a batch).

    z: (..., K) quadrature nodes (ascending, positive).
    density: (..., K) normalised density p(z | x) at the nodes (per unit z).
    weights: (..., K) quadrature weights, sum 1: E[g(z) | x] ≈ sum_k weights_k g(z_k).
    log_evidence: (...) log p(x) (natural log, with every constant).
    mode: (...) the mode of p(log z | x), i.e. the maximiser of z p(z | x).
    """

    z: jax.Array
    density: jax.Array
    weights: jax.Array
    log_evidence: jax.Array
    mode: jax.Array

    @property
    def mean(self) -> jax.Array:
        """(...) E[z | x]."""
        return jnp.sum(self.weights * self.z, axis=-1)

    @property
    def std(self) -> jax.Array:
        """(...) standard deviation of z given x."""
        m = self.mean
        return jnp.sqrt(jnp.sum(self.weights * (self.z - m[..., None]) ** 2, axis=-1))


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class GSM:
    """An immutable Gaussian scale mixture x = z A y + sigma_x xi (a JAX pytree).

    Args:
        filters: (P, M) A, the projective fields (P pixels, M latents).
        prior_cov: (M, M) C, the prior covariance of y; symmetric positive definite.
        sigma_x: scalar pixel-noise standard deviation (> 0).
        alpha: scalar shape of the Gamma prior on z (> 0).
        beta: scalar RATE of the Gamma prior on z (> 0); E[z] = alpha / beta.
        n_scan, n_panels, n_gauss, drop: quadrature settings (static, see the module
            docstring); the defaults give relative errors ~1e-14 in float64.

    Leaves are converted to JAX's default float dtype; float64 is required for the
    stated accuracy (a warning is issued otherwise).  Values are validated when concrete.
    """

    filters: jax.Array
    prior_cov: jax.Array
    sigma_x: jax.Array
    alpha: jax.Array
    beta: jax.Array
    n_scan: int = 256
    n_panels: int = 8
    n_gauss: int = 24
    drop: float = 50.0

    def __post_init__(self):
        for name in _LEAVES:
            val = getattr(self, name)
            if not hasattr(val, "dtype") or not jnp.issubdtype(val.dtype, jnp.floating):
                val = jnp.asarray(val, dtype=jnp.result_type(float))
            else:
                val = jnp.asarray(val)
            object.__setattr__(self, name, val)
        _validate(self)

    def tree_flatten(self):
        return tuple(getattr(self, n) for n in _LEAVES), tuple(getattr(self, n) for n in _STATIC)

    @classmethod
    def tree_unflatten(cls, aux, leaves):
        obj = object.__new__(cls)
        for name, val in zip(_LEAVES, leaves):
            object.__setattr__(obj, name, val)
        for name, val in zip(_STATIC, aux):
            object.__setattr__(obj, name, val)
        return obj

    # ---- sizes
    @property
    def n_pixels(self) -> int:
        """P."""
        return self.filters.shape[0]

    @property
    def n_latents(self) -> int:
        """M."""
        return self.filters.shape[1]

    def replace(self, **changes) -> "GSM":
        """A copy with some fields replaced (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    # ---- inference
    def posterior_moments(self, x) -> Moments:
        """Posterior mean (..., M) and covariance (..., M, M) of y given x (P,) or (B, P)."""
        return _batched(self, x)[0]

    def posterior_z(self, x) -> ZPosterior:
        """The posterior over z on the quadrature nodes, for x (P,) or (B, P)."""
        return _batched(self, x)[1]

    def posterior(self, x) -> Tuple[Moments, ZPosterior]:
        """Both ``posterior_moments(x)`` and ``posterior_z(x)`` from one quadrature."""
        return _batched(self, x)

    def log_evidence(self, x) -> jax.Array:
        """log p(x) for x (P,) or (B, P)."""
        return self.posterior_z(x).log_evidence

    # ---- generation
    def sample(self, seed, n: int) -> Tuple[jax.Array, jax.Array, jax.Array]:
        """n draws of the generative model.

        Args:
            seed: int or a JAX PRNG key.  n: number of samples.
        Returns:
            x (n, P), y (n, M), z (n,).
        """
        key = jax.random.PRNGKey(seed) if isinstance(seed, (int, np.integer)) else seed
        return _sample(self, key, int(n))


_ROUNDS = 16  # Marsaglia-Tsang proposals per Gamma draw


@functools.partial(jax.jit, static_argnums=2)
def _sample(g: GSM, key, n: int):
    # one normal and one uniform draw serve everything (each random call costs compile time)
    kn, ku = jax.random.split(key)
    dt = g.filters.dtype
    M, P = g.n_latents, g.n_pixels
    xi = jax.random.normal(kn, (n, _ROUNDS + M + P), dtype=dt)
    u = jax.random.uniform(ku, (n, _ROUNDS + 1), dtype=dt, minval=jnp.finfo(dt).tiny)
    z = _gamma_from_draws(xi[:, :_ROUNDS], u[:, :_ROUNDS], u[:, _ROUNDS], g.alpha, g.beta)
    y = xi[:, _ROUNDS : _ROUNDS + M] @ jnp.linalg.cholesky(g.prior_cov).T
    x = z[:, None] * (y @ g.filters.T) + g.sigma_x * xi[:, _ROUNDS + M :]
    return x, y, z


def _gamma_from_draws(xn, u, ub, alpha, beta):
    """Gamma(alpha, rate beta) from standard normals xn (n, R), uniforms u (n, R), ub (n,).

    Marsaglia & Tsang (2000): with a = alpha (alpha + 1 if alpha < 1), d = a - 1/3,
    c = 1 / sqrt(9 d), propose v = (1 + c X)^3 and accept if v > 0 and
    log U < X^2 / 2 + d - d v + d log v; the draw is d v (times ub^{1/alpha} if alpha < 1),
    divided by beta.  The first accepted of the R proposals is kept (acceptance >= 0.95
    per proposal: all 16 fail with probability < 1e-20, then d is returned).
    """
    a = jnp.where(alpha < 1.0, alpha + 1.0, alpha)
    d = a - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    v = (1.0 + c * xn) ** 3
    vpos = jnp.where(v > 0, v, 1.0)
    ok = (v > 0) & (jnp.log(u) < 0.5 * xn**2 + d - d * vpos + d * jnp.log(vpos))
    first = jnp.argmax(ok, axis=-1)
    draw = d * jnp.take_along_axis(vpos, first[:, None], axis=-1)[:, 0]
    draw = jnp.where(jnp.any(ok, axis=-1), draw, d)
    return jnp.where(alpha < 1.0, draw * ub ** (1.0 / alpha), draw) / beta


def gamma_rate(key, alpha, beta, n: int, dtype=None) -> jax.Array:
    """(n,) draws of Gamma(shape alpha, RATE beta) by Marsaglia & Tsang (2000), see
    ``_gamma_from_draws``; much cheaper to compile than ``jax.random.gamma``."""
    dt = dtype or jnp.result_type(float)
    kn, ku = jax.random.split(key)
    xn = jax.random.normal(kn, (n, _ROUNDS), dtype=dt)
    u = jax.random.uniform(ku, (n, _ROUNDS + 1), dtype=dt, minval=jnp.finfo(dt).tiny)
    return _gamma_from_draws(xn, u[:, :_ROUNDS], u[:, _ROUNDS], alpha, beta)


def _validate(g: GSM) -> None:
    A, C = g.filters, g.prior_cov
    if A.ndim != 2:
        raise ValueError(f"filters must be a (P, M) matrix, got shape {A.shape}")
    M = A.shape[1]
    if C.shape != (M, M):
        raise ValueError(f"prior_cov must have shape ({M}, {M}) to match filters, got {C.shape}")
    for name in ("sigma_x", "alpha", "beta"):
        if getattr(g, name).shape != ():
            raise ValueError(f"{name} must be a scalar, got shape {getattr(g, name).shape}")
    for name in _LEAVES:
        val = getattr(g, name)
        if is_concrete(val) and not bool(np.all(np.isfinite(np.asarray(val)))):
            raise ValueError(f"{name} contains NaN or inf")
    for name in ("sigma_x", "alpha", "beta"):
        val = getattr(g, name)
        if is_concrete(val) and float(val) <= 0:
            raise ValueError(f"{name} must be > 0, got {float(val)}")
    if int(g.n_scan) < 3 or int(g.n_panels) < 2 or int(g.n_gauss) < 2 or float(g.drop) <= 0:
        raise ValueError("need n_scan >= 3, n_panels >= 2, n_gauss >= 2 and drop > 0")
    if is_concrete(C):
        Cn = np.asarray(C, dtype=np.float64)
        scale = max(1.0, float(np.max(np.abs(Cn))))
        asym = float(np.max(np.abs(Cn - Cn.T)))
        if asym > 1e3 * np.finfo(np.asarray(C).dtype).eps * scale:
            raise ValueError(f"prior_cov must be symmetric (max |C - C^T| = {asym:.3g})")
        lmin = float(np.linalg.eigvalsh(0.5 * (Cn + Cn.T)).min())
        if lmin <= 0:
            raise ValueError(f"prior_cov must be positive definite (smallest eigenvalue {lmin:.3g})")
        if np.asarray(C).dtype != np.float64:
            warnings.warn(
                "GSM in float32: the posterior quadrature needs float64 for its stated accuracy; "
                'call jax.config.update("jax_enable_x64", True) first',
                stacklevel=3,
            )


# --------------------------------------------------------------------------- quadrature


def _log_density_logz(t, b2, lam, sigma2, alpha, beta, sat=None):
    """f(t) = log p(z = e^t | x) + t, up to a t-independent constant (see module docstring).

    t: (...) log z.  b2: (M,) squared coordinates b_i^2 of A^T x in the basis W.
    lam: (M,).  sigma2: sigma_x^2.  Returns (...).

    sat: optional (M,) bool; for those components (lam_i > 0, s lam_i >~ 1 near the
    mode) the quadratic term is written without its saturation value::

        s b^2 / (1 + s lam) = b^2 / lam - b^2 / (lam (1 + s lam)),

    dropping the constant b^2 / lam.  This avoids the cancellation of O(|x|^2 / sigma_x^2)
    terms at high contrast; the dropped constant is ``_saturation_constant``.
    """
    t = jnp.minimum(t, 0.25 * math.log(jnp.finfo(jnp.result_type(t)).max))  # e^{2t} stays finite
    s = jnp.exp(2.0 * t)[..., None] / sigma2  # (..., 1)
    q = s * lam  # (..., M)
    if sat is None:
        quad_i = b2 * s / (1.0 + q)
    else:
        inv_lam = jnp.where(sat, 1.0 / jnp.where(sat, lam, 1.0), 0.0)
        quad_i = jnp.where(sat, -b2 * inv_lam, b2 * s) / (1.0 + q)
    quad = jnp.sum(quad_i, axis=-1) / (2.0 * sigma2)
    return alpha * t - beta * jnp.exp(t) - 0.5 * jnp.sum(jnp.log1p(q), axis=-1) + quad


def _d2_log_density_logz(t, b2, lam, sigma2, beta):
    """f''(t) (the saturation form does not matter: it only shifts f by a constant).

        f'' = -beta e^t - sum_i 2 q_i / (1 + q_i)^2 + (2 / sigma_x^2) sum_i b_i^2 s (1 - q_i) / (1 + q_i)^3
    """
    s = jnp.exp(2.0 * t) / sigma2
    q = s * lam
    r = 1.0 / (1.0 + q)  # products of bounded factors: no overflow at large s
    return (
        -beta * jnp.exp(t)
        - jnp.sum(2.0 * (q * r) * r)
        + 2.0 / sigma2 * jnp.sum((b2 * s * r) * ((1.0 - q) * r) * r)
    )


def _saturation_constant(b2, lam, sigma2, sat):
    """sum over saturated components of b_i^2 / (2 sigma_x^2 lam_i), dropped by ``sat``."""
    inv_lam = jnp.where(sat, 1.0 / jnp.where(sat, lam, 1.0), 0.0)
    return jnp.sum(b2 * inv_lam) / (2.0 * sigma2)


def _bisect(fn, a, b, n_iter=100):
    """Elementwise root of fn between a and b (arrays), assuming fn(a) < 0 <= fn(b)."""
    fa = fn(a)

    def body(_, ab):
        a, b, fa = ab
        m = 0.5 * (a + b)
        fm = fn(m)
        same = jnp.sign(fm) == jnp.sign(fa)
        return jnp.where(same, m, a), jnp.where(same, b, m), jnp.where(same, fm, fa)

    a, b, _ = jax.lax.fori_loop(0, n_iter, body, (a, b, fa))
    return 0.5 * (a + b)


def _golden_max(fn, a, b, n_iter=90):
    """Maximiser of the scalar fn on [a, b] by golden-section search (fn unimodal there)."""

    def body(_, ab):
        a, b = ab
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        fcd = fn(jnp.stack([c, d]))
        left = fcd[0] >= fcd[1]
        return jnp.where(left, a, c), jnp.where(left, d, b)

    a, b = jax.lax.fori_loop(0, n_iter, body, (a, b))
    return 0.5 * (a + b)


def _gauss_legendre(n: int):
    u, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (u + 1.0), 0.5 * w  # nodes and weights on [0, 1]


def _nodes(g: GSM, b2, lam, proj):
    """Quadrature nodes on t = log z.

    Args: b2 (M,) = b_i^2; lam (M,); proj = |P_A x|^2 (bounds the modes, see docstring).
    Returns t (K,), wt (K,), f (K,), f_star, t_star, sat: the nodes, the Gauss-Legendre
    weights on t (sum_k wt_k exp(f(t_k)) ≈ ∫ exp(f(t)) dt), f at the nodes, an upper
    bound of f (the maximum found), the maximiser of f, and the saturation mask used
    for f.  (Derivatives: see ``_posterior``.)
    """
    live = (b2, lam, g.sigma_x**2, g.alpha, g.beta)
    b2, lam, sigma2, alpha, beta = live

    # 1. bracket of all modes: f'(t) > 0 below t_L and < 0 above t_R.
    c = jnp.sum(lam) / sigma2
    t_L = jnp.log(2.0 * alpha / (beta + jnp.sqrt(beta**2 + 4.0 * alpha * c)))
    t_R = jnp.log((alpha + proj / (4.0 * sigma2)) / beta)
    t_R = jnp.maximum(t_R, t_L + 1e-3)
    grid = jnp.linspace(t_L, t_R, g.n_scan)
    i0 = jnp.argmax(_log_density_logz(grid, b2, lam, sigma2, alpha, beta))
    # components saturated near the mode get the cancellation-free form of f, which
    # differs from the plain form by a constant only; rescan with it.
    sat = (lam * jnp.exp(2.0 * grid[i0]) / sigma2 > 1.0) & (lam > 0)
    f = lambda t: _log_density_logz(t, b2, lam, sigma2, alpha, beta, sat)  # noqa: E731
    fg = f(grid)
    i = jnp.clip(jnp.argmax(fg), 1, g.n_scan - 2)
    cand = jnp.stack([_golden_max(f, grid[i - 1], grid[i + 1]), grid[i]])
    fc = f(cand)
    t_star, f_star = cand[jnp.argmax(fc)], jnp.max(fc)

    # 2. ends of {f >= f* - drop}; outside [t_L - 1, t_R + 1], |f'| >= 0.63 alpha.
    thr = f_star - g.drop
    h = lambda t: f(t) - thr  # noqa: E731
    above = fg >= thr
    any_above = jnp.any(above)
    far_lo = t_L - 1.0 - g.drop / (0.63 * alpha)
    far_hi = t_R + 1.0 + g.drop / (0.63 * alpha)
    j_lo = jnp.argmax(above)  # first grid index above the threshold
    j_hi = g.n_scan - 1 - jnp.argmax(above[::-1])  # last one
    # left crossing: in [grid[j_lo - 1], min(grid[j_lo], t*)], or left of t_L if j_lo = 0;
    # when no grid point is above (a peak narrower than the grid), next to t*.
    lo_b = jnp.where(any_above, jnp.minimum(grid[j_lo], t_star), t_star)
    lo_a = jnp.where(j_lo > 0, grid[jnp.maximum(j_lo - 1, 0)], far_lo)
    lo_a = jnp.where(any_above, lo_a, grid[i - 1])
    hi_a = jnp.where(any_above, jnp.maximum(grid[j_hi], t_star), t_star)
    hi_b = jnp.where(j_hi < g.n_scan - 1, grid[jnp.minimum(j_hi + 1, g.n_scan - 1)], far_hi)
    hi_b = jnp.where(any_above, hi_b, grid[i + 1])
    outer = jnp.stack([lo_a, hi_b])  # h < 0 there, unless the set reaches the far brackets
    ends = jnp.where(h(outer) < 0, _bisect(h, outer, jnp.stack([lo_b, hi_a])), outer)
    lo = jnp.minimum(ends[0], t_star)
    hi = jnp.maximum(ends[1], t_star)

    # 3. composite Gauss-Legendre on panels growing geometrically away from t*.
    d2f = _d2_log_density_logz(t_star, b2, lam, sigma2, beta)
    width = hi - lo
    sig = jnp.where(d2f < 0, 1.0 / jnp.sqrt(jnp.abs(d2f) + jnp.finfo(d2f.dtype).tiny), width)
    sig = jnp.where(jnp.isfinite(sig), sig, width)
    sig = jnp.clip(sig, width * 1e-9, width)
    K = g.n_panels
    mult = jnp.asarray([0.0] + [2.0**k for k in range(K - 1)])  # 0, 1, 2, ..., 2^{K-2}
    left = jnp.maximum(t_star - sig * mult, lo)[::-1]  # ascending, ends at t*
    right = jnp.minimum(t_star + sig * mult, hi)
    edges = jnp.concatenate([jnp.stack([lo]), left, right[1:], jnp.stack([hi])])  # (2K + 1,)
    u, w = _gauss_legendre(g.n_gauss)
    a, bb = edges[:-1, None], edges[1:, None]
    t = (a + (bb - a) * u).reshape(-1)
    wt = ((bb - a) * w).reshape(-1)
    f_live = _log_density_logz(t, *live, sat)
    f_star = jnp.maximum(f_star, jnp.max(f_live))  # never overflow
    return t, wt, f_live, f_star, t_star, sat


def _prepare(g: GSM, x):
    """The basis, b = W^T A^T x (M,), |P_A x|^2 and |x|^2 for one image x (P,).

    In exact arithmetic b_i^2 <= lam_i |x|^2 (and b_i = 0 on the null space of A);
    we enforce it, so that rounding noise in null directions cannot dominate f at large z.
    """
    basis = latent_basis(g.filters, g.prior_cov)
    b = basis.W.T @ (g.filters.T @ x)  # (M,)
    xnorm2 = jnp.sum(x**2)
    cap = jnp.sqrt(jnp.maximum(basis.lam * xnorm2, jnp.finfo(b.dtype).tiny))  # safe to differentiate
    b = jnp.clip(b, -cap, cap)
    pos = basis.lam > 0
    proj = jnp.sum(jnp.where(pos, b**2 / jnp.where(pos, basis.lam, 1.0), 0.0))
    return basis, b, jnp.minimum(proj, xnorm2), xnorm2


def _posterior_basis(g: GSM, x):
    """Posterior moments of y and the posterior over z for one image x (P,), in the
    latent basis (module docstring); also the basis W and the quadrature (nodes t,
    bare weights wt) that ``_posterior_dense`` reuses for derivatives."""
    basis, b, proj, xnorm2 = _prepare(g, x)
    sigma2 = g.sigma_x**2
    b2 = b**2
    t, wt, f, f_star, t_star, sat = _nodes(g, b2, basis.lam, proj)
    # constants dropped from f: Gamma and Gaussian normalisers, |x|^2, saturated terms
    const = _log_evidence_constant(g, xnorm2) + _saturation_constant(b2, basis.lam, sigma2, sat)
    zpost = _z_posterior(t, wt, f, f_star, const, jnp.exp(t_star))
    z, wn = zpost.z, zpost.weights
    r = 1.0 / (1.0 + (z**2 / sigma2)[:, None] * basis.lam)  # (K, M): 1 / (1 + s lam)
    v = (z / sigma2)[:, None] * b * r  # (K, M): v_z = (z / sigma^2) b / (1 + s lam)
    moments = _mixture_moments(basis.W, wn, v, jnp.diag(wn @ r))
    return (moments, zpost), (basis.W, t, wt)


def _z_posterior(t, wt, f, f_ref, const, mode) -> ZPosterior:
    """The z posterior from the log density f (K,) of t = log z at the nodes t (K,)
    with quadrature weights wt (K,); f_ref >= f (no overflow; any value: it cancels),
    const = log p(x) - log ∫ exp(f) dt."""
    w = wt * jnp.exp(f - f_ref)
    total = jnp.sum(w)
    log_norm = f_ref + jnp.log(total)  # log ∫ exp(f) dt
    z = jnp.exp(t)
    density = jnp.exp(f - log_norm) / z  # p(z | x) = p(t | x) / z
    return ZPosterior(z, density, w / total, log_norm + const, mode)


def _mixture_moments(W, wn, v, cond_cov) -> Moments:
    """Moments of y = W u when u | z_k ~ (v_k, Sigma_k) with weights wn (K,): v (K, M),
    cond_cov = sum_k wn_k Sigma_k (M, M).  E[y] = W E[v],  Cov = W (cond_cov + Cov_z[v]) W^T."""
    m = wn @ v
    dv = v - m  # centred before the outer product (no cancellation)
    cov_in = cond_cov + (dv * wn[:, None]).T @ dv
    return Moments(W @ m, symmetrize(W @ cov_in @ W.T))


def _log_evidence_constant(g: GSM, xnorm2):
    """log p(x) - log ∫ exp(f(t)) dt for the plain f: Gamma and Gaussian normalisers, |x|^2."""
    sigma2 = g.sigma_x**2
    return (
        g.alpha * jnp.log(g.beta)
        - jax.scipy.special.gammaln(g.alpha)
        - 0.5 * g.n_pixels * jnp.log(2.0 * jnp.pi * sigma2)
        - 0.5 * xnorm2 / sigma2
    )


def _posterior_dense(g: GSM, x, W, t, wt, mode):
    """The same posterior by dense (M, M) algebra in a *fixed* basis W, on fixed nodes.

    With P_W = W^T C^-1 W, G = W^T A^T A W and b = W^T A^T x (at the point where W
    was computed: I, diag(lam) and the basis coordinates), the posterior precision of
    the coordinates u = W^-1 y at z is H_z = P_W + s G, s = z^2 / sigma_x^2, and

        Sigma_z = W H_z^-1 W^T,   mu_z = (z / sigma_x^2) W H_z^-1 b,
        f(t) = alpha t - beta z - 1/2 (log det H_z - log det P_W) + s/(2 sigma_x^2) b^T H_z^-1 b.

    Nothing here diagonalises anything, so its derivatives stay accurate where the
    generalized eigenvalues lam are (nearly) degenerate; the basis route's would go
    through the SVD's 1 / (lam_i - lam_j).  Used only for tangents (K Cholesky
    factorizations of (M, M)); values come from ``_posterior_basis``.
    """
    sigma2 = g.sigma_x**2
    AW = g.filters @ W
    PW = W.T @ jnp.linalg.solve(g.prior_cov, W)
    PW = 0.5 * (PW + PW.T)
    G = AW.T @ AW
    b = AW.T @ x
    z = jnp.exp(t)
    s = z**2 / sigma2
    H = PW[None] + s[:, None, None] * G[None]  # (K, M, M)
    cH = jnp.linalg.cholesky(H)
    eye = jnp.broadcast_to(jnp.eye(W.shape[0], dtype=H.dtype), H.shape)
    Hinv = jax.scipy.linalg.cho_solve((cH, True), eye)  # (K, M, M)
    y = Hinv @ b  # (K, M): H_z^-1 b
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(cH, axis1=-2, axis2=-1)), axis=-1)
    logdet0 = 2.0 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(PW))))
    f = g.alpha * t - g.beta * z - 0.5 * (logdet - logdet0) + s * (y @ b) / (2.0 * sigma2)
    f_ref = jax.lax.stop_gradient(jnp.max(f))  # a constant (it cancels)
    zpost = _z_posterior(t, wt, f, f_ref, _log_evidence_constant(g, jnp.sum(x**2)), mode)
    wn = zpost.weights
    v = (z / sigma2)[:, None] * y
    return _mixture_moments(W, wn, v, jnp.einsum("k,kij->ij", wn, Hinv)), zpost


@jax.custom_jvp
def _posterior(g: GSM, x) -> Tuple[Moments, ZPosterior]:
    """Posterior moments of y and the posterior over z for one image x (P,).

    Values from the latent basis (``_posterior_basis``).  Derivatives (a custom JVP,
    reverse mode by transposition): those of ``_posterior_dense`` at the same basis
    and nodes, so that the quadrature's placement, which only moves the (tiny)
    neglected tail mass, is held fixed, and no derivative goes through the SVD.
    """
    return _posterior_basis(g, x)[0]


@_posterior.defjvp
def _posterior_jvp(primals, tangents):
    g, x = primals
    out, (W, t, wt) = _posterior_basis(g, x)
    mode = out[1].mode
    _, d_out = jax.jvp(lambda g_, x_: _posterior_dense(g_, x_, W, t, wt, mode), (g, x), tangents)
    return out, d_out


# The posterior is computed for a handful of images (task targets), so compile time
# dominates: at top level we ask XLA for backend optimisation level 0, which compiles
# ~40% faster and runs ~1.5x slower (~6 ms per image for the 50-latent task on one CPU
# core).  JAX accepts compiler options only on a top-level jit, so inside a user's
# jit / grad / vmap the plain jitted version is used.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_single = jax.jit(_posterior)
_batch = jax.jit(jax.vmap(_posterior, in_axes=(None, 0)))
_single_fast = jax.jit(_posterior, compiler_options=_FAST_COMPILE)
_batch_fast = jax.jit(jax.vmap(_posterior, in_axes=(None, 0)), compiler_options=_FAST_COMPILE)


def _batched(g: GSM, x) -> Tuple[Moments, ZPosterior]:
    x = jnp.asarray(x, dtype=g.filters.dtype)
    P = g.n_pixels
    if x.ndim not in (1, 2) or x.shape[-1] != P:
        raise ValueError(f"x must have shape ({P},) or (B, {P}), got {x.shape}")
    plain, fast = (_single, _single_fast) if x.ndim == 1 else (_batch, _batch_fast)
    if not is_concrete((g, x)):
        return plain(g, x)
    try:
        return fast(g, x)
    except ValueError as err:  # called under an outer jit with concrete inputs
        if "compiler_options" not in str(err):
            raise
        return plain(g, x)
