"""Semi-analytic fitting recovers known parameters on a small synthetic task, and an
interrupted fit resumes where it stopped."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.tasks import Task
from momentssn.training import checkpoint


@functools.lru_cache(maxsize=None)
def synthetic():
    """(param, task, start, raw, m): targets are the closure moments of a known network."""
    param = ms.get_parameterization("baseline15", m=4)
    true = param.random_theta(3, scale=0.15)
    net = param.network(true)
    rng = np.random.default_rng(0)
    raw = jnp.asarray(np.repeat(rng.uniform(0.0, 1.0, size=(3, 4)), 2, axis=1))  # E and I same input
    m = ms.stationary_moments(net, param.inputs(true, raw))
    task = Task(inputs=np.asarray(raw), target_mean=np.asarray(m.mean[:, :4]),
                target_cov=np.asarray(m.cov[:, :4, :4]), n_exc=4, name="synthetic")
    start = param.random_theta(3, scale=0.15, theta=true + 0.05)
    return param, task, start, raw, m


@functools.lru_cache(maxsize=None)
def straight_fit():
    """The uninterrupted fit (shared by the tests: one compilation, one run)."""
    param, task, start, _, _ = synthetic()
    return ms.fit(param, task, theta0=start, max_iter=200, progress=False)


def test_fit_recovers_known_parameters_on_synthetic_task():
    param, task, start, raw, m = synthetic()
    res = straight_fit()
    start_loss = res.history[0][0]  # loss at theta0
    assert np.isfinite(start_loss) and res.iterations > 0
    assert res.loss < 1e-3 * start_loss
    fitted = param.network(jnp.asarray(res.theta))
    m2 = ms.stationary_moments(fitted, param.inputs(jnp.asarray(res.theta), raw))
    assert np.allclose(m2.mean[:, :4], m.mean[:, :4], atol=1e-3)
    assert np.allclose(m2.cov[:, :4, :4], m.cov[:, :4, :4], atol=1e-3)


def test_published_parameters_score_about_2e3_and_the_fit_start_is_worse(echeveste_task_path):
    """The issue's reference point: the published parameters score ~2.0e-3 (stationary
    closure, eq. 7) on the published task; ``echeveste_start`` (where fit-baseline
    starts) is a weak network far from that."""
    from reference import PUBLISHED_BASELINE15

    from momentssn.params.ring import Baseline15, echeveste_start

    task = ms.load_task(echeveste_task_path)
    param = Baseline15(m=task.n_exc)
    loss = jax.jit(lambda th: ms.stationary_loss(param, th, task.inputs, task.target_mean, task.target_cov))
    value, aux = loss(param.to_theta(PUBLISHED_BASELINE15))
    assert bool(aux.stable)
    assert 1.9e-3 < float(value) < 2.1e-3
    start = echeveste_start(task.inputs)
    assert start["in_b"] == 1.1 and start["a_ee"] == 0.02  # published h~ are >= 0
    v0, aux0 = loss(param.to_theta(start))
    assert bool(aux0.stable) and float(v0) > 0.05


class _Kill(Exception):
    pass


def test_interrupted_fit_resumes_where_it_stopped(tmp_path):
    """A fit killed after 3 iterations (the progress callback raises) resumes from its
    checkpoint: the iterations before the kill are the uninterrupted run's, bit for bit,
    and the resumed fit reaches the same minimum."""
    param, task, start, raw, m = synthetic()
    full = straight_fit()

    def kill_after_3(event):
        if event.step == 3:
            raise _Kill

    with pytest.raises(_Kill):
        ms.fit(param, task, theta0=start, max_iter=200, checkpoint_dir=tmp_path, progress=kill_after_3)
    ck = checkpoint.load(tmp_path, "fit")
    assert ck.meta["start"] == 0 and ck.meta["iterations"] == 3
    events = []
    res = ms.fit(param, task, theta0=start, max_iter=200, checkpoint_dir=tmp_path, resume=True,
                 progress=events.append)
    assert events[0].step == 4  # goes on with iteration 4
    np.testing.assert_array_equal(res.history[0][:4], full.history[0][:4])
    assert len(res.history) == 1 and res.iterations == len(res.history[0]) - 1 > 3
    assert res.loss < 1e-3 * res.history[0][0]
    fitted = param.network(jnp.asarray(res.theta))
    m2 = ms.stationary_moments(fitted, param.inputs(jnp.asarray(res.theta), raw))
    assert np.allclose(m2.mean[:, :4], m.mean[:, :4], atol=1e-3)
    assert np.allclose(m2.cov[:, :4, :4], m.cov[:, :4, :4], atol=1e-3)
    # a finished fit resumed again does nothing more
    again = ms.fit(param, task, max_iter=200, checkpoint_dir=tmp_path, resume=True)
    assert again.history == res.history and again.loss == res.loss
    # the checkpoint loads back as a network (ms.load)
    loaded = ms.load(tmp_path)
    assert loaded.kind == "fit" and loaded.param == param
    np.testing.assert_array_equal(np.asarray(loaded.theta), res.theta)


def test_fit_resume_without_a_checkpoint_names_the_folder(tmp_path):
    param, task, start, _, _ = synthetic()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        ms.fit(param, task, theta0=start, checkpoint_dir=tmp_path / "nothing", resume=True)
