"""Tests of the training tasks (momentssn.tasks)."""

import dataclasses

import numpy as np
import pytest

from momentssn.gsm.model import GSM
from momentssn.moments import Moments
from momentssn.tasks import (
    PUBLISHED_CONTRASTS,
    Task,
    default_task,
    gabor_filters,
    get_task,
    load_task,
    natural_image_task,
    orientation_bump,
    ring_prior_cov,
)


@pytest.fixture(scope="module")
def task():
    return default_task()


# --------------------------------------------------------------------------- the default task


def test_default_task_shapes(task):
    assert task.name == "default"
    assert task.inputs.shape == (5, 100)
    assert task.target_mean.shape == (5, 50) and task.target_cov.shape == (5, 50, 50)
    assert task.images.shape == (5, 256) and task.filters.shape == (256, 50)
    assert task.prior_cov.shape == (50, 50)
    assert task.n_exc == 50 and task.n_stimuli == 5 and task.n_net == 100 and task.n_targets == 50
    np.testing.assert_array_equal(task.contrasts, PUBLISHED_CONTRASTS)
    assert isinstance(task.gsm, GSM)
    assert float(task.gsm.sigma_x) == 10.0 and float(task.gsm.alpha) == 2.0 and float(task.gsm.beta) == 0.5
    assert isinstance(task.targets, Moments) and task.targets.cov.shape == (5, 50, 50)
    assert default_task() is task  # cached: computed once per process


def test_default_task_is_immutable(task):
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "x"
    with pytest.raises(ValueError):
        task.inputs[0, 0] = 1.0


def test_filters_unit_norm_and_orientation_tuned():
    A = gabor_filters()
    np.testing.assert_allclose(np.linalg.norm(A, axis=0), 1.0, rtol=1e-12)
    # each filter responds most to a grating at its own orientation (orientation pi j / 50)
    yy, xx = np.mgrid[0:16, 0:16] - 7.5
    for j in (0, 12, 25, 37):
        phi = np.pi * j / 50
        responses = []
        for k in range(50):
            th = np.pi * k / 50
            grating = np.cos(2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / 5.0).ravel()
            responses.append(A[:, j] @ grating)
        assert np.argmax(responses) == j, (j, phi)
    # the filters differ only in orientation: A^T A is circulant (exactly for 90 deg
    # rotations, up to pixelation ~1e-5 otherwise)
    G = A.T @ A
    np.testing.assert_allclose(G, np.roll(np.roll(G, 25, 0), 25, 1), atol=1e-12)
    np.testing.assert_allclose(G, np.roll(np.roll(G, 7, 0), 7, 1), atol=1e-4)


def test_prior_cov_ring_positive_definite():
    C = ring_prior_cov()
    np.testing.assert_allclose(C, C.T, atol=0)
    ev = np.linalg.eigvalsh(C)
    assert ev.min() > 0.05 and 40 < ev.max() < 60
    np.testing.assert_allclose(np.diag(C), 4.0)
    # ring-structured (circulant over orientation) and smooth: correlation decays with distance
    np.testing.assert_allclose(C, np.roll(np.roll(C, 3, 0), 3, 1), atol=1e-12)
    assert np.all(np.diff(C[0, :26]) < 0)


def test_default_targets_and_inputs(task):
    A = task.filters
    # inputs = A^T x / 15 for the E cells, the same for the I cells
    np.testing.assert_allclose(task.inputs[:, :50], task.images @ A / 15.0, atol=1e-12)
    np.testing.assert_array_equal(task.inputs[:, 50:], task.inputs[:, :50])
    np.testing.assert_allclose(task.images, np.outer(task.contrasts, A @ orientation_bump()), atol=1e-12)
    for S in task.target_cov:
        np.testing.assert_array_equal(S, S.T)
        assert np.linalg.eigvalsh(S).min() > 0
    # targets = GSM posterior moments, means shifted by a 3 mV baseline
    post = task.gsm.posterior_moments(task.images)
    np.testing.assert_allclose(task.target_mean, 3.0 + np.asarray(post.mean), atol=1e-12)
    np.testing.assert_allclose(task.target_cov, np.asarray(post.cov), atol=1e-12)
    np.testing.assert_allclose(task.target_mean[0], 3.0, atol=1e-12)  # zero contrast: baseline


def test_default_task_resembles_published(task, echeveste_task_path):
    pub = load_task(echeveste_task_path)
    # same stimuli, filters and inputs; prior reproduced to 2e-10
    np.testing.assert_allclose(task.filters, pub.filters, atol=1e-12)
    np.testing.assert_allclose(task.images, pub.images, atol=1e-10)
    np.testing.assert_allclose(task.inputs, pub.inputs, atol=1e-12)
    np.testing.assert_allclose(task.prior_cov, pub.prior_cov, atol=1e-9)
    # targets: same trends and magnitudes (the released targets are not the exact posterior)
    for t in (task, pub):
        peak = t.target_mean.max(1)
        var = np.diagonal(t.target_cov, axis1=1, axis2=2).mean(1)
        assert np.all(np.diff(peak) > 0) and np.all(np.diff(var) < 0)
    ratio = (task.target_mean - 3.0).max(1)[1:] / (pub.target_mean - 3.0).max(1)[1:]
    assert np.all((ratio > 0.6) & (ratio < 1.5))
    vr = np.diagonal(task.target_cov, axis1=1, axis2=2).mean(1) / np.diagonal(pub.target_cov, axis1=1, axis2=2).mean(1)
    assert np.all((vr > 0.5) & (vr < 1.5))


# --------------------------------------------------------------------------- files


def test_load_published(echeveste_task_path):
    pub = load_task(echeveste_task_path)
    assert pub.inputs.shape == (5, 100)
    assert pub.target_mean.shape == (5, 50) and pub.target_cov.shape == (5, 50, 50)
    assert pub.images.shape == (5, 256) and pub.filters.shape == (256, 50) and pub.prior_cov.shape == (50, 50)
    assert pub.n_exc == 50 and pub.gsm is None and pub.name == "task"
    np.testing.assert_array_equal(pub.contrasts, PUBLISHED_CONTRASTS)
    np.testing.assert_allclose(pub.inputs[:, :50], pub.images @ pub.filters / 15.0, atol=1e-12)
    np.testing.assert_array_equal(pub.inputs[:, 50:], pub.inputs[:, :50])
    assert get_task(echeveste_task_path).inputs.shape == (5, 100)
    assert get_task(str(echeveste_task_path)).name == "task"


def test_save_load_round_trip(task, tmp_path):
    path = task.save(tmp_path / "default")
    assert path.endswith(".npz")
    back = load_task(path)
    for key in ("inputs", "target_mean", "target_cov", "contrasts", "images", "filters", "prior_cov"):
        np.testing.assert_array_equal(getattr(back, key), getattr(task, key))
    assert back.name == "default" and back.n_exc == 50
    assert isinstance(back.gsm, GSM) and float(back.gsm.sigma_x) == 10.0 and float(back.gsm.beta) == 0.5
    # a minimal task (no images, no GSM) round-trips too
    small = Task(inputs=np.ones((2, 6)), target_mean=np.zeros((2, 3)), target_cov=np.stack([np.eye(3)] * 2))
    back = load_task(small.save(tmp_path / "small.npz"))
    assert back.images is None and back.gsm is None and np.isnan(back.contrasts).all() and back.n_exc == 3


def test_get_task():
    t = Task(inputs=np.ones((1, 2)), target_mean=np.zeros((1, 1)), target_cov=np.ones((1, 1, 1)))
    assert get_task(t) is t
    assert get_task("default") is default_task()
    with pytest.raises(FileNotFoundError, match="task file not found"):
        get_task("no/such/task.npz")


def test_bad_files_give_clear_errors(task, tmp_path):
    full = {k: getattr(task, k) for k in ("images", "filters", "prior_cov", "inputs", "target_mean", "target_cov")}
    p = tmp_path / "missing.npz"
    np.savez(p, **{k: v for k, v in full.items() if k != "target_cov"})
    with pytest.raises(ValueError, match="missing key.*'target_cov'"):
        load_task(p)
    p = tmp_path / "shape.npz"
    np.savez(p, **{**full, "target_mean": full["target_mean"][:, :40]})
    with pytest.raises(ValueError, match="target_cov must be \\(5, 40, 40\\)"):
        load_task(p)
    p = tmp_path / "inputs.npz"
    np.savez(p, **{**full, "inputs": full["inputs"][:4]})
    with pytest.raises(ValueError, match="target_mean must be \\(S=4"):
        load_task(p)
    p = tmp_path / "filters.npz"
    np.savez(p, **{**full, "filters": full["filters"][:, :10]})
    with pytest.raises(ValueError, match="filters must be \\(P, M=50\\)"):
        load_task(p)
    p = tmp_path / "nan.npz"
    bad = full["target_cov"].copy()
    bad[0, 0, 0] = np.nan
    np.savez(p, **{**full, "target_cov": bad})
    with pytest.raises(ValueError, match="target_cov contains NaN"):
        load_task(p)
    p = tmp_path / "asym.npz"
    bad = full["target_cov"].copy()
    bad[0, 0, 1] += 1.0
    np.savez(p, **{**full, "target_cov": bad})
    with pytest.raises(ValueError, match="not symmetric"):
        load_task(p)
    p = tmp_path / "garbage.npz"
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="corrupt or not a task file"):
        load_task(p)
    p = tmp_path / "single.npy"
    np.save(p, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        load_task(p)


def test_natural_image_task_rejects_bad_input():
    g = GSM(np.ones((4, 2)) + np.eye(4, 2), np.eye(2), 1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match=r"patches must be \(n, P=4\)"):
        natural_image_task(g, np.ones((3, 5)))
    with pytest.raises(ValueError, match="contrasts must be finite and >= 0"):
        natural_image_task(g, np.ones((3, 4)), contrasts=(0.0, -1.0))
