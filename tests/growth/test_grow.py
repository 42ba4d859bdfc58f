"""grow reaches the full size under Dale's law with neutral splits, trains with the
default BPTT trainer, resumes from its checkpoints and reports unstable stages."""

from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.growth.grow import CHECKPOINT_NAME, grow, stable_initial_theta
from momentssn.growth.split import split_neuron


class _Recorder:
    """A deterministic stand-in trainer: a fixed small step of every parameter (seeded),
    recording what it was given (the network right after each split)."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def __call__(self, param, task, theta, n_steps, seed):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        assert task.n_net == param.N and task.n_targets == param.n_e
        self.calls.append((param, np.asarray(theta), task))
        step = 0.02 * np.random.default_rng(seed).normal(size=theta.shape)
        return jnp.asarray(theta) + n_steps * step


def test_grow_reaches_full_size_neutrally_under_dale(tiny_task, tmp_path):
    rec = _Recorder()
    res = grow(tiny_task, sizes=[(1, 1), (3, 3)], steps_per_stage=[1, 1], train_fn=rec,
               checkpoint_dir=tmp_path, progress=False)
    assert (res.param.n_e, res.param.n_i) == (3, 3) and res.net.N == 6 and res.net.n_exc == 3
    assert sorted(res.targets) == [0, 1, 2] and sorted(res.i_cells) == [0, 1, 2]
    np.testing.assert_array_equal(res.task.target_mean, tiny_task.target_mean[:, list(res.targets)])
    assert [(s.n_e, s.n_i) for s in res.stages] == [(1, 1), (3, 3)]
    assert all(s.stable and np.isfinite(s.loss) and s.max_real_eig < 0 for s in res.stages)
    assert [p for p, _, _ in res.stages[0].splits] == ["E", "E", "I", "I"] and res.stages[1].splits == ()
    # every network handed to training respects Dale's law; the one of stage 1 is the
    # exact split of the one stage 0 ended with (the splits are neutral)
    for param, theta, _ in rec.calls:
        assert param.network(jnp.asarray(theta)).satisfies_dale()
    p0, th0, _ = rec.calls[0]
    end0 = p0.network(jnp.asarray(th0) + 0.02 * np.random.default_rng(0).normal(size=th0.shape))
    for _, i, _ in res.stages[0].splits:
        end0 = split_neuron(end0, i)
    p1, th1, task1 = rec.calls[1]
    start1 = p1.network(jnp.asarray(th1))
    np.testing.assert_allclose(start1.W, end0.W, rtol=1e-13, atol=0)
    np.testing.assert_allclose(start1.noise_cov, end0.noise_cov, rtol=1e-12, atol=1e-13)
    assert res.net.satisfies_dale()
    assert (tmp_path / CHECKPOINT_NAME).exists()


def test_grow_default_trainer_is_bptt_from_momentssn_train(tiny_task):
    """The default train_fn is momentssn.training.adam.train_bptt on the Growing parameterization
    (tiny simulations; only the first stage trains, to keep the test fast)."""
    sim = dict(n_trials=4, t_max=20.0, t_avg=10.0, dt=0.5)
    res = grow(tiny_task, sizes=[(1, 1), (3, 3)], steps_per_stage=[2, 0], train_options=sim, progress=False)
    hist = res.stages[0].train_history
    assert hist is not None and len(hist["loss"]) == 2 and np.all(np.isfinite(hist["loss"]))
    assert all(hist["accepted"]) and min(hist["grad_norm"]) > 0
    assert res.stages[1].steps == 0 and res.stages[1].train_history is None
    assert all(s.stable for s in res.stages) and res.net.satisfies_dale()


def test_grow_resumes_from_its_checkpoint(tiny_task, tmp_path):
    kw = dict(sizes=[(1, 1), (3, 3)], steps_per_stage=1, split_policy="round_robin", progress=False)
    with pytest.raises(KeyboardInterrupt):
        grow(tiny_task, train_fn=_Recorder(fail_at=1), checkpoint_dir=tmp_path, **kw)
    rec = _Recorder()
    resumed = grow(tiny_task, train_fn=rec, checkpoint_dir=tmp_path, resume=True, **kw)
    assert len(rec.calls) == 1  # only the last stage was trained again
    straight = grow(tiny_task, train_fn=_Recorder(), **kw)
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    assert resumed.targets == straight.targets and resumed.i_cells == straight.i_cells
    assert [s.splits for s in resumed.stages] == [s.splits for s in straight.stages]
    assert [s.loss for s in resumed.stages] == [s.loss for s in straight.stages]
    loaded = ms.load(tmp_path)  # the finished growth's checkpoint loads back as its network
    assert loaded.kind == "growth" and loaded.net.N == 6
    np.testing.assert_array_equal(np.asarray(loaded.theta), resumed.theta)


def test_grow_reports_progress_and_refuses_to_resume_from_nothing(tiny_task, tmp_path):
    """Progress goes to the callback (one event per stage, one on resume), never to
    stdout; resume=True in a folder without a checkpoint names the folder."""
    kw = dict(sizes=[(1, 1), (3, 3)], steps_per_stage=0, split_policy="round_robin")
    events = []
    grow(tiny_task, train_fn=_Recorder(), checkpoint_dir=tmp_path / "run", progress=events.append, **kw)
    assert [(e.task, e.step, e.total) for e in events] == [("growth", 1, 2), ("growth", 2, 2)]
    assert "3 E + 3 I" in events[-1].message and events[-1].loss > 0
    events.clear()
    grow(tiny_task, train_fn=_Recorder(), checkpoint_dir=tmp_path / "run", resume=True, progress=events.append,
         **kw)
    assert len(events) == 1 and "resumed" in events[0].message and events[0].step == 2
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match=str(empty)):
        grow(tiny_task, train_fn=_Recorder(), checkpoint_dir=empty, resume=True, **kw)
    with pytest.raises(ValueError, match="progress"):
        grow(tiny_task, train_fn=_Recorder(), progress=True, **kw)


def test_grow_resumes_inside_a_stage_from_the_trainer_checkpoint(tiny_task, tmp_path):
    """With a built-in trainer every stage's training checkpoints into stage_<s>: a run
    interrupted mid-stage goes on from there and ends bit-identical to a straight run."""
    from momentssn.training.adam import load_checkpoint

    sim = dict(n_trials=4, t_max=20.0, t_avg=10.0, dt=0.5, checkpoint_every=1)
    kw = dict(sizes=[(1, 1), (3, 3)], steps_per_stage=[4, 0], progress=False)

    def interrupt(t, theta, loss, aux):
        if t == 2:
            raise KeyboardInterrupt("simulated interruption")
        return False

    with pytest.raises(KeyboardInterrupt):
        grow(tiny_task, train_options=dict(sim, callback=interrupt), checkpoint_dir=tmp_path, **kw)
    assert not (tmp_path / CHECKPOINT_NAME).exists() and load_checkpoint(tmp_path / "stage_0")["step"] == 2
    resumed = grow(tiny_task, train_options=sim, checkpoint_dir=tmp_path, resume=True, **kw)
    straight = grow(tiny_task, train_options=sim, **kw)
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    assert resumed.stages[0].train_history["step"] == [0, 1, 2, 3]
    assert resumed.stages[0].train_history["loss"] == straight.stages[0].train_history["loss"]
    with pytest.raises(ValueError, match="must not set 'checkpoint_dir'"):
        grow(tiny_task, train_options=dict(sim, checkpoint_dir=tmp_path), **kw)


def test_grow_reports_an_unstable_stage(tiny_task, tmp_path):
    """A trainer that makes the network unstable: recorded (stable=False, loss inf) with a
    warning, and the (neutral) split keeps it unstable."""

    def explode(param, task, theta, n_steps, seed):
        a, b, f = param.slices()["w_abs"]
        logw = theta[a:b].reshape(f.shape).at[:, : param.n_e].add(np.log(20.0))  # 20x excitation
        return theta.at[a:b].set(logw.ravel())

    kw = dict(sizes=[(1, 1), (3, 3)], steps_per_stage=[1, 0], train_fn=explode, checkpoint_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="not stable"):
        res = grow(tiny_task, progress=False, **kw)
    assert [s.stable for s in res.stages] == [False, False]
    assert res.stages[0].loss == np.inf and res.net.satisfies_dale() and res.net.N == 6
    # the checkpoint (strict JSON: inf is written as null) reads back inf
    done = grow(tiny_task, resume=True, **kw)
    assert [s.loss for s in done.stages] == [np.inf, np.inf]
    np.testing.assert_array_equal(done.theta, res.theta)


def test_unstable_initialization_raises_after_a_few_attempts(tiny_task):
    with pytest.raises(ms.UnstableNetworkError, match="no stable 1 E \\+ 1 I initialization in 2 attempts"):
        stable_initial_theta(tiny_task, d_noise=2, constants={"tau_i": 1000.0}, max_attempts=2)
    with pytest.raises(ValueError, match="max_attempts"):
        stable_initial_theta(tiny_task, d_noise=2, max_attempts=0)
    with pytest.raises(ValueError, match="e_cell"):
        stable_initial_theta(tiny_task, d_noise=2, e_cell=3)


def test_grow_validates_arguments(tiny_task, tmp_path):
    bad = [
        (dict(n_exc=4), "n_exc"),
        (dict(n_inh=0), "n_inh"),
        (dict(sizes=[(1, 1), (1, 1), (3, 3)]), "sizes"),
        (dict(sizes=[(2, 2), (3, 3)]), "sizes"),
        (dict(split_policy="biggest"), "split_policy"),
        (dict(target_order=[0, 0, 1]), "target_order"),
        (dict(steps_per_stage=-1), "steps_per_stage"),
        (dict(steps_per_stage=[1]), "steps_per_stage"),
        (dict(train_fn="sgd"), "train_fn"),
        (dict(d_noise=0), "d_noise"),
        (dict(resume=True), "resume"),
    ]
    for kw, name in bad:
        with pytest.raises(ValueError, match=name):
            grow(tiny_task, progress=False, **kw)
    with pytest.raises(ValueError, match="task must"):
        grow("default")


def test_grow_checkpoint_keeps_training_histories_exactly(tiny_task, tmp_path):
    """Histories (NaN and inf included) read back from the checkpoint equal the ones
    the trainer reported."""

    def train(param, task, theta, n_steps, seed):
        hist = {"step": np.arange(n_steps), "loss": np.r_[np.nan, np.inf, 0.5 + seed][:n_steps],
                "accepted": np.arange(n_steps) > 1, "note": ["x"] * n_steps}
        return SimpleNamespace(theta=theta, history=hist, steps=n_steps)

    kw = dict(sizes=[(1, 1), (3, 3)], steps_per_stage=3, train_fn=train, checkpoint_dir=tmp_path)
    first = grow(tiny_task, **kw)
    again = grow(tiny_task, resume=True, **kw)
    for a, b in zip(first.stages, again.stages):
        np.testing.assert_array_equal(b.train_history["loss"], a.train_history["loss"])
        assert {k: v for k, v in b.train_history.items() if k != "loss"} == \
            {k: v for k, v in a.train_history.items() if k != "loss"}
    assert np.isnan(again.stages[0].train_history["loss"][0]) and again.stages[1].train_history["loss"][1] == np.inf
    assert again.stages[0].train_history["accepted"] == [False, False, True]
