"""Tests of the Gaussian scale mixture posterior (momentssn.gsm.model).

References are computed independently of the latent-basis trick: direct (M, M) or
(P, P) algebra at every z and scipy's adaptive quadrature over z, or Monte Carlo.
"""

import numpy as np
import pytest
import scipy.integrate as si
import scipy.special as ss

import jax
import jax.numpy as jnp

from momentssn.gsm.model import GSM, latent_basis
from momentssn.moments import Moments
from momentssn.tasks import gabor_filters, orientation_bump, ring_prior_cov

SIGMA_X, ALPHA, BETA = 10.0, 2.0, 0.5


# --------------------------------------------------------------------------- references


def _logpost_direct(A, C, sx, alpha, beta, x, pixel):
    """z -> (log p(z|x) + const, mu_z, Sigma_z) by direct algebra (no eigendecomposition)."""
    P, M = A.shape
    AtA, Ci, Atx, s2 = A.T @ A, np.linalg.inv(C), A.T @ x, sx**2
    ACAt = A @ C @ A.T

    def fn(z):
        s = z * z / s2
        Sz = np.linalg.inv(Ci + s * AtA)
        mu = (z / s2) * Sz @ Atx
        if pixel:  # log N(x; 0, z^2 A C A^T + s2 I) in pixel space, with all constants
            Sx = z * z * ACAt + s2 * np.eye(P)
            cf = np.linalg.cholesky(Sx)
            r = np.linalg.solve(cf, x)
            loglik = -0.5 * r @ r - np.log(np.diag(cf)).sum() - 0.5 * P * np.log(2 * np.pi)
        else:  # determinant lemma + Woodbury, direct M x M
            ld = np.linalg.slogdet(np.eye(M) + s * C @ AtA)[1]
            loglik = -0.5 * ld + 0.5 * (s / s2) * Atx @ Sz @ Atx
        lp = loglik + alpha * np.log(beta) - ss.gammaln(alpha) + (alpha - 1) * np.log(z) - beta * z
        return lp, mu, Sz

    return fn


def reference_posterior(A, C, sx, alpha, beta, x, pixel=False, epsrel=1e-13):
    """Posterior mean, cov (and log evidence if pixel) by scipy.integrate.quad_vec over z."""
    M = A.shape[1]
    fn = _logpost_direct(A, C, sx, alpha, beta, x, pixel)
    zs = np.exp(np.linspace(-25.0, 10.0, 400))
    lp = np.array([fn(z)[0] for z in zs])
    lmax, zm = lp.max(), zs[lp.argmax()]
    keep = zs[lp > lmax - 60.0]
    zlo, zhi = keep.min() / 1.2, keep.max() * 1.2

    def integrand(z):
        lpz, mu, Sz = fn(z)
        p = np.exp(lpz - lmax)
        return p * np.concatenate([[1.0], mu, (Sz + np.outer(mu, mu)).ravel()])

    pts = [zm * f for f in (0.5, 0.8, 1.0, 1.25, 2.0) if zlo < zm * f < zhi]
    lo = 0.0 if zlo < 1e-9 else zlo
    I, _ = si.quad_vec(integrand, lo, zhi, epsrel=epsrel, epsabs=0, points=pts, limit=10000)
    m = I[1 : M + 1] / I[0]
    S = I[M + 1 :].reshape(M, M) / I[0] - np.outer(m, m)
    return m, S, lmax + np.log(I[0])


def trapezoid_reference(A, C, sx, alpha, beta, x, chunk=1000):
    """Posterior by a dense trapezoid rule in t = log z (exponentially accurate for this
    smooth, decaying integrand), with direct (M, M) algebra at every node and the
    quadratic form x^T (z^2 ACA^T + s2 I)^-1 x = |x - z A mu_z|^2 / s2 + mu_z^T C^-1 mu_z
    (no cancellation at large contrast).  Returns mean, cov, and the grid (t, p(t|x) dt, mu, H).
    """
    M = A.shape[1]
    AtA, Ci, Atx, s2 = A.T @ A, np.linalg.inv(C), A.T @ x, sx**2
    CAtA = C @ AtA

    def evaluate(t):
        out = []
        for k in range(0, len(t), chunk):
            tt = t[k : k + chunk]
            z = np.exp(tt)
            s = z * z / s2
            H = Ci[None] + s[:, None, None] * AtA[None]  # posterior precision at z
            mu = np.linalg.solve(H, ((z / s2)[:, None] * Atx[None])[..., None])[..., 0]
            r = x[None] - z[:, None] * (mu @ A.T)
            quad = np.sum(r * r, 1) / s2 + np.einsum("ki,ij,kj->k", mu, Ci, mu)
            ld = np.linalg.slogdet(np.eye(M)[None] + s[:, None, None] * CAtA[None])[1]
            out.append((alpha * tt - beta * z - 0.5 * ld - 0.5 * quad, mu, H))
        return tuple(np.concatenate(o) for o in zip(*out))

    tc = np.linspace(-30.0, 20.0, 501)
    lpc = evaluate(tc)[0]
    top = tc[lpc > lpc.max() - 2.0]
    tf = np.linspace(top.min() - (tc[1] - tc[0]), top.max() + (tc[1] - tc[0]), 401)
    lpf = evaluate(tf)[0]
    near = tf[lpf > lpf.max() - 0.5]  # about +- one standard deviation of log z
    h = min(0.05, max(near.max() - near.min(), 1e-6) / 8)  # trapezoid error ~ exp(-pi^2 / h)
    keep = tc[lpc > lpc.max() - 60.0]
    step = tc[1] - tc[0]  # {lp > max - 60} extends at most one coarse step beyond `keep`
    t = np.arange(keep.min() - step, keep.max() + step, h)
    lp, mu, H = evaluate(t)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    m = w @ mu
    d = mu - m
    S = np.einsum("k,kij->ij", w, np.linalg.inv(H)) + (d * w[:, None]).T @ d
    return m, 0.5 * (S + S.T), (t, w, mu, H)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


# --------------------------------------------------------------------------- fixtures
#
# Every call on the published problem uses the same batch of 5 images (one compilation,
# shared with tests/test_tasks.py); the small problem uses batches of 3 and single images.


@pytest.fixture(scope="module")
def published():
    """The published-task GSM (50 Gabors on 16x16, ring prior, sigma_x 10, Gamma(2, rate 1/2))
    and 5 images: x = z A y* for z = 0, 0.25, 1, 1000, and a noisy draw of the model
    (pixel noise outside the ~30-dimensional numerical range of the Gabors)."""
    A = gabor_filters()
    gsm = GSM(A, ring_prior_cov(), SIGMA_X, ALPHA, BETA)
    images = np.array([c * A @ orientation_bump() for c in (0.0, 0.25, 1.0, 1000.0)])
    rng = np.random.default_rng(11)  # a draw of the model, in numpy (no extra compilation)
    y = np.linalg.cholesky(np.asarray(gsm.prior_cov)) @ rng.standard_normal(50)
    noisy = rng.gamma(ALPHA, 1 / BETA) * A @ y + SIGMA_X * rng.standard_normal(256)
    images = np.concatenate([images, noisy[None]])
    post, zpost = gsm.posterior(images)
    return gsm, images, post, zpost


@pytest.fixture(scope="module")
def small():
    """A small random problem: P = 20 pixels, M = 5 latents, sigma_x = 1."""
    rng = np.random.default_rng(1)
    P, M = 20, 5
    A = rng.normal(size=(P, M)) / np.sqrt(P)
    B = rng.normal(size=(M, M))
    C = B @ B.T / M + 0.5 * np.eye(M)
    gsm = GSM(A, C, sigma_x=1.0, alpha=ALPHA, beta=BETA)
    return gsm, A, C, rng.normal(size=M)


# --------------------------------------------------------------------------- accuracy


def test_latent_basis_diagonalises(published):
    gsm = published[0]
    W, lam = (np.asarray(v) for v in latent_basis(gsm.filters, gsm.prior_cov))
    A, C = np.asarray(gsm.filters), np.asarray(gsm.prior_cov)
    np.testing.assert_allclose(W.T @ np.linalg.solve(C, W), np.eye(50), atol=1e-8)
    np.testing.assert_allclose(W.T @ A.T @ A @ W, np.diag(lam), atol=1e-10)
    assert np.all(lam >= 0)


def test_quadrature_matches_dense_reference_published(published):
    """Relative error < 1e-10 (measured 1e-15 .. 2e-11) against an independent dense
    trapezoid rule in log z with direct (M, M) algebra, M = 50, contrasts 0 .. 1000 and
    a noisy image (whose null-space components once cost 2e-9 through eigh's rounding)."""
    gsm, images, post, _ = published
    A, C = np.asarray(gsm.filters), np.asarray(gsm.prior_cov)
    for k, x in enumerate(images):
        m, S, _ = trapezoid_reference(A, C, SIGMA_X, ALPHA, BETA, x)
        if k == 0:
            assert np.all(np.asarray(post.mean[0]) == 0.0)
        else:
            assert _rel(post.mean[k], m) < 1e-10, k
        assert _rel(post.cov[k], S) < 1e-10, k


def test_pixel_space_brute_force_small(small):
    """P = 20, M = 5: pixel-space likelihood (P x P Cholesky at every z) integrated by
    scipy.integrate.quad_vec (epsrel 1e-13): moments to 1e-10 (measured ~5e-15) and
    log evidence to 1e-10 absolute."""
    gsm, A, C, ystar = small
    xs = np.stack([np.zeros(20), 1.5 * A @ ystar, 20.0 * A @ ystar + 0.3])
    post, zpost = gsm.posterior(xs)
    for k, x in enumerate(xs):
        m, S, logev = reference_posterior(A, C, 1.0, ALPHA, BETA, x, pixel=True)
        if k > 0:
            assert _rel(post.mean[k], m) < 1e-10, k
        assert _rel(post.cov[k], S) < 1e-10, k
        assert abs(float(zpost.log_evidence[k]) - logev) < 1e-10, k


# --------------------------------------------------------------------------- Monte Carlo


def test_importance_sampling_small(small):
    """Prior samples (z, y) weighted by N(x; z A y, sigma_x^2 I): moments within 5 MC s.e."""
    gsm, A, C, ystar = small
    x = 1.5 * A @ ystar
    _, y, z = (np.asarray(v) for v in gsm.sample(3, 60_000))
    r = x[None, :] - z[:, None] * (y @ A.T)
    logw = -0.5 * np.sum(r**2, axis=1)  # sigma_x = 1
    w = np.exp(logw - logw.max())
    w /= w.sum()
    assert 1.0 / np.sum(w**2) > 2000  # effective sample size
    m = w @ y
    d = y - m
    S = (d * w[:, None]).T @ d
    # delta-method standard errors of self-normalised importance sampling estimates
    w2 = w**2
    se_m = np.sqrt(w2 @ d**2)
    # sum_k w_k^2 (d_ki d_kj - S_ij)^2, expanded into matrix products
    se_S = np.sqrt((d**2 * w2[:, None]).T @ d**2 - 2 * S * ((d * w2[:, None]).T @ d) + S**2 * w2.sum())
    post = gsm.posterior_moments(np.stack([x, 0 * x, 2 * x]))  # batches of 3: one compilation
    assert np.all(np.abs(np.asarray(post.mean[0]) - m) < 5 * se_m)
    assert np.all(np.abs(np.asarray(post.cov[0]) - S) < 5 * se_S)


def test_exact_conditional_sampling_published(published):
    """z ~ p(z|x) on a fine grid (direct M x M algebra), then y | z, x ~ N(mu_z, Sigma_z), M = 50."""
    gsm, images, post, _ = published
    A, C = np.asarray(gsm.filters), np.asarray(gsm.prior_cov)
    k = 2  # contrast 1
    _, _, (t, p, mu, H) = trapezoid_reference(A, C, SIGMA_X, ALPHA, BETA, images[k])
    rng = np.random.default_rng(7)
    n = 20_000
    counts = rng.multinomial(n, p)
    ys = []
    for i in np.flatnonzero(counts):
        Lc = np.linalg.cholesky(np.linalg.inv(H[i]))
        ys.append(mu[i] + rng.standard_normal((counts[i], 50)) @ Lc.T)
    y = np.concatenate(ys)
    m, S = y.mean(0), np.cov(y.T)
    d = y - m
    sd = np.sqrt(np.diag(S))
    se_S = np.sqrt(((d**2).T @ d**2 / n - S**2) / n)  # Var(d_i d_j) = E[d_i^2 d_j^2] - S_ij^2
    assert np.all(np.abs(np.asarray(post.mean[k]) - m) < 5 * sd / np.sqrt(n))
    assert np.all(np.abs(np.asarray(post.cov[k]) - S) < 5 * se_S)


# --------------------------------------------------------------------------- special cases and API


def test_zero_image(published, small):
    """x = 0: mean 0; p(z|x) ∝ Gamma(z) N(0; 0, z^2 ACA^T + s2 I) (not the prior: the
    image's lack of energy is evidence for small z); cov = E_z[Sigma_z] <= C; and with
    overwhelming pixel noise the posterior is the prior."""
    gsm, _, post, zp = published
    assert np.all(np.asarray(post.mean[0]) == 0.0)
    C = np.asarray(gsm.prior_cov)
    assert np.linalg.eigvalsh(C - np.asarray(post.cov[0])).min() > -1e-10
    z, dens = np.asarray(zp.z[0]), np.asarray(zp.density[0])
    fn = _logpost_direct(np.asarray(gsm.filters), C, SIGMA_X, ALPHA, BETA, np.zeros(256), pixel=False)
    sel = np.arange(0, len(z), 37)
    lp = np.array([fn(zz)[0] for zz in z[sel]]) - 0.5 * 256 * np.log(2 * np.pi * SIGMA_X**2)
    np.testing.assert_allclose(dens[sel], np.exp(lp - float(zp.log_evidence[0])), rtol=1e-9)
    assert abs(float(jnp.sum(zp.weights[0])) - 1.0) < 1e-12
    assert float(zp.mean[0]) < ALPHA / BETA / 4  # far below the prior mean 4
    g, A, C, _ = small
    vague = g.replace(sigma_x=1e7)
    pv, zv = vague.posterior(np.zeros((3, 20)))
    np.testing.assert_allclose(np.asarray(pv.cov[0]), C, rtol=1e-9)
    assert abs(float(zv.mean[0]) - ALPHA / BETA) < 1e-8
    assert abs(float(zv.std[0]) - np.sqrt(ALPHA) / BETA) < 1e-8


def test_batch_shapes_and_trends(published):
    gsm, images, post, zp = published
    assert isinstance(post, Moments)
    assert post.mean.shape == (5, 50) and post.cov.shape == (5, 50, 50)
    assert post.mean.dtype == jnp.float64
    cov = np.asarray(post.cov)
    np.testing.assert_array_equal(cov, np.swapaxes(cov, -1, -2))
    assert min(np.linalg.eigvalsh(c).min() for c in cov) > 0
    assert np.all(np.isfinite(cov))
    # more contrast (images 0..3): larger mean response, smaller variance, larger inferred z
    assert np.all(np.diff(np.asarray(post.mean[:4]).max(1)) > 0)
    assert np.all(np.diff(np.asarray(post.var[:4]).mean(1)) < 0)
    assert zp.z.shape == zp.weights.shape == zp.density.shape and zp.z.shape[0] == 5
    assert np.all(np.diff(np.asarray(zp.mean[:4])) > 0) and np.all(np.diff(np.asarray(zp.mode[:4])) > 0)
    with pytest.raises(ValueError, match="x must have shape"):
        gsm.posterior_moments(np.zeros(255))


def test_sample_statistics(small):
    gsm, A, C, _ = small
    n = 60_000  # the same n as the importance-sampling test (one compilation)
    x, y, z = (np.asarray(v) for v in gsm.sample(0, n))
    assert x.shape == (n, 20) and y.shape == (n, 5) and z.shape == (n,)
    assert abs(z.mean() - ALPHA / BETA) < 5 * np.sqrt(ALPHA / BETA**2 / n)
    assert abs(z.var() - ALPHA / BETA**2) < 0.05 * ALPHA / BETA**2
    np.testing.assert_allclose(np.cov(y.T), C, atol=5 * np.sqrt(2.0 / n) * C.diagonal().max())
    Sx = ALPHA * (ALPHA + 1) / BETA**2 * A @ C @ A.T + np.eye(20)  # E[z^2] A C A^T + s2 I
    np.testing.assert_allclose(np.cov(x.T), Sx, atol=0.05 * np.abs(Sx).max())
    a, b = gsm.sample(jax.random.PRNGKey(5), n), gsm.sample(5, n)  # int seed = PRNGKey(seed)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))


def test_single_image_path_and_derivative(small):
    """The unbatched path (x of shape (P,)) matches the batch and is differentiable in x
    (forward mode here, cheaper to compile; reverse mode uses the same rules)."""
    gsm, A, _, ystar = small
    xs = np.stack([1.5 * A @ ystar, 0.0 * ystar @ A.T, 3.0 * A @ ystar])
    batch = gsm.posterior_moments(xs)

    def f(x):
        m = gsm.posterior_moments(x)
        return jnp.sum(m.mean) + jnp.trace(m.cov)

    jvp = jax.jit(lambda x, dx: jax.jvp(f, (x,), (dx,)))  # one compilation for values and slopes
    x0 = jnp.asarray(xs[0])
    for i in (3, 11):
        e = np.zeros(20)
        e[i] = 1.0
        val, slope = jvp(x0, jnp.asarray(e))
        if i == 3:
            assert abs(float(val) - float(jnp.sum(batch.mean[0]) + jnp.trace(batch.cov[0]))) < 1e-12
        h = 1e-5
        fd = (float(jvp(x0 + h * e, x0)[0]) - float(jvp(x0 - h * e, x0)[0])) / (2 * h)
        assert np.isfinite(float(slope))
        assert abs(float(slope) - fd) < 1e-6 * max(1.0, abs(fd))


def test_derivatives_in_every_leaf_match_finite_differences(small):
    """Reverse and forward mode w.r.t. filters, prior_cov, sigma_x, alpha, beta and the
    images, against central differences, on the small random problem and on one whose
    generalized eigenvalues are exactly degenerate (orthogonal filters of equal norm,
    C = I: where derivatives through the SVD fail)."""
    gsm, A, C, ystar = small
    rng = np.random.default_rng(7)
    P, M = A.shape
    Q = np.linalg.qr(rng.normal(size=(P, M)))[0]
    degenerate = GSM(0.5 * Q, np.eye(M), 1.0, ALPHA, BETA)
    cw = jnp.asarray(np.cos(np.arange(M * M)).reshape(M, M))

    def F(g, xs):  # a batch of two images: the vmapped path
        post, zpost = g.posterior(xs)
        return (jnp.sum(jnp.sin(1.0 + jnp.arange(M)) * post.mean) + jnp.sum(cw * post.cov)
                + 0.1 * jnp.sum(zpost.log_evidence) + jnp.sum(zpost.mean))

    grad = jax.jit(jax.grad(F, argnums=(0, 1)))
    fwd = jax.jit(lambda g, xs, dg, dx: jax.jvp(F, (g, xs), (dg, dx))[1])
    for g, Af in ((gsm, A), (degenerate, 0.5 * Q)):
        xs = jnp.asarray(np.stack([1.5 * Af @ ystar, 0.7 * Af @ ystar[::-1] + 0.2 * rng.normal(size=P)]))
        g_bar, x_bar = grad(g, xs)
        dC = rng.normal(size=(M, M))
        directions = [rng.normal(size=(P, M)), dC + dC.T, 0.3, 0.7, -0.4]  # leaves' order
        tang = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(g), [jnp.asarray(d) for d in directions])
        dx = jnp.asarray(rng.normal(size=xs.shape))
        leaves = ("filters", "prior_cov", "sigma_x", "alpha", "beta")
        rev = sum(float(jnp.sum(getattr(g_bar, n) * getattr(tang, n))) for n in leaves)
        rev += float(jnp.sum(x_bar * dx))
        h = 1e-5

        def moved(sign):
            return g.replace(**{n: getattr(g, n) + sign * h * getattr(tang, n) for n in leaves})

        fd = (float(F(moved(1), xs + h * dx)) - float(F(moved(-1), xs - h * dx))) / (2 * h)
        assert abs(rev - fd) < 1e-6 * max(1.0, abs(fd)), (rev, fd)
        assert abs(float(fwd(g, xs, tang, dx)) - rev) < 1e-10 * max(1.0, abs(rev))


def test_validation():
    A = np.ones((4, 2))
    with pytest.raises(ValueError, match="prior_cov must have shape"):
        GSM(A, np.eye(3), 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="positive definite"):
        GSM(A, np.diag([1.0, -1.0]), 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="sigma_x must be > 0"):
        GSM(A, np.eye(2), 0.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="beta must be > 0"):
        GSM(A, np.eye(2), 1.0, 2.0, -1.0)
    with pytest.raises(ValueError, match="symmetric"):
        GSM(A, np.array([[1.0, 0.5], [0.0, 1.0]]), 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="filters must be"):
        GSM(np.ones(4), np.eye(2), 1.0, 2.0, 0.5)
