"""Tests of the maximum-likelihood GSM (momentssn.gsm.ml) and the whole small path
patches -> filters -> ML GSM -> natural-image task.

References: GSM.log_evidence (adaptive quadrature), scipy's multivariate normal in pixel
space, finite differences, and the dense trapezoid rule in log z of test_gsm_model.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from test_gsm_model import _rel, reference_posterior

import momentssn as ms
from momentssn.gsm.filters import learn_gabors
from momentssn.gsm.ml import (
    fit_fixed_z_gaussian,
    fit_ml_gsm,
    gaussian_log_likelihood,
    grid_log_likelihood,
    pack_params,
    unpack_params,
)
from momentssn.gsm.model import GSM
from momentssn.gsm.patches import default_patches
from momentssn.tasks import INPUT_SCALE, natural_image_task

SIZE, M = 8, 4


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(0)
    P = 12
    A = rng.normal(size=(P, M)) / np.sqrt(P)
    B = rng.normal(size=(M, M))
    C = B @ B.T / M + 0.5 * np.eye(M)
    g = GSM(A, C, sigma_x=0.5, alpha=2.5, beta=2.5)
    x, _, _ = g.sample(1, 6)
    return g, A, C, np.asarray(x)


def test_grid_log_likelihood_matches_log_evidence(small_problem):
    g, A, C, x = small_problem
    t = jnp.arange(-9.0, 4.0 + 1e-9, 0.05)
    L = jnp.linalg.cholesky(jnp.asarray(C))
    grid = np.asarray(grid_log_likelihood(jnp.asarray(A), L, g.sigma_x, g.alpha, g.beta, jnp.asarray(x), t))
    np.testing.assert_allclose(grid, np.asarray(g.log_evidence(x)), atol=1e-8, rtol=0)


def test_gaussian_log_likelihood_matches_pixel_space(small_problem):
    _, A, C, x = small_problem
    z0, sx = 1.3, 0.7
    ref = st.multivariate_normal(np.zeros(A.shape[0]), z0**2 * A @ C @ A.T + sx**2 * np.eye(A.shape[0])).logpdf(x)
    np.testing.assert_allclose(np.asarray(gaussian_log_likelihood(A, C, z0, sx, x)), ref, rtol=1e-12)


def test_ml_objective_gradient_matches_finite_differences(small_problem):
    _, A, C, x = small_problem
    t = jnp.arange(-7.0, 3.0 + 1e-9, 0.1)

    def f(theta):
        L, sx, al = unpack_params(theta, M)
        return jnp.mean(grid_log_likelihood(jnp.asarray(A), L, sx, al, al, jnp.asarray(x), t))

    theta = jnp.asarray(pack_params(C, 0.6, 2.0))
    L, sx, al = unpack_params(theta, M)
    np.testing.assert_allclose(np.asarray(L @ L.T), C, atol=1e-12)
    assert abs(float(sx) - 0.6) < 1e-12 and abs(float(al) - 2.0) < 1e-12
    g = jax.grad(f)(theta)
    d = jnp.asarray(np.random.default_rng(1).normal(size=theta.shape))
    h = 1e-5
    fd = (f(theta + h * d) - f(theta - h * d)) / (2 * h)
    assert abs(float(g @ d) - float(fd)) < 1e-7 * max(1.0, abs(float(fd)))


# --------------------------------------------------------------------------- the small path


@pytest.fixture(scope="module")
def path():
    """8 x 8 patches of the embedded photographs -> M = 4 learned Gabors -> ML GSM."""
    ps = default_patches(SIZE, n_per_image=150, seed=0)
    lf = learn_gabors(ps.train, M, SIZE, seed=0, max_iter=40)
    fit = fit_ml_gsm(lf.filters, ps.train, n_fit=300, max_iter=40)
    return ps, lf, fit


def test_ml_fit_beats_its_start_and_the_fixed_z_gaussian(path):
    ps, lf, fit = path
    assert fit.history[-1] < fit.history[0] - 1e-3
    assert fit.grid_error < 1e-5  # the grid objective agrees with the accurate quadrature
    X = ps.train[np.random.default_rng(0).choice(ps.train.shape[0], 300, replace=False)]
    exact = float(np.mean(np.asarray(fit.gsm.log_evidence(X))))
    assert abs(exact - fit.train_loglik) < 1e-5
    gauss = fit_fixed_z_gaussian(lf.filters, fit.gsm.prior_cov, X)
    assert exact > gauss.train_loglik + 1.0  # the scale mixture earns its place (nats per patch)


def test_ml_posterior_moments_match_dense_quadrature(path):
    ps, _, fit = path
    g = fit.gsm
    A, C = np.asarray(g.filters), np.asarray(g.prior_cov)
    xs = ps.test[:2]
    post = g.posterior_moments(xs)
    for k, x in enumerate(xs):
        m, S, _ = reference_posterior(A, C, float(g.sigma_x), float(g.alpha), float(g.beta), x)
        assert _rel(post.mean[k], m) < 1e-9 and _rel(post.cov[k], S) < 1e-9


def test_natural_image_task_runs_on_the_general_ssn(path):
    ps, lf, fit = path
    task = natural_image_task(fit.gsm, ps.test[:2], contrasts=(0.0, 1.0, 2.0))
    assert task.n_stimuli == 6 and task.n_net == 2 * M and task.n_targets == M and task.n_exc == M
    np.testing.assert_allclose(task.inputs[:, :M], task.images @ lf.filters * INPUT_SCALE, atol=1e-12)
    np.testing.assert_allclose(task.images[4], 1.0 * ps.test[1], atol=1e-12)
    np.testing.assert_allclose(task.target_mean[0], 3.0, atol=1e-12)  # zero contrast: the baseline
    param = ms.get_parameterization("general", m=M)
    theta = param.default_theta()
    h = param.inputs(theta, jnp.asarray(task.inputs))
    assert h.shape == (6, 2 * M) and bool(jnp.all(jnp.isfinite(h)))
    net = param.network(theta)
    assert net.W.shape == (2 * M, 2 * M) and param.size == 3 + 2 * (2 * M) ** 2
