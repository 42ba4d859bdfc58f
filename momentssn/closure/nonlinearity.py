"""Gaussian expectations of the power-law transfer function.

Units: membrane potential u in mV, rates in Hz, k in Hz / mV^n.

For a neuron whose potential is Gaussian, u ~ N(mu, sigma^2), the moment closure
(Hennequin & Lengyel 2016) needs, for r(u) = k [u]_+^n,

    nu    = E[r(u)]  = k   M_n(mu, sigma)          (Hz)
    gamma = E[r'(u)] = n k M_{n-1}(mu, sigma)      (Hz / mV)

where M_p(mu, sigma) = E[[u]_+^p] (mV^p) is the *rectified moment* of order p >= 0
(p = 0 gives P(u > 0) = Phi(mu / sigma)).  With a = mu / sigma and z ~ N(0, 1),

    M_p(mu, sigma) = sigma^p I_p(a),   I_p(a) = E[[a + z]_+^p]
                   = phi(a) int_0^inf x^p exp(a x - x^2 / 2) dx
                   = Gamma(p + 1) phi(a) exp(a^2 / 4) D_{-(p+1)}(-a)

(D_nu is the parabolic cylinder function).  For integer p there are closed forms,
I_0 = Phi(a), I_1 = a Phi(a) + phi(a), I_p = a I_{p-1} + (p - 1) I_{p-2}, but the
exponent n is a trainable, *traced* leaf of the SSN pytree (e.g. n = 2.034), so this
module has one code path for every real p >= 0, with no Python branching on p.

Method (see ``_log_moment_quadrature``): write the expectation as an integral over
v = log(y), y = [u]_+ > 0,

    M_p = int exp(L(v)) dv,   L(v) = (p + 1) v - (e^v - mu)^2 / (2 sigma^2) - log(sigma sqrt(2 pi)),

which is smooth, decays double-exponentially for v -> +inf and like exp((p + 1) v)
for v -> -inf.  L peaks at y* = e^{v*}, the positive root of y^2 - mu y - (p+1) sigma^2
(computed without cancellation for either sign of mu), with curvature
-L''(v*) = 1 / s^2 = (y*/sigma)^2 + p + 1.  We substitute

    v = v* + s g(t),   g(t) = t + lambda (1 - e^{-t}),   lambda in [0.01, 0.3]

(g(t) ~ t on the right, where the Gaussian factor already decays fast; g(t) ~ -e^{-t}
on the left, which turns the slow algebraic tail y^(p+1) near y = 0 into a
double-exponential one; lambda is chosen per element, just large enough to reach
e^-40 below the peak at the leftmost node) and apply the trapezoid rule with a fixed
step h = 0.2 on t in [-6.4, 8.4] (75 nodes):

    M_p ~= h sum_i exp(L(v* + s g(t_i))) s g'(t_i).

The transformed integrand is analytic in a strip around the real axis, so the rule
converges geometrically.  Measured against mpmath (tests/test_nonlinearity.py): max
relative error ~3e-14 for p in [0, 8] and |mu / sigma| up to 1e4 (in log space down
to |mu / sigma| = 200, where M_p ~ e^-20000), i.e. at the rounding level of the inputs
(the condition number of M_p in mu is ~(mu / sigma)^2).  Everything is evaluated in
log space relative to the peak, directly in mu and sigma (no a^p sigma^p), so nothing
overflows in float32; far in the negative tail the value underflows gracefully to 0.
Inputs are first rescaled by a power of two (exact) so that no unit choice can
under/overflow an intermediate.

Gradients (mu, sigma, p, and k, n in ``rate_expectations``), of any order, come
from autodiff of this one formula: the rule is the trapezoid rule of a transformed
integrand whose integral is M_p for *every* parameter value, so its derivative is
the trapezoid rule of the derivative, which converges just as fast (~1e-13 relative
vs mpmath and vs the identities dM_p/dmu = p M_{p-1}, dM_p/dsigma = sigma p (p-1)
M_{p-2}).  The node sum has a custom JVP (``_node_sum``): its derivative is written
as a few more node sums, so reverse mode stores only per-element values, never
(..., 75) residuals, and d/dsigma stays accurate when sigma << |mu| (relative error
~1e-15 |mu| / sigma in that small derivative, instead of ~1e-16 (mu / sigma)^2).

sigma = 0 (and |mu| / sigma > 10 / sqrt(eps), where the noise correction
p (p - 1) sigma^2 / (2 mu^2) is below rounding) uses the deterministic limit
[mu]_+^p through a double ``where``, so values and gradients stay finite (there,
d/dsigma = 0 and, at mu = 0 exactly, d/dmu = 0).

Cost: one call is ~75 exp + 75 expm1 per element; ``rate_expectations`` evaluates
both exponents in one vectorised call.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .._util import is_concrete
from ..model import check_finite

__all__ = ["rectified_moment", "log_rectified_moment", "rate_expectations"]

# ---- the quadrature rule (fixed, dtype-independent; cast on use) -------------------
_H = 0.2  # trapezoid step in t
_T = _H * np.arange(-32, 43, dtype=np.float64)  # 75 nodes, t in [-6.4, 8.4]
_C1 = -np.expm1(-_T)  # g(t) = t + lambda (1 - e^{-t})
_EXP_MT = np.exp(-_T)  # g'(t) = 1 + lambda e^{-t}
_LAMBDA_MIN, _LAMBDA_MAX = 0.01, 0.3
_TAIL = 40.0  # the leftmost node must sit this far (in log) below the peak
# Python floats (weakly typed: they never promote float32 inputs to float64)
_T0 = float(_T[0])
_EXPM1_MT0 = float(np.expm1(-_T[0]))  # e^{-t0} - 1
_LOG_H = float(np.log(_H))
_LOG_2 = float(np.log(2.0))
_HALF_LOG_2PI = float(0.5 * np.log(2.0 * np.pi))


def _promote(*xs):
    """Convert to arrays of one common floating dtype (the inputs' own, not x64)."""
    dtype = jnp.result_type(*xs)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return tuple(jnp.asarray(x, dtype) for x in xs)


def _check(args: dict, *, minimum: dict) -> None:
    """ValueError unless the named arrays broadcast together, are finite and respect
    ``minimum`` (name -> (bound, strict)); values are checked only when concrete."""
    try:
        np.broadcast_shapes(*(jnp.shape(x) for x in args.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {jnp.shape(x)}" for k, x in args.items())
        raise ValueError(f"{', '.join(args)} must broadcast together, got shapes {shapes}") from None
    for name, x in args.items():
        check_finite(name, x)
        if name in minimum and is_concrete(x):
            bound, strict = minimum[name]
            v = np.asarray(x)
            if np.any(v <= bound) if strict else np.any(v < bound):
                op = ">" if strict else ">="
                raise ValueError(f"{name} must be {op} {bound}, got min {float(np.min(v))}")


def _det_threshold(dtype) -> float:
    """|mu| / sigma above which M_p equals its sigma = 0 limit to rounding."""
    return float(10.0 / np.sqrt(np.finfo(dtype).eps))  # 6.7e8 in float64, 2.9e4 in float32


# Taylor coefficients of d/dz [(e^z - 1) / z] = sum_{k>=1} k z^(k-1) / (k+1)!, to z^10
_DE1_TAYLOR = tuple(k / math.factorial(k + 1) for k in range(1, 12))


def _dexpm1_over_x(z, em1):
    """d/dz [(e^z - 1) / z] = (z e^z - e^z + 1) / z^2 given em1 = e^z - 1; 1/2 at z = 0.

    Taylor series for |z| < 0.2 (truncation < 1e-16 relative; the closed form
    cancels there), else ((z - 1) em1 + z) / z^2.
    """
    small = jnp.abs(z) < 0.2
    zs = jnp.where(small, z, 0.0)
    series = jnp.zeros_like(z)
    for coef in reversed(_DE1_TAYLOR):  # Horner
        series = series * zs + coef
    zq = jnp.where(small, 1.0, z)
    return jnp.where(small, series, ((zq - 1.0) * em1 + zq) / (zq * zq))


def _nodes(c, s, rho, delta, lam):
    """Per-node pieces of the rule: the scaled integrand w and z, g, e^z - 1, x - x*.

    Shapes (...,) -> (..., K).  With g(t) = t + lambda (1 - e^{-t}), z = s g(t) and
    x - x* = x* (e^z - 1) (x* = rho / s), the integrand relative to its peak is
        L(v* + z) - L(v*) = c z - [(delta + dx)^2 - delta^2] / 2,
    and w = exp(that) g'(t), with g'(t) = 1 + lambda e^{-t} (the trapezoid weight / h).
    """
    dtype = s.dtype
    lam = lam[..., None]
    g = jnp.asarray(_T, dtype) + lam * jnp.asarray(_C1, dtype)
    z = s[..., None] * g
    em1 = jnp.expm1(z)
    dx = (rho / s)[..., None] * em1
    ell = c[..., None] * z - 0.5 * dx * (2.0 * delta[..., None] + dx)
    w = jnp.exp(ell) * (1.0 + lam * jnp.asarray(_EXP_MT, dtype))
    return w, z, g, em1, dx


@jax.custom_jvp
def _node_sum(c, s, rho, delta, lam):
    """sum_i w_i = M_p / (h s * peak value): the trapezoid sum, >= 1 (the t = 0 node).

    Args, all (...,): c = p + 1; s = 1 / sqrt(x*^2 + c); rho = x* s; delta = x* - a;
    lam = lambda (a rule parameter, not differentiated).  Returns (...,).
    """
    return jnp.sum(_nodes(c, s, rho, delta, lam)[0], axis=-1)


@_node_sum.defjvp
def _node_sum_jvp(primals, tangents):
    # The derivative is a few more node sums, written out so that (a) reverse mode
    # keeps only their (...,) values, no (..., K) residuals; (b) it stays accurate
    # for sigma << |mu|, where x* ~ mu / sigma and s ~ sigma / mu: d(x - x*)/ds is
    # taken as rho g^2 E1'(z) with E1(z) = (e^z - 1) / z instead of differentiating
    # x* (e^z - 1) factor by factor, which would cancel two O(mu / sigma) terms
    # (losing ~(mu / sigma)^2 digits in d/dsigma).  dL/d(c, s, rho, delta) per node:
    #   z,   c g - (x - a) rho g^2 E1'(z),   -(x - a) (e^z - 1) / s,   -(x - x*).
    c, s, rho, delta, lam = primals
    dc, ds, drho, ddelta, _ = tangents  # lambda selects the rule: no derivative
    w, z, g, em1, dx = _nodes(c, s, rho, delta, lam)
    r = delta[..., None] + dx  # (x - a)
    dl_dc = z
    dl_ds = c[..., None] * g - r * (rho[..., None] * g * g) * _dexpm1_over_x(z, em1)
    dl_drho = -r * em1 / s[..., None]
    dl_ddelta = -dx
    total = jnp.sum(w, axis=-1)
    d_c, d_s, d_rho, d_delta = (
        jnp.sum(w * d, axis=-1) for d in (dl_dc, dl_ds, dl_drho, dl_ddelta)
    )
    return total, d_c * dc + d_s * ds + d_rho * drho + d_delta * ddelta


def _log_moment_quadrature(mu, sigma, p):
    """log M_p(mu, sigma) by the transformed trapezoid rule.

    Args: mu (...,) mV; sigma (...,) mV, > 0 with |mu| / sigma <= ``_det_threshold``;
    p (...,) >= 0.  All of one float dtype and one shape.  Returns (...,) log(mV^p).

    Written so that autodiff stays accurate (to every order) when sigma << |mu| and at
    mu = 0: every quantity below is a smooth product/quotient of well-conditioned
    factors (no difference of two large terms that cancel in the derivative), e.g.
    x* - a and x* s get closed forms.
    """
    dtype = mu.dtype

    # Homogeneity: M_p(mu, sigma) = S^p M_p(mu / S, sigma / S) for any constant S > 0.
    # Rescale by a power of two (exact) so that max(|mu|, sigma) is in [1/2, 1): no
    # intermediate (sigma^2, quotient derivatives, ...) under- or overflows, whatever
    # the units.  S is a constant for autodiff, which is exact by the same identity.
    _, e = jnp.frexp(jax.lax.stop_gradient(jnp.maximum(jnp.abs(mu), sigma)))
    e = jnp.maximum(e, 3 - jnp.finfo(dtype).maxexp)  # 1 / S stays finite (subnormal input)
    inv_scale = jnp.ldexp(jnp.ones((), dtype), -e)
    mu = mu * inv_scale
    sigma = sigma * inv_scale
    log_scale = e.astype(dtype) * _LOG_2

    # Peak y* of L: y*^2 - mu y* - (p + 1) sigma^2 = 0, without cancellation on either
    # side (den = |mu| + sqrt(mu^2 + 4 c sigma^2), c = p + 1):
    #   mu >= 0:  y* = den / 2,             y* - mu = 2 c sigma^2 / den
    #   mu <  0:  y* = 2 c sigma^2 / den,   y* - mu = y* + |mu|
    # In units of sigma: x* = y* / sigma and delta = (y* - mu) / sigma (both > 0).
    # (|mu| is written per branch, +mu or -mu, and sqrt(mu^2 + ...) rather than
    # jnp.hypot, so that derivatives of every order at mu = 0 come from one smooth
    # formula: autodiff of abs, hence of jnp.hypot, gives d|mu|/dmu = 0 there.)
    c = p + 1.0
    pos = mu >= 0
    abs_mu = jnp.where(pos, mu, -mu)
    den = abs_mu + jnp.sqrt(mu * mu + 4.0 * c * sigma * sigma)  # (no overflow after rescaling)
    r = sigma / den  # <= 1 / (2 sqrt(c))
    xs = jnp.where(pos, 0.5 * den / sigma, 2.0 * c * r)
    delta = jnp.where(pos, 2.0 * c * r, 2.0 * c * r + abs_mu / sigma)
    ys = jnp.where(pos, 0.5 * den, 2.0 * c * r * sigma)  # y* (in units of S)
    # Width in v = log y:  s = 1 / sqrt(-L''(v*)) = 1 / sqrt(x*^2 + c);  rho = x* s.
    s = jax.lax.rsqrt(xs * xs + c)
    u = c / (xs * xs)
    rho = jax.lax.rsqrt(1.0 + u)
    log_rho = -0.5 * jnp.log1p(u)

    # Left compression lambda: just enough that the leftmost node t0 lies _TAIL below
    # the peak.  L rises monotonically up to v*, and with x = x* e^{s g},
    #   L(v* + s g) - L(v*) = c s g - (a - x)^2 / 2 + delta^2 / 2,
    # so each of these g is far enough left (T = _TAIL; take the largest g):
    #   tail:   c s g <= -(T + delta^2 / 2)                                    (any a)
    #   bulk:   x <= a - sqrt(2 T + delta^2)                                   (a large)
    #   mixed:  x <= a / 10  and  c s g <= -(T + delta^2 / 2 - 0.81 a^2 / 2)   (a > 0)
    # Small lambda keeps the rule closest to the plain trapezoid rule, best for the
    # Gaussian bulk.  lambda only selects the rule (all give the same integral), so
    # no gradient flows through it.
    a = mu / sigma
    cs = c * s
    half_d2 = 0.5 * delta * delta
    g_tail = -(_TAIL + half_d2) / cs
    room = a - jnp.sqrt(2.0 * _TAIL + delta * delta)
    g_bulk = jnp.where(room > 0, jnp.log(jnp.where(room > 0, room, 1.0) / xs) / s, -jnp.inf)
    g_mixed = jnp.where(
        a > 0,
        jnp.minimum(jnp.log(jnp.where(a > 0, 0.1 * a, 1.0) / xs) / s,
                    -(_TAIL + half_d2 - 0.405 * a * a) / cs),
        -jnp.inf,
    )
    g_req = jnp.maximum(g_tail, jnp.maximum(g_bulk, g_mixed))
    lam = jax.lax.stop_gradient(jnp.clip((_T0 - g_req) / _EXPM1_MT0, _LAMBDA_MIN, _LAMBDA_MAX))

    # Trapezoid sum of the integrand relative to its peak (see _nodes, _node_sum).
    log_sum = _LOG_H + jnp.log(_node_sum(c, s, rho, delta, lam))

    # Peak value times the Jacobian s:  p log(sigma) + c log(x*) + log(s) - log(2 pi)/2
    # - delta^2 / 2, regrouped as p log(y*) + log(rho) so that no large logarithms cancel.
    # (after rescaling y* >= ~c / threshold^2 > 0: the logarithm is safe).
    log_peak = p * (jnp.log(ys) + log_scale) + log_rho - _HALF_LOG_2PI - 0.5 * delta * delta
    return log_peak + log_sum


def log_rectified_moment(mu, sigma, p):
    """log E[[u]_+^p] for u ~ N(mu, sigma^2); accurate where the moment underflows.

    Args:
        mu: (...) mean of u (mV).
        sigma: (...) standard deviation of u (mV), >= 0 (only |sigma| is used).
        p: (...) exponent, real >= 0 (may be traced).
        The three broadcast together; they are computed in their common float dtype.

    Returns:
        (...) log M_p(mu, sigma) in log(mV^p); ``-inf`` where M_p = 0 (sigma = 0, mu < 0).
        At sigma = 0 it is the deterministic limit p log [mu]_+ (log 1/2 for p = 0,
        mu = 0, the limit of log Phi(mu / sigma)); gradients stay finite there.
    """
    mu, sigma, p = _promote(mu, sigma, p)
    mu, sigma, p = jnp.broadcast_arrays(mu, sigma, p)
    sig = jnp.abs(sigma)
    # Deterministic limit: sigma = 0, or |mu| / sigma so large that M_p = [mu]_+^p to
    # rounding.  Double where: the quadrature only ever sees safe inputs.
    det = (sig == 0) | (jnp.abs(mu) > _det_threshold(mu.dtype) * sig)
    log_quad = _log_moment_quadrature(
        jnp.where(det, 0.0, mu), jnp.where(det, 1.0, sig), p
    )
    mpos = mu > 0
    log_det = jnp.where(
        mpos,
        p * jnp.log(jnp.where(mpos, mu, 1.0)),
        jnp.where((mu == 0) & (p == 0), math.log(0.5), -math.inf).astype(mu.dtype),
    )
    return jnp.where(det, log_det, log_quad)


def rectified_moment(mu, sigma, p):
    """Rectified Gaussian moment M_p = E[[u]_+^p] for u ~ N(mu, sigma^2).

        M_p(mu, sigma) = int_0^inf y^p N(y; mu, sigma^2) dy = sigma^p I_p(mu / sigma)
        M_0 = Phi(mu / sigma),   M_1 = mu Phi(mu / sigma) + sigma phi(mu / sigma)
        dM_p / dmu = p M_{p-1},   dM_p / dsigma = sigma p (p - 1) M_{p-2}   (p >= 2)

    Exact to ~1e-13 relative in float64 for every real p >= 0 (one code path; p may
    be a traced, differentiable value), any mu / sigma, and sigma -> 0, where it tends
    to [mu]_+^p (sigma = 0 included, with finite gradients).  Far in the negative tail
    the value underflows to 0; use ``log_rectified_moment`` there if needed.

    Args:
        mu: (...) mean of u (mV).
        sigma: (...) standard deviation of u (mV), >= 0 (only |sigma| is used).
        p: (...) exponent, real >= 0.
        The three broadcast together; computed in their common float dtype.

    Returns:
        (...) M_p in mV^p.

    Raises:
        ValueError: shapes that do not broadcast, NaN/inf, or p < 0 (values are
            checked only outside ``jit``).
    """
    _check(dict(mu=mu, sigma=sigma, p=p), minimum=dict(p=(0.0, False)))
    return jnp.exp(log_rectified_moment(mu, sigma, p))


def rate_expectations(mu, sigma, k, n):
    """Mean rate and mean gain of r(u) = k [u]_+^n for u ~ N(mu, sigma^2).

        nu    = E[r(u)]  = k   E[[u]_+^n]          (Hz)
        gamma = E[r'(u)] = n k E[[u]_+^(n-1)]      (Hz / mV)

    gamma is also d nu / d mu, and by Stein's lemma Cov(r(u), u) = gamma sigma^2.

    Args:
        mu: (...) mean membrane potential (mV), e.g. (N,) or (B, N).
        sigma: (...) its standard deviation (mV), >= 0; sqrt of the covariance diagonal.
        k: scalar or (...) gain (Hz / mV^n), > 0.
        n: scalar or (...) exponent, real >= 1; may be traced (trainable).
        All broadcast together.

    Returns:
        (nu, gamma), each of the broadcast shape, in Hz and Hz / mV.

    Raises:
        ValueError: shapes that do not broadcast, NaN/inf, sigma < 0, k <= 0 or
            n < 1 (values are checked only outside ``jit``).
    """
    _check(dict(mu=mu, sigma=sigma, k=k, n=n),
           minimum=dict(sigma=(0.0, False), k=(0.0, True), n=(1.0, False)))
    mu, sigma, k, n = _promote(mu, sigma, k, n)
    mu, sigma, k, n = jnp.broadcast_arrays(mu, sigma, k, n)
    # both exponents through one quadrature call (half the graph to compile)
    m = rectified_moment(mu[None], sigma[None], jnp.stack([n, n - 1.0]))
    return k * m[0], n * k * m[1]
