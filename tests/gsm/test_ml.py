"""Tests of the maximum-likelihood GSM (momentssn.gsm.ml), and of the whole small path
patches -> filters -> ML GSM -> natural-image task as the `gsm` experiment runs it
(momentssn.experiments.natural_images, tasks.natural_image_task).

References: GSM.log_evidence (adaptive quadrature), scipy's multivariate normal in pixel
space, finite differences, and the dense trapezoid rule in log z of test_gsm_model.py.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from test_gsm_model import _rel, reference_posterior

import momentssn as ms
from momentssn.gsm.filters import fvu
from momentssn.gsm.ml import (
    fit_fixed_z_gaussian,
    fit_ml_gsm,
    fit_subset,
    gaussian_log_likelihood,
    grid_log_likelihood,
    pack_params,
    unpack_params,
)
from momentssn.gsm.model import GSM
from momentssn.tasks import INPUT_SCALE, TARGET_VARIANCE, load_task

M = 4


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
    g = jax.jit(jax.grad(f))(theta)
    d = jnp.asarray(np.random.default_rng(1).normal(size=theta.shape))
    h = 1e-5
    fj = jax.jit(f)  # one compilation for both evaluations
    fd = (fj(theta + h * d) - fj(theta - h * d)) / (2 * h)
    assert abs(float(g @ d) - float(fd)) < 1e-7 * max(1.0, abs(float(fd)))


# --------------------------------------------------------------------------- the small path
#
# One run of the `gsm` experiment at the small size (conftest.gsm_run) serves every test below;
# GSM batches of 200 and 15 images reuse the shapes it compiled.


@pytest.fixture(scope="module")
def run(gsm_run):
    return gsm_run


def test_run_gsm_writes_consistent_results(run):
    out, res, events, ps, task = run
    for name in ("results.json", "arrays.npz", "task.npz", "ssn_task.npz", "filters.png", "fvu_hist.png", "reconstructions.png"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "results.json").read_text())  # strict JSON
    assert doc["fvu_held_out_mean"] == res["fvu_held_out_mean"]
    arr = np.load(out / "arrays.npz")
    # the saved FVUs are those of the saved filters on the held-out patches (recomputed by lstsq)
    A = arr["filters_learned"]
    coef = np.linalg.lstsq(A, ps.test[:50].T, rcond=None)[0]
    ref = np.sum((ps.test[:50] - (A @ coef).T) ** 2, 1) / np.sum(ps.test[:50] ** 2, 1)
    np.testing.assert_allclose(arr["fvu_learned"][:50], ref, rtol=1e-9)
    for key in ("learned", "published_kind", "PCA"):
        np.testing.assert_allclose(arr[f"fvu_{key}"], fvu(arr[f"filters_{key}"], ps.test), rtol=1e-10)
    m = doc["fvu_held_out_mean"]
    assert abs(doc["fvu_ratio_learned_to_pca"] - m["learned"] / m["PCA"]) < 1e-12
    assert m["PCA"] <= m["learned"] + 0.05 and m["learned"] < m["published kind"] - 0.1
    ll = doc["held_out_loglik"]
    np.testing.assert_allclose(ll["difference_mean"], np.mean(arr["loglik_gsm"] - arr["loglik_gaussian"]), rtol=1e-12)
    assert [e.step for e in events if e.task == "gsm"] == [1, 2, 3, 4]


def test_ml_fit_beats_its_start_and_the_fixed_z_gaussian(run):
    _, res, _, ps, task = run
    ml = res["ml_gsm"]
    assert ml["history"][-1] < ml["history"][0] - 1e-3
    assert ml["grid_error"] < 1e-5  # the grid objective agrees with the accurate quadrature
    X = fit_subset(ps.train, 300, 0)
    first, last = (np.asarray(task.gsm.log_evidence(X[sl])) for sl in (slice(0, 200), slice(100, 300)))
    exact = float((first.sum() + last[100:].sum()) / 300)
    assert abs(exact - ml["train_loglik_per_patch"]) < 1e-5
    assert float(task.gsm.beta) == float(task.gsm.alpha) == ml["alpha"]  # E[z] = 1
    # the scale mixture earns its place on the fitting patches (nats per patch)
    assert exact > res["gaussian_fixed_z"]["train_loglik_per_patch"] + 1.0


def test_ml_posterior_moments_match_dense_quadrature(run):
    _, _, _, ps, task = run
    g = task.gsm
    A, C = np.asarray(g.filters), np.asarray(g.prior_cov)
    post = g.posterior_moments(task.images)
    for k in (4, 8):  # two patches at contrast 1 and 2
        x = task.images[k]
        m, S, _ = reference_posterior(A, C, float(g.sigma_x), float(g.alpha), float(g.beta), x)
        assert _rel(post.mean[k], m) < 1e-9 and _rel(post.cov[k], S) < 1e-9


def test_natural_image_task_runs_on_the_general_ssn(run):
    _, res, _, ps, task = run
    rows = res["task"]["held_out_rows"]
    assert task.n_stimuli == 5 * 3 and task.n_net == 2 * M and task.n_targets == M and task.n_exc == M
    np.testing.assert_allclose(task.images[3 * 2 + 1], ps.test[rows[2]], atol=1e-12)  # patch-major
    np.testing.assert_allclose(task.inputs[:, :M], task.images @ task.filters * INPUT_SCALE, atol=1e-12)
    np.testing.assert_array_equal(task.inputs[:, M:], task.inputs[:, :M])
    np.testing.assert_allclose(task.target_mean[0], 3.0, atol=1e-12)  # zero contrast: the baseline
    post = task.gsm.posterior_moments(task.images)
    np.testing.assert_allclose(task.target_cov, np.asarray(post.cov), atol=1e-12)
    np.testing.assert_allclose(task.target_mean, 3.0 + np.asarray(post.mean), atol=1e-12)


def test_ssn_task_is_the_task_with_rescaled_latents(run):
    """ssn_task.npz (what train / compare take) = latents_rescaled(task.npz): same inputs,
    targets in units where the median zero-contrast variance is TARGET_VARIANCE mV^2."""
    out, res, _, _, task = run
    ssn = load_task(out / "ssn_task.npz")
    s = res["task"]["ssn_latent_scale"]
    np.testing.assert_allclose(ssn.inputs, task.inputs, atol=0)
    np.testing.assert_allclose(ssn.target_cov, s**2 * task.target_cov, rtol=1e-12)
    np.testing.assert_allclose(ssn.target_mean - 3.0, s * (task.target_mean - 3.0), rtol=1e-12, atol=1e-12)
    var0 = np.diagonal(ssn.target_cov, axis1=1, axis2=2)[np.asarray(ssn.contrasts) == 0]
    assert abs(np.median(var0) - TARGET_VARIANCE) < 1e-9 and res["task"]["ssn_file"] == "ssn_task.npz"
    param = ms.get_parameterization("general", m=M)
    theta = param.default_theta()
    h = param.inputs(theta, jnp.asarray(task.inputs))
    assert h.shape == (15, 2 * M) and bool(jnp.all(jnp.isfinite(h)))
    assert param.network(theta).W.shape == (2 * M, 2 * M) and param.size == 3 + 2 * (2 * M) ** 2
