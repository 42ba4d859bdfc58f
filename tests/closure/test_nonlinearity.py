"""Tests of momentssn.closure.nonlinearity: Gaussian expectations of r(u) = k [u]_+^n.

References: mpmath at 40 digits, through the parabolic cylinder function
    E[[u]_+^p] = sigma^p Gamma(p + 1) phi(a) exp(a^2 / 4) D_{-(p+1)}(-a),   a = mu / sigma,
and, for integer p, the closed-form recursion I_0 = Phi, I_1 = a Phi + phi,
I_p = a I_{p-1} + (p - 1) I_{p-2}.  Values are compared in log space where they
underflow float64 (|mu / sigma| = 40 on the negative side).
"""

import inspect

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy import special

import momentssn.closure.nonlinearity as nl
from momentssn.closure.nonlinearity import log_rectified_moment, rate_expectations, rectified_moment

mp.mp.dps = 40

N_VALUES = [1.0, 1.5, 2.0, 2.034, 3.0, 4.5]
A_GRID = [-40.0, -20.0, -8.0, -3.0, -1.0, -0.1, 0.0, 0.1, 1.0, 3.0, 8.0, 20.0, 40.0]
SIGMAS = [0.05, 1.0, 7.5]  # mV
K = 0.3


def log_ref(a, p):
    """log I_p(a) = log E[[a + z]_+^p], z ~ N(0, 1), by mpmath (parabolic cylinder)."""
    a, p = mp.mpf(a), mp.mpf(p)
    val = mp.gamma(p + 1) * mp.npdf(a) * mp.exp(a * a / 4) * mp.pcfd(-(p + 1), -a)
    return float(mp.log(val))


def closed_form_mp(a, p: int):
    """Integer-order recursion at 60 digits (stable at that precision for |a| <= 40)."""
    with mp.workdps(60):
        a = mp.mpf(a)
        i0, i1 = mp.ncdf(a), a * mp.ncdf(a) + mp.npdf(a)
        if p == 0:
            return i0
        for k in range(2, p + 1):
            i0, i1 = i1, a * i1 + (k - 1) * i0
        return i1


def closed_form_f64(a, p: int):
    """The same recursion in float64: forward-stable for a >= 0 (all terms positive)."""
    a = np.asarray(a, np.float64)
    i0 = special.ndtr(a)
    i1 = a * i0 + np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi)
    if p == 0:
        return i0
    for k in range(2, p + 1):
        i0, i1 = i1, a * i1 + (k - 1) * i0
    return i1


# ---- compiled once, reused by every test: inputs are flattened and padded to PAD
# (XLA compiles the quadrature in ~1 s per shape and dtype, its gradient in a few s).
PAD = 2048
_rate_jit = jax.jit(rate_expectations)
_log_jit = jax.jit(log_rectified_moment)
_moment_jit = jax.jit(lambda mu, sigma, p: rectified_moment(mu, sigma, p))


def _weighted(mu, sigma, k, n, w_nu, w_gamma):
    nu, gamma = rate_expectations(mu, sigma, k, n)
    return w_nu * nu + w_gamma * gamma


# Reverse-mode gradients (as users take them) of w_nu nu + w_gamma gamma w.r.t.
# (mu, sigma, k, n), elementwise: one compile per dtype serves every gradient test.
_vjp_jit = jax.jit(jax.vmap(jax.grad(_weighted, argnums=(0, 1, 2, 3))))


def padded(fn, *args, dtype=np.float64):
    """Apply a compiled elementwise ``fn`` to broadcast ``args`` through one (PAD,) shape."""
    arrays = np.broadcast_arrays(*[np.asarray(a, dtype) for a in args])
    shape, size = arrays[0].shape, arrays[0].size
    assert size <= PAD
    flat = [np.concatenate([a.ravel(), np.ones(PAD - size, dtype)]) for a in arrays]
    out = fn(*flat)
    return jax.tree_util.tree_map(lambda o: np.asarray(o)[:size].reshape(shape + o.shape[1:]), out)


def rate(mu, sigma, k, n, dtype=np.float64):
    """(nu, gamma) of broadcast inputs."""
    return padded(_rate_jit, mu, sigma, k, n, dtype=dtype)


def moment(mu, sigma, p):
    """E[[u]_+^p] through the public ``rectified_moment``."""
    return padded(_moment_jit, mu, sigma, p)


def log_moment(mu, sigma, p):
    return padded(_log_jit, mu, sigma, p)


def jac(mu, sigma, k, n, dtype=np.float64):
    """Tuple over (mu, sigma, k, n) of (..., 2) derivatives of (nu, gamma)."""
    args = np.broadcast_arrays(*[np.asarray(a, dtype) for a in (mu, sigma, k, n)])
    one, zero = np.ones_like(args[0]), np.zeros_like(args[0])
    batch = [np.stack([a, a]) for a in args] + [np.stack([one, zero]), np.stack([zero, one])]
    out = padded(_vjp_jit, *batch, dtype=dtype)
    return tuple(np.moveaxis(o, 0, -1) for o in out)


@pytest.fixture(scope="module")
def log_refs():
    """log I_p(a) for p in {n, n - 1 : n in N_VALUES} and a in A_GRID."""
    ps = sorted({n for n in N_VALUES} | {n - 1 for n in N_VALUES})
    return {(p, a): log_ref(a, p) for p in ps for a in A_GRID}


# ---------------------------------------------------------------- values vs mpmath
@pytest.mark.parametrize("n", N_VALUES)
def test_rate_expectations_match_mpmath(n, log_refs):
    """nu and gamma (exponent n - 1, down to 0) over |mu/sigma| <= 40 and 3 sigma scales."""
    a = np.array(A_GRID)[:, None]
    sig = np.array(SIGMAS)[None, :]
    mu = a * sig
    nu, gamma = rate(mu, sig, K, n)
    ref_log_m = np.array([[log_refs[(n, x)] for x in A_GRID]]).T + n * np.log(sig)
    ref_log_g = np.array([[log_refs[(n - 1, x)] for x in A_GRID]]).T + (n - 1) * np.log(sig)
    ref_nu = K * np.exp(ref_log_m)
    ref_gamma = n * K * np.exp(ref_log_g)
    # condition number of E wrt mu is ~a^2: the inputs' own rounding allows ~eps a^2
    rtol = 1e-12 + 4e-16 * a**2
    for got, ref in ((nu, ref_nu), (gamma, ref_gamma)):
        ok = ref > 1e-280  # far in the negative tail the value underflows to ~0
        assert np.all(np.abs(got - ref)[ok] <= (rtol * ref)[ok])
        assert np.all(got[ref < 1e-300] < 1e-290)
    # log space: accurate even where the moment itself underflows (a = -40)
    np.testing.assert_allclose(log_moment(mu, sig, n), ref_log_m, rtol=2e-15, atol=1e-13)
    np.testing.assert_allclose(log_moment(mu, sig, n - 1), ref_log_g, rtol=2e-15, atol=1e-13)


def test_random_exponents_and_means_match_mpmath():
    """Max relative error over p in [0, 8] and mu / sigma over many scales."""
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 8, 60), rng.uniform(0, 1.2, 30), [0.0, 1e-3, 0.999, 1.0]])
    a = np.concatenate([rng.uniform(-40, 40, 50),
                        np.sign(rng.uniform(-1, 1, 44)) * 10 ** rng.uniform(-4, 4, 44)])
    ref = np.array([log_ref(x, q) for x, q in zip(a, p)])
    got = log_moment(a, 1.0, p)
    assert np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))) < 1e-13
    ok = ref > -600
    np.testing.assert_allclose(moment(a, 1.0, p)[ok], np.exp(ref[ok]), rtol=2e-13)


def test_p_zero_is_normal_cdf():
    a = np.linspace(-37, 37, 301)
    sig = 2.5
    mu = a * sig
    ref = special.ndtr(mu / sig)
    # condition number of Phi(a) is ~a^2: ~eps a^2 relative is the attainable accuracy
    assert np.all(np.abs(moment(mu, sig, 0.0) - ref) <= (1e-13 + 2.2e-16 * a * a) * ref)


# ---------------------------------------------------------------- integer closed forms
@pytest.mark.parametrize("p", [0, 1, 2, 3, 4, 5])
def test_integer_closed_forms_agree(p):
    a = np.array([-40.0, -25.0, -9.0, -4.0, -1.5, -0.3, 0.0, 0.4, 2.0, 6.0, 15.0, 40.0])
    ref_log = np.array([float(mp.log(closed_form_mp(x, p))) for x in a])
    np.testing.assert_allclose(log_moment(a, 1.0, float(p)), ref_log, rtol=2e-15, atol=1e-13)
    # float64 recursion where it is stable, with units: E = sigma^p I_p(mu / sigma)
    a_pos = np.linspace(0.0, 40.0, 81)
    sig = 3.0
    got = moment(a_pos * sig, sig, float(p))
    np.testing.assert_allclose(got, sig**p * closed_form_f64(a_pos, p), rtol=1e-12)


def test_n2_elementary():
    """n = 2 is elementary: nu = k ((mu^2 + sigma^2) Phi(a) + mu sigma phi(a))."""
    mu = np.linspace(-6, 9, 31)
    sig = 1.7
    a = mu / sig
    phi = np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi)
    nu, gamma = rate(mu, sig, K, 2.0)
    ref_nu = K * ((mu**2 + sig**2) * special.ndtr(a) + mu * sig * phi)
    np.testing.assert_allclose(nu, ref_nu, rtol=1e-12)
    np.testing.assert_allclose(gamma, 2 * K * (mu * special.ndtr(a) + sig * phi), rtol=1e-12)


# ---------------------------------------------------------------- gradients
def test_gradients_match_finite_differences():
    """d(nu, gamma)/d(mu, sigma, k, n) against central differences."""
    a, s, n = np.meshgrid([-5.0, -1.0, 0.0, 0.7, 3.0, 12.0], [0.5, 3.0], N_VALUES, indexing="ij")
    mu, sig, n = (a * s).ravel(), s.ravel(), n.ravel()
    k = np.full_like(mu, K)
    args = [mu, sig, k, n]
    scales = [sig, sig, k, np.ones_like(n)]
    grads = jac(*args)
    val = np.stack(rate(*args), axis=-1)
    # all perturbed inputs in one batch; 5-point stencil, error O(h^4)
    steps = np.array([2.0, 1.0, -1.0, -2.0]) * 1e-4
    batch = [np.concatenate([x] + [x + (j == i) * h * sc for j in range(4) for h in steps])
             for i, (x, sc) in enumerate(zip(args, scales))]
    out = np.stack(rate(*batch), axis=-1)[len(mu):].reshape(4, 4, len(mu), 2)
    for i, sc in enumerate(scales):
        fd = (-out[i, 0] + 8 * out[i, 1] - 8 * out[i, 2] + out[i, 3]) / (12e-4 * sc[:, None])
        err = np.abs(grads[i] - fd)
        tol = 1e-9 * (np.abs(fd) + np.abs(val) / sc[:, None]) + 1e-300
        assert np.all(err <= tol), (i, np.max(err / tol))


def test_gradient_in_n_matches_mpmath():
    """d/dn of nu and gamma against mpmath derivatives of the reference."""
    cases = np.array([(-3.0, 0.8, 1.0), (0.0, 2.0, 1.5), (1.0, 1.0, 2.034),
                      (4.0, 0.5, 3.0), (-1.0, 5.0, 4.5)])
    got = jac(cases[:, 0], cases[:, 1], K, cases[:, 2])[3]
    for (mu, s, n), (d_nu, d_gamma) in zip(cases, got):

        def ref_m(p):  # sigma^p Gamma(p+1) phi(a) e^(a^2/4) D_{-(p+1)}(-a)
            a = mp.mpf(mu) / s
            d = mp.pcfd(-(p + 1), -a)
            return mp.mpf(s) ** p * mp.gamma(p + 1) * mp.npdf(a) * mp.exp(a * a / 4) * d

        n_mp = mp.mpf(n)
        assert d_nu == pytest.approx(float(K * mp.diff(ref_m, n_mp)), rel=1e-12)
        ref_gamma = K * ref_m(n_mp - 1) + n_mp * K * mp.diff(ref_m, n_mp - 1)
        assert d_gamma == pytest.approx(float(ref_gamma), rel=1e-12)


@pytest.mark.parametrize("p", [2.0, 2.034, 3.0, 4.5])
def test_price_and_stein_identities(p):
    """dE/dmu = p E[[u]_+^(p-1)],  dE/dsigma = sigma E[f''] = sigma p (p-1) E[[u]_+^(p-2)]."""
    a = np.array([-30.0, -6.0, -1.0, 0.0, 0.5, 2.0, 10.0, 40.0, 1e2, 1e3, 1e4])
    sig = 1.3
    mu = a * sig
    d = jac(mu, sig, 1.0, p)  # k = 1: nu = E[[u]_+^p]
    id_mu = p * moment(mu, sig, p - 1)
    id_sig = sig * p * (p - 1) * moment(mu, sig, p - 2)
    np.testing.assert_allclose(d[0][:, 0], id_mu, rtol=1e-12, atol=0)
    rtol = np.where(np.abs(a) <= 40, 1e-12, 1e-10)  # sigma << mu: d/dsigma is a tiny residual
    assert np.all(np.abs(d[1][:, 0] - id_sig) <= rtol * np.abs(id_sig))
    # gamma = d nu / d mu exactly (Stein)
    np.testing.assert_allclose(d[0][:, 0], rate(mu, sig, 1.0, p)[1], rtol=1e-12)


def test_second_derivatives():
    """Autodiff to second order (reverse over reverse, through the custom JVP) vs
    Price's theorem: d2/dmu2 E[[u]_+^p] = p (p - 1) E[[u]_+^(p-2)], mu = 0 included."""
    d2_dmu2 = jax.jit(jax.vmap(jax.grad(jax.grad(rectified_moment))))
    a = np.array([-6.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 2.0, 10.0, 40.0])
    sig = 0.9
    for p in (2.0, 2.034, 3.0, 4.5):
        got = padded(d2_dmu2, a * sig, sig, p)
        np.testing.assert_allclose(got, p * (p - 1) * moment(a * sig, sig, p - 2), rtol=1e-11)


# ---------------------------------------------------------------- sigma -> 0 and extremes
@pytest.mark.parametrize("n", [1.0, 1.5, 2.0, 2.034, 3.0])
def test_sigma_zero_limit(n):
    mu = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    nu, gamma = rate(mu, 0.0, K, n)
    np.testing.assert_allclose(nu, K * np.maximum(mu, 0) ** n, rtol=1e-14, atol=0)
    ref_gamma = n * K * np.where(mu > 0, np.abs(mu) ** (n - 1), 0.0)
    if n == 1.0:
        ref_gamma[mu == 0] = 0.5 * K  # Phi(0): the sigma -> 0 limit at mu = 0
    np.testing.assert_allclose(gamma, ref_gamma, rtol=1e-14, atol=0)
    log_m = log_moment(mu, 0.0, n)
    assert np.all(log_m[mu <= 0] == -np.inf)
    np.testing.assert_allclose(log_m[mu > 0], n * np.log(mu[mu > 0]), rtol=1e-15)
    # continuity: a tiny sigma gives the same (up to k sigma^n I_n(0) at mu = 0)
    nu_s, gamma_s = rate(mu, 1e-9, K, n)
    np.testing.assert_allclose(nu_s, nu, rtol=1e-12, atol=K * 1e-9)
    np.testing.assert_allclose(gamma_s[mu != 0], gamma[mu != 0], rtol=1e-12, atol=0)
    # gradients at sigma = 0 are finite, and d nu / d mu = gamma away from the kink
    grads = jac(mu, 0.0, K, n)
    for g in grads:
        assert np.all(np.isfinite(g))
    np.testing.assert_allclose(grads[0][mu != 0, 0], ref_gamma[mu != 0], rtol=1e-14)
    np.testing.assert_array_equal(grads[1], 0.0)  # d/dsigma vanishes at sigma = 0


def test_extreme_inputs_finite_float64():
    mu = np.array([-1e3, -40.0, -1.0, -1e-30, 0.0, 1e-30, 1.0, 40.0, 1e3])[:, None, None]
    sig = np.array([0.0, 1e-300, 1e-30, 1e-9, 1e-3, 1.0, 1e3])[None, :, None]
    n = np.array([1.0, 2.034, 4.5])[None, None, :]
    vals = rate(mu, sig, K, n)
    for x in (*vals, *jac(mu, sig, K, n)):
        assert np.all(np.isfinite(x))
    assert np.all(vals[0] >= 0) and np.all(vals[1] >= 0)
    # |mu / sigma| far beyond 40, both signs, through the switch to the deterministic limit
    a = np.array([1e3, 1e5, 1e6, 6e8, 7e8, 1e12])
    q = 2.5  # E[(mu + sigma z)^q] = mu^q (1 + q(q-1)/(2 a^2) + q(q-1)(q-2)(q-3)/(8 a^4) + O(a^-6))
    ref = 2.0**q * (1 + q * (q - 1) / (2 * a**2) + q * (q - 1) * (q - 2) * (q - 3) / (8 * a**4))
    np.testing.assert_allclose(moment(2.0, 2.0 / a, q), ref, rtol=1e-13)
    assert np.all(moment(-2.0, 2.0 / a, 2.5) == 0)
    # negative sigma is read as |sigma|
    np.testing.assert_array_equal(moment(0.3, np.array([-1.1, 1.1]), 2.034)[0],
                                  moment(0.3, 1.1, 2.034))


# ---------------------------------------------------------------- float32
def test_float32_matches_float64_and_stays_finite():
    a = np.array(A_GRID + [-13.0, -12.0, 1e3, 1e6, -1e6])[:, None, None]
    sig = np.array([0.0, 1e-30, 0.05, 1.0, 7.5], np.float32)[None, :, None]
    n = np.array([1.0, 1.5, 2.034, 4.5], np.float32)[None, None, :]
    mu = (a * np.maximum(sig, 1e-3)).astype(np.float32)
    v32 = rate(mu, sig, K, n, dtype=np.float32)
    v64 = rate(mu, sig, np.float32(K), n, dtype=np.float64)  # the same float32 inputs
    for x32, x64 in zip(v32, v64):
        assert x32.dtype == np.float32 and np.all(np.isfinite(x32))
        ok = x64 > 1e-30  # not underflowing in float32
        # ~1e-5: a few float32 ulps of log(x), which is what exp(log x) can carry
        rtol = 5e-6 + 3e-7 * np.abs(np.log(x64[ok]))
        assert np.all(np.abs(x32[ok] - x64[ok]) <= rtol * x64[ok])
        assert np.all(x32[x64 < 1e-45] == 0)
    for g in jac(mu, sig, K, n, dtype=np.float32):
        assert g.dtype == np.float32 and np.all(np.isfinite(g))


# ---------------------------------------------------------------- transformations
def test_jit_vmap_broadcast_and_traced_n():
    """One compile for every exponent; (B, N) means with (N,) sigmas and (B, 1) gains.

    (jit + vmap + reverse-mode gradients w.r.t. a traced n are also exercised by ``jac``.)
    """
    rng = np.random.default_rng(3)
    mu = rng.normal(1.0, 3.0, size=(5, 7))  # (B stimuli, N neurons)
    sig = rng.uniform(0.2, 3.0, size=(7,))
    k = np.linspace(0.1, 0.5, 5)[:, None]
    traces = []

    @jax.jit
    def f(mu, sig, k, n):
        traces.append(1)
        return rate_expectations(mu, sig, k, n)

    for n in (2.0, 2.034, 1.0, 4.5):
        nu, gamma = f(mu, sig, k, n)
        assert nu.shape == gamma.shape == (5, 7)
        ref_nu, ref_gamma = rate(mu, sig, k, n)
        np.testing.assert_allclose(nu, ref_nu, rtol=1e-14)
        np.testing.assert_allclose(gamma, ref_gamma, rtol=1e-14)
    assert len(traces) == 1  # n is traced: no retrace, no Python branching on its value
    # vmapped over stimuli (as the moment closure is), under jit
    per_stimulus = jax.jit(jax.vmap(rate_expectations, in_axes=(0, None, 0, None)))
    nu_v, gamma_v = per_stimulus(mu, sig, k[:, 0], 2.034)
    ref_nu, ref_gamma = rate(mu, sig, k, 2.034)
    np.testing.assert_allclose(nu_v, ref_nu, rtol=1e-14)
    np.testing.assert_allclose(gamma_v, ref_gamma, rtol=1e-14)


def test_library_does_not_enable_x64():
    src = inspect.getsource(nl)
    assert "jax_enable_x64" not in src and "config.update" not in src
