"""Stage trainers of growth (momentssn.growth.trainers): closure, BPTT and the closure
then BPTT, on the 1 E + 1 I stage of the tiny task."""

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.growth.grow import stable_initial_theta
from momentssn.growth.schedule import subtask
from momentssn.growth.trainers import STAGE_TRAINERS, BPTTStage, ClosureStage, ClosureThenBPTT, closure_stable

SIM = dict(n_trials=4, t_max=20.0, t_avg=10.0, dt=0.5)  # as test_grow's BPTT stage (shared compilation)


@pytest.fixture(scope="module")
def stage(tiny_task):
    param, theta = stable_initial_theta(tiny_task, d_noise=6)  # d_noise as grow's default for 3 + 3
    return param, theta, subtask(tiny_task, [0], [0])


def test_closure_then_bptt_joins_the_two_phases(stage, tmp_path):
    param, theta, sub = stage
    seen = {}  # steps each trainer reported to its callback

    def spy(name):
        return lambda t, theta, loss, aux: seen.setdefault(name, []).append(int(t))

    res = ClosureThenBPTT()(param, sub, theta, 2, 0, sim=SIM, checkpoint_dir=tmp_path, callback=spy("both"))
    h = res.history
    assert res.steps == 4 and h["step"] == [0, 1, 2, 3] and all(h["accepted"])
    assert seen["both"] == [0, 1, 2, 3]  # numbered over the stage, as its history
    assert np.all(np.diff(h["wall_time_s"]) >= 0) and res.wall_time_s >= h["wall_time_s"][-1]
    # phase 1 is the closure: its first loss is the closure loss of the start
    net, hin = param.network(theta), param.inputs(theta, jnp.asarray(sub.inputs))
    closure0 = ms.network_closure_loss(net, hin, sub.target_mean, sub.target_cov).loss
    assert h["loss"][0] == pytest.approx(closure0, rel=1e-8)
    # phase 2 is BPTT from where the closure ended: the same as BPTT alone from there
    first = ClosureStage()(param, sub, theta, 2, 0, callback=spy("closure"))
    second = BPTTStage()(param, sub, first.theta, 2, 0, sim=SIM, callback=spy("bptt"))
    assert seen["closure"] == seen["bptt"] == [0, 1]
    np.testing.assert_allclose(res.theta, second.theta, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(h["loss"][2:], second.history["loss"], rtol=1e-5)
    assert not np.allclose(res.theta, first.theta)
    # resuming a finished stage goes on from the BPTT checkpoint (nothing left to do)
    again = ClosureThenBPTT()(param, sub, theta, 2, 0, sim=SIM, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(again.theta, res.theta)


def test_closure_stage_lowers_the_closure_loss(stage):
    param, theta, sub = stage
    res = STAGE_TRAINERS["closure"](param, sub, theta, 6, 0, sim=SIM)
    net, hin = param.network(jnp.asarray(res.theta)), param.inputs(jnp.asarray(res.theta), jnp.asarray(sub.inputs))
    assert ms.network_closure_loss(net, hin, sub.target_mean, sub.target_cov).loss < res.history["loss"][0]


def test_closure_fraction_is_checked(stage):
    param, theta, sub = stage
    with pytest.raises(ValueError, match="closure_fraction"):
        ClosureThenBPTT(closure_fraction=1.0)(param, sub, theta, 1, 0, sim=SIM, max_time=1.0)


def test_closure_then_bptt_skips_the_closure_where_it_is_unstable(stage):
    """A start without a stable closure fixed point (E -> E weights x 30) goes straight
    to BPTT: the same result as BPTT alone."""
    param, theta, sub = stage
    parts = param.theta_parts(theta)
    hot = param.theta_from_parts(dict(parts, w_abs=parts["w_abs"].at[0, 0].add(np.log(30.0))))
    assert closure_stable(param, sub, theta) and not closure_stable(param, sub, hot)
    res = ClosureThenBPTT()(param, sub, hot, 2, 0, sim=SIM)
    alone = BPTTStage()(param, sub, hot, 2, 0, sim=SIM)
    assert res.steps == 2
    np.testing.assert_array_equal(res.theta, alone.theta)
