"""Training by simulation (momentssn.training.adam): the Adam loop, the simulated loss, BPTT.

Every simulation here uses one tiny configuration (Baseline15 with m = 2, i.e. N = 4,
3 stimuli, 32 trials, 60 ms at dt = 0.5 ms) so that the value-and-gradient compiles
once for the whole file.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import momentssn as ms
from momentssn.tasks import Task
from momentssn.training.adam import (
    CHECKPOINT_FILE,
    AdamSettings,
    adam_train,
    load_checkpoint,
    simulated_loss,
    train_bptt,
    train_moments_adam,
)

SIM = dict(n_trials=32, t_max=60.0, t_avg=20.0, dt=0.5)


def evaluate(param, task, theta, seed):
    """(loss, aux) of the simulated loss at theta with key fold_in(key(seed), 0): read from
    the first step of train_bptt (its callback sees the evaluation), so every simulation
    of this file runs through one compiled value-and-gradient."""
    seen = []
    train_bptt(param, task, theta0=theta, steps=1, seed=seed, progress=False,
               callback=lambda t, th, loss, aux: seen.append((loss, aux)), **SIM)
    return seen[0]


@functools.lru_cache(maxsize=None)
def setup():
    """(param, task): the targets are simulated moments (SIM settings, one fixed key) of
    a perturbed network whose input gain is ~35 % higher than the default's, so the
    default starts visibly off."""
    param = ms.get_parameterization("baseline15", m=2)
    true = param.random_theta(3, scale=0.15).at[param.names.index("in_a")].add(0.3)
    raw = np.repeat(np.random.default_rng(0).uniform(0.0, 1.0, size=(3, 2)), 2, axis=1)
    placeholder = Task(inputs=raw, target_mean=np.zeros((3, 2)), target_cov=np.zeros((3, 2, 2)), n_exc=2)
    _, aux = evaluate(param, placeholder, true, seed=1000)
    m = aux.moments
    task = Task(inputs=raw, target_mean=np.asarray(m.mean[:, :2]), target_cov=np.asarray(m.cov[:, :2, :2]),
                n_exc=2, name="tiny")
    return param, task


def assert_same_history(a, b):
    """Equal histories (NaN == NaN), wall times aside."""
    assert set(a) == set(b) == {"step", "loss", "wall_time_s", "accepted", "grad_norm"}
    for k in ("step", "accepted"):
        assert a[k] == b[k], k
    for k in ("loss", "grad_norm"):
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


# --------------------------------------------------------------------------- BPTT end to end


def test_bptt_lowers_the_simulated_loss():
    param, task = setup()
    theta0 = param.default_theta()
    res = train_bptt(param, task, steps=15, learning_rate=0.05, seed=1, progress=False, **SIM)
    assert res.steps == 15 and res.n_rejected == 0
    assert len(res.history["loss"]) == 15 and all(np.isfinite(res.history["loss"]))
    assert res.theta.dtype == theta0.dtype and np.all(np.isfinite(res.theta))
    # same noise for both evaluations, unseen in training
    l0, aux0 = evaluate(param, task, theta0, seed=123)
    l1, aux1 = evaluate(param, task, res.theta, seed=123)
    assert np.isfinite(float(l0)) and int(jnp.sum(aux0.n_diverged)) == 0
    assert float(l1) < 0.5 * float(l0), (float(l0), float(l1))
    # the aux carries per-stimulus losses whose mean is the loss, and all moments
    assert aux1.per_stimulus.shape == (3,) and aux1.moments.mean.shape == (3, 4)
    assert aux1.moments.cov.shape == (3, 4, 4)
    np.testing.assert_allclose(float(jnp.mean(aux1.per_stimulus)), float(l1), rtol=1e-12)


def test_simulated_loss_matches_eq7_on_time_averaged_simulated_moments():
    """The loss is losses.loss_per_stimulus of the across-trial moments of ms.simulate,
    trapezoid-averaged over the records in [t_max - t_avg, t_max], target cells only."""
    param, task = setup()
    theta = param.default_theta()
    loss, aux = evaluate(param, task, theta, seed=7)
    key = jax.random.fold_in(jax.random.key(7), 0)
    sim = ms.simulate(param.network(theta), param.inputs(theta, jnp.asarray(task.inputs)), 60.0, 0.5, 32,
                      seed=key, record_stride=2, progress=False)
    tr = sim.time_resolved
    sel = tr.t >= 40.0 - 1e-6
    assert int(sel.sum()) == 21  # records every 1 ms from 40 to 60 ms
    w = np.ones(21) / 20.0
    w[[0, -1]] /= 2
    mean = np.einsum("t,stn->sn", w, np.asarray(tr.mean)[:, sel])
    cov = np.einsum("t,stnm->snm", w, np.asarray(tr.cov)[:, sel])
    np.testing.assert_allclose(aux.moments.mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(aux.moments.cov, cov, rtol=1e-4, atol=1e-5)
    per = ms.loss_per_stimulus(ms.Moments(jnp.asarray(mean), jnp.asarray(cov)), task.target_mean, task.target_cov)
    np.testing.assert_allclose(aux.per_stimulus, per, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(np.mean(per)), rtol=1e-4)


def test_resumed_bptt_is_bit_identical(tmp_path):
    param, task = setup()
    kw = dict(learning_rate=0.05, seed=3, checkpoint_every=2, progress=False, **SIM)
    full = train_bptt(param, task, steps=6, checkpoint_dir=tmp_path / "full", **kw)
    part = tmp_path / "part"
    a = train_bptt(param, task, steps=6, checkpoint_dir=part, max_time=0.0, **kw)  # interrupted
    assert a.steps == 1 and load_checkpoint(part)["step"] == 1
    b = train_bptt(param, task, steps=4, checkpoint_dir=part, resume=True, **kw)  # fewer steps
    assert b.steps == 4
    c = train_bptt(param, task, steps=6, checkpoint_dir=part, resume=True, **kw)
    assert c.steps == 6
    np.testing.assert_array_equal(c.theta, full.theta)
    assert_same_history(c.history, full.history)
    assert c.history["step"] == list(range(6))
    assert c.wall_time_s >= c.history["wall_time_s"][-1] >= a.history["wall_time_s"][0]
    ck = load_checkpoint(part)
    assert ck["step"] == 6
    np.testing.assert_array_equal(ck["theta_leaves"][0], full.theta)


def test_diverging_simulation_is_rejected():
    param, task = setup()
    theta_bad = param.default_theta().at[param.names.index("a_ee")].add(4.0)  # E-E x 55: runaway
    loss, aux = evaluate(param, task, theta_bad, seed=0)
    assert np.isposinf(float(loss)) and int(jnp.sum(aux.n_diverged)) > 0 and not bool(aux.stable)
    res = train_bptt(param, task, theta0=theta_bad, steps=3, progress=False, **SIM)
    assert res.n_rejected == 3 and res.rejected_steps == [0, 1, 2]
    assert res.history["accepted"] == [False, False, False]
    assert all(np.isposinf(res.history["loss"]))
    np.testing.assert_array_equal(res.theta, np.asarray(theta_bad))  # unchanged, finite
    # the gradient of a diverged evaluation is exactly 0, not NaN
    np.testing.assert_array_equal(res.history["grad_norm"], [0.0, 0.0, 0.0])


def test_simulated_loss_gradient_matches_finite_differences():
    """float64 simulation, fixed key: the loss is a smooth function of theta."""
    param, task = setup()
    f = simulated_loss(param, task, n_trials=4, t_max=20.0, t_avg=10.0, dt=0.5, dtype=jnp.float64)
    vg = jax.jit(jax.value_and_grad(f, has_aux=True))
    key = jax.random.key(11)
    theta = param.default_theta()
    (loss, _), grad = vg(theta, key)
    assert grad.dtype == jnp.float64 and np.all(np.isfinite(grad)) and np.linalg.norm(grad) > 0
    rng = np.random.default_rng(5)
    eps = 1e-5
    for _ in range(3):
        d = rng.standard_normal(theta.shape)
        d /= np.linalg.norm(d)
        (lp, _), _ = vg(theta + eps * d, key)
        (lm, _), _ = vg(theta - eps * d, key)
        fd = (float(lp) - float(lm)) / (2 * eps)
        np.testing.assert_allclose(float(grad @ d), fd, rtol=1e-4, atol=1e-9 * abs(float(loss)))


# --------------------------------------------------------------------------- the Adam loop


def quadratic_vg(target, calls=None, bad=None):
    """value_and_grad of 0.5 |theta - target|^2 (key ignored); steps in ``bad`` return a
    non-finite loss ("inf") or gradient ("nan")."""
    bad = bad or {}
    count = [0]

    def vg(theta, key):
        t = count[0]
        count[0] += 1
        diff = theta - target
        loss = 0.5 * jnp.sum(diff**2)
        if bad.get(t) == "inf":
            loss = jnp.inf
        grad = diff.at[0].set(jnp.nan) if bad.get(t) == "nan" else diff
        return (loss, {"t": t}), grad

    return vg


def thetas_after_each_step(**kw):
    seen = []
    res = adam_train(callback=lambda t, th, loss, aux: seen.append(np.asarray(th)), progress=False, **kw)
    return res, seen


def test_nonfinite_steps_are_rejected_without_touching_the_state():
    target = jnp.array([1.0, -2.0, 3.0])
    theta0 = jnp.zeros(3)
    kw = dict(theta0=theta0, learning_rate=0.1)
    res, seen = thetas_after_each_step(value_and_grad=quadratic_vg(target, bad={2: "inf", 4: "nan"}), steps=8, **kw)
    clean, seen_clean = thetas_after_each_step(value_and_grad=quadratic_vg(target), steps=6, **kw)
    assert res.n_rejected == 2 and res.rejected_steps == [2, 4]
    assert res.history["accepted"] == [True, True, False, True, False, True, True, True]
    assert np.isposinf(res.history["loss"][2]) and np.isnan(res.history["grad_norm"][4])
    assert all(np.all(np.isfinite(th)) for th in seen)
    np.testing.assert_array_equal(seen[2], seen[1])  # a rejected step changes nothing
    np.testing.assert_array_equal(seen[4], seen[3])
    # ... not even Adam's moments or step count: the accepted steps replay the clean run
    for i, j in enumerate([0, 1, 1, 2, 2, 3, 4, 5]):
        np.testing.assert_array_equal(seen[i], seen_clean[j])
    np.testing.assert_array_equal(res.theta, seen_clean[5])


def test_update_is_optax_clip_then_adam():
    """The applied update is optax.chain(clip_by_global_norm, adam) of the raw gradient."""
    rng = np.random.default_rng(0)
    grads = [jnp.asarray(s * rng.standard_normal(4)) for s in (10.0, 0.1, 50.0, 1.0, 3.0)]
    calls = []

    def vg(theta, key):
        calls.append(np.asarray(theta))
        g = grads[len(calls) - 1]
        return (jnp.sum(theta * g), None), g

    theta0 = jnp.asarray(rng.standard_normal(4))
    res, seen = thetas_after_each_step(value_and_grad=vg, theta0=theta0, steps=5, learning_rate=0.03, clip_norm=0.5)

    def reference(opt):
        th, st, out = theta0, opt.init(theta0), []
        for g in grads:
            u, st = opt.update(g, st, th)
            th = optax.apply_updates(th, u)
            out.append(np.asarray(th))
        return out

    clipped = reference(optax.chain(optax.clip_by_global_norm(0.5), optax.adam(0.03)))
    plain = reference(optax.adam(0.03))
    for got, want in zip(seen, clipped):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert np.max(np.abs(clipped[-1] - plain[-1])) > 1e-3  # clipping changed the path
    np.testing.assert_allclose(res.history["grad_norm"], [float(np.linalg.norm(g)) for g in grads], rtol=1e-12)
    calls.clear()
    _, seen_none = thetas_after_each_step(value_and_grad=vg, theta0=theta0, steps=5, learning_rate=0.03,
                                          clip_norm=None)
    np.testing.assert_allclose(seen_none[-1], plain[-1], rtol=1e-12, atol=1e-15)


def test_keys_are_fold_in_of_seed_and_step():
    keys = []

    def vg(theta, key):
        keys.append(np.asarray(jax.random.key_data(key)))
        return (jnp.sum(theta**2), None), 2 * theta

    adam_train(vg, jnp.ones(2), steps=3, seed=9, progress=False)
    base = jax.random.key(9)
    for t, k in enumerate(keys):
        np.testing.assert_array_equal(k, jax.random.key_data(jax.random.fold_in(base, t)))


def test_resume_with_rejections_and_callback_stop(tmp_path):
    target = jnp.array([0.5, -1.5])
    bad = {1: "nan", 6: "inf"}
    kw = dict(theta0=jnp.zeros(2), learning_rate=0.2, checkpoint_every=3, progress=False)
    full = adam_train(quadratic_vg(target, bad=bad), steps=9, checkpoint_dir=tmp_path / "a", **kw)
    # interrupted by the callback after step 4; the resumed loop must see steps 5.. as
    # the same call indices, so the test function's counter starts at 5
    d = tmp_path / "b"
    first = adam_train(quadratic_vg(target, bad=bad), steps=9, checkpoint_dir=d,
                       callback=lambda t, th, loss, aux: t == 4, **kw)
    assert first.steps == 5 and load_checkpoint(d)["step"] == 5
    vg2 = quadratic_vg(target, bad={k - 5: v for k, v in bad.items() if k >= 5})
    second = adam_train(vg2, steps=9, checkpoint_dir=d, resume=True, **kw)
    assert second.steps == 9 and second.n_rejected == full.n_rejected == 2
    assert second.rejected_steps == full.rejected_steps == [1, 6]
    np.testing.assert_array_equal(second.theta, full.theta)
    assert_same_history(second.history, full.history)
    assert not [p for p in os.listdir(d) if p != CHECKPOINT_FILE]  # no temporary files left
    # resuming a finished run does nothing more
    again = adam_train(quadratic_vg(target), steps=9, checkpoint_dir=d, resume=True, **kw)
    assert again.steps == 9
    assert_same_history(again.history, second.history)
    assert again.history["wall_time_s"] == second.history["wall_time_s"]
    np.testing.assert_array_equal(again.theta, full.theta)


class _Kill(Exception):
    pass


def test_killed_run_resumes_bit_identical(tmp_path):
    """A run killed mid-way (an exception in step 5, after the checkpoint of step 4) goes on
    from its last checkpoint and ends bit-identical to an uninterrupted run."""
    target = jnp.array([0.5, -1.5])
    kw = dict(theta0=jnp.zeros(2), learning_rate=0.2, checkpoint_every=2, steps=9)
    full = adam_train(quadratic_vg(target, bad={3: "nan"}), **kw)

    def kill(t, th, loss, aux):
        if t == 4:
            raise _Kill

    with pytest.raises(_Kill):
        adam_train(quadratic_vg(target, bad={3: "nan"}), checkpoint_dir=tmp_path, callback=kill, **kw)
    assert load_checkpoint(tmp_path)["step"] == 4
    resumed = adam_train(quadratic_vg(target), checkpoint_dir=tmp_path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    assert_same_history(resumed.history, full.history)
    assert resumed.rejected_steps == full.rejected_steps == [3]


def test_resume_without_a_checkpoint_names_the_folder(tmp_path):
    """A mistyped folder must not silently restart from scratch."""
    missing = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), steps=2, checkpoint_dir=missing, resume=True)
    assert not missing.exists()


def test_checkpoints_are_written_every_k_steps(tmp_path):
    steps_seen = []

    def cb(t, th, loss, aux):
        path = tmp_path / CHECKPOINT_FILE
        steps_seen.append(load_checkpoint(tmp_path)["step"] if path.exists() else None)

    adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), steps=7, checkpoint_every=3,
               checkpoint_dir=tmp_path, callback=cb, progress=False)
    # the callback runs before the checkpoint of its own step is written
    assert steps_seen == [None, None, None, 3, 3, 3, 6]
    assert load_checkpoint(tmp_path)["step"] == 7


def test_progress_events(capsys):
    """The loop reports through its callback, one event per step, and never prints."""
    events = []
    adam_train(quadratic_vg(jnp.ones(2), bad={1: "inf"}), jnp.zeros(2), steps=3, progress=events.append)
    assert [(e.task, e.step, e.total) for e in events] == [("adam", 1, 3), ("adam", 2, 3), ("adam", 3, 3)]
    assert "REJECTED" in events[1].message and not events[0].message and np.isposinf(events[1].loss)
    adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), steps=3, progress=False)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="progress"):
        adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), steps=3, progress=True)


def test_resume_with_other_settings_is_refused(tmp_path):
    kw = dict(steps=2, checkpoint_dir=tmp_path, progress=False)
    adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), learning_rate=0.1, **kw)
    with pytest.raises(ValueError, match="learning_rate"):
        adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), learning_rate=0.2, resume=True, **kw)
    with pytest.raises(ValueError, match="seed"):
        adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), learning_rate=0.1, seed=4, resume=True, **kw)
    with pytest.raises(ValueError, match="theta0"):
        adam_train(quadratic_vg(jnp.ones(3)), jnp.zeros(3), learning_rate=0.1, resume=True, **kw)


# --------------------------------------------------------------------------- closure route


def test_train_moments_adam_lowers_the_stationary_loss():
    param, task = setup()
    res = train_moments_adam(param, task, steps=25, learning_rate=0.05, progress=False)
    assert res.n_rejected == 0 and res.steps == 25
    h = res.history["loss"]
    assert np.isfinite(h[0]) and h[-1] < 0.1 * h[0], (h[0], h[-1])
    assert not np.allclose(res.theta, param.default_theta())


def test_adam_settings_object_and_keywords():
    """Settings as an AdamSettings, keywords overriding its fields; an unknown keyword is
    a TypeError naming it."""
    param, task = setup()
    res = train_moments_adam(param, task, settings=AdamSettings(steps=5, learning_rate=0.05), steps=2)
    assert res.steps == 2
    same = train_moments_adam(param, task, steps=2, learning_rate=0.05)
    np.testing.assert_array_equal(res.theta, same.theta)
    with pytest.raises(TypeError, match="learnig_rate"):
        train_moments_adam(param, task, steps=2, learnig_rate=0.05)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(clip_norm=-1.0), "clip_norm"),
        (dict(checkpoint_every=0), "checkpoint_every"),
        (dict(max_time=-1.0), "max_time"),
        (dict(resume=True), "checkpoint_dir"),
        (dict(seed=-1), "seed"),
    ],
)
def test_adam_train_bad_arguments(kwargs, name):
    kw = dict(steps=2)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=name):
        adam_train(quadratic_vg(jnp.ones(2)), jnp.zeros(2), **kw)


def test_adam_train_bad_theta0():
    with pytest.raises(ValueError, match="theta0"):
        adam_train(quadratic_vg(jnp.ones(2)), jnp.array([0.0, jnp.nan]), steps=2)
    with pytest.raises(ValueError, match="theta0"):
        adam_train(quadratic_vg(jnp.ones(2)), jnp.array([0, 1]), steps=2)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_trials=1), "n_trials"),
        (dict(t_avg=80.0), "t_avg"),
        (dict(t_avg=0.0), "t_avg"),
        (dict(t_max=-1.0), "t_max"),
        (dict(dt=0.0), "dt"),
        (dict(dt=0.7), "dt"),
        (dict(record_stride=3), "record_stride"),
        (dict(record_stride=0), "record_stride"),
        (dict(dtype=jnp.int32), "dtype"),
    ],
)
def test_simulated_loss_bad_arguments(kwargs, name):
    param, task = setup()
    kw = dict(SIM)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=name):
        simulated_loss(param, task, **kw)
    with pytest.raises(ValueError, match=name):
        train_bptt(param, task, steps=1, **kw)


def test_task_must_fit_the_network():
    _, task = setup()
    with pytest.raises(ValueError, match="task"):
        simulated_loss(ms.get_parameterization("baseline15", m=3), task, **SIM)
    with pytest.raises(ValueError, match="task"):
        train_moments_adam(ms.get_parameterization("baseline15", m=3), task, steps=1)
