"""Tests of the learned Gabor projective fields (momentssn.gsm.filters)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from momentssn.gsm.filters import (
    GaborParams,
    fvu,
    gabor_bank,
    init_gabor_params,
    learn_gabors,
    mean_fvu_loss,
    normalized_second_moment,
    pca_filters,
)
from momentssn.tasks import gabor_filters


def _patches(n=400, size=8, seed=0):
    """Smooth random 8 x 8 patches (low-pass noise), zero mean, unit variance."""
    rng = np.random.default_rng(seed)
    k = np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)
    raw = rng.normal(size=(n, size + 6, size + 6))
    raw = np.apply_along_axis(lambda v: np.convolve(v, k, "valid"), 1, raw)
    raw = np.apply_along_axis(lambda v: np.convolve(v, k, "valid"), 2, raw).reshape(n, -1)
    raw = raw - raw.mean(1, keepdims=True)
    return raw / raw.std(1, keepdims=True)


def test_published_kind_is_a_special_case():
    M, size = 50, 16
    p = GaborParams(
        theta=np.pi * np.arange(M) / M, x0=np.zeros(M), y0=np.zeros(M), sigma=np.full(M, 2.5),
        aspect=np.ones(M), wavelength=np.full(M, 5.0), phase=np.zeros(M),
    )
    np.testing.assert_allclose(np.asarray(gabor_bank(p, size)), gabor_filters(M, size), atol=1e-12)


def test_fvu_matches_lstsq_and_the_trace_formula():
    X = _patches(60)
    A = np.asarray(gabor_bank(init_gabor_params(5, 8, seed=2), 8))
    ref = []
    for x in X:
        a, *_ = np.linalg.lstsq(A, x, rcond=None)
        ref.append(np.sum((x - A @ a) ** 2) / np.sum(x**2))
    np.testing.assert_allclose(fvu(A, X), ref, rtol=1e-10)
    S = normalized_second_moment(X)
    np.testing.assert_allclose(float(mean_fvu_loss(jnp.asarray(A), jnp.asarray(S))), np.mean(ref), rtol=1e-7)


def test_pca_is_the_floor_and_learning_beats_the_start(gsm_run):
    X = _patches(400)
    M = 4
    pca = pca_filters(X, M)
    S = normalized_second_moment(X)
    floor = 1.0 - np.sort(np.linalg.eigvalsh(S))[::-1][:M].sum()
    np.testing.assert_allclose(fvu(pca, X).mean(), floor, rtol=1e-10)
    # the filters learned by the shared small run (conftest.gsm_run: 8 x 8 photographs, M = 4)
    out, res, _, ps, _ = gsm_run
    arr = np.load(out / "arrays.npz")
    A = arr["filters_learned"]
    params = GaborParams(*(arr[f"gabor_{k}"] for k in GaborParams._fields))
    np.testing.assert_allclose(np.asarray(gabor_bank(params, 8)), A, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(A, axis=0), 1.0, rtol=1e-12)
    train_fvu = res["filters"]["train_fvu"]
    np.testing.assert_allclose(train_fvu, fvu(A, ps.train).mean(), rtol=1e-10)
    pca_floor = fvu(pca_filters(ps.train, M), ps.train).mean()
    start = np.asarray(gabor_bank(init_gabor_params(M, 8, seed=0), 8))
    assert pca_floor - 1e-9 <= train_fvu < fvu(start, ps.train).mean() - 0.05
    assert np.all(params.sigma >= 0.5) and np.all(np.abs(params.x0) <= 3.5) and np.all(params.wavelength >= 2.0)
    with pytest.raises(ValueError, match="patches must be"):
        learn_gabors(X, M, 7)


def test_loss_gradient_matches_finite_differences():
    X = _patches(100)
    S = jnp.asarray(normalized_second_moment(X))
    p = init_gabor_params(3, 8, seed=1)
    u = jnp.concatenate([jnp.asarray(v) for v in p])

    def f(u):
        return mean_fvu_loss(gabor_bank(GaborParams(*u.reshape(7, 3)), 8), S)

    g = jax.jit(jax.grad(f))(u)
    d = jnp.asarray(np.random.default_rng(3).normal(size=u.shape))
    h = 1e-5
    fj = jax.jit(f)  # one compilation for both evaluations
    fd = (fj(u + h * d) - fj(u - h * d)) / (2 * h)
    assert abs(float(g @ d) - float(fd)) < 1e-7 * max(1.0, abs(float(fd)))
