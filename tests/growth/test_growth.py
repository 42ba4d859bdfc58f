"""Dynamics-neutral growth: split_neuron leaves the old cells' moments and trajectories
unchanged, the published (incoming-halving) variant does not, the parameter-level split
matches the network-level one, and grow reaches the full size under Dale's law."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.growth.grow import grow as growth
from momentssn.growth.grow import (
    Growing,
    SplitContext,
    duplication_index,
    grow,
    growth_sizes,
    split_inputs,
    split_moments,
    split_neuron,
    split_noise_factor,
)
from momentssn.networks import random_ei_network
from momentssn.tasks import Task

N0 = 6  # 3 E + 3 I: also the final size of the growth runs below (shared compilations)
E_SPLIT, I_SPLIT = 1, 4


@pytest.fixture(scope="module")
def net6():
    return random_ei_network(N0, seed=2)


@pytest.fixture(scope="module")
def h6():
    return jnp.asarray(np.stack([np.linspace(2.0, 6.0, N0), np.linspace(6.0, 2.0, N0)]))


@pytest.fixture(scope="module")
def tiny_task():
    """3 targets, 2 stimuli, E and I cells get the same raw input (like the published task)."""
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.0, 1.5, size=(2, 3))
    A = rng.normal(size=(3, 3)) * 0.3
    cov = np.stack([1.5 * np.eye(3) + 0.2 * A @ A.T, 1.0 * np.eye(3) + 0.1 * A @ A.T])
    return Task(inputs=np.concatenate([raw, raw], axis=1), target_mean=3.0 + raw, target_cov=cov,
                n_exc=3, name="tiny")


def _old_cells(N, i):
    """Positions of the original cells in the split network (all but the copy i+1)."""
    return np.r_[0 : i + 1, i + 2 : N + 1]


# --------------------------------------------------------------------------- network level


def test_duplication_index_is_P():
    src = duplication_index(4, 1)
    np.testing.assert_array_equal(src, [0, 1, 1, 2, 3])
    P = np.eye(4)[src]  # (5, 4): row 2 = row 1
    A = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(A[src][:, src], P @ A @ P.T)


@pytest.mark.parametrize("i", [E_SPLIT, I_SPLIT], ids=["E", "I"])
def test_split_neuron_structure_and_dale(net6, i):
    big = split_neuron(net6, i)
    N = N0
    is_e = i < net6.n_exc
    assert big.N == N + 1 and big.n_exc == net6.n_exc + int(is_e)
    assert big.satisfies_dale() and net6.satisfies_dale()
    W, W2 = np.asarray(net6.W), np.asarray(big.W)
    old = _old_cells(N, i)
    # incoming rows copied, outgoing column of i split in two halves, the rest untouched
    np.testing.assert_array_equal(W2[i + 1], W2[i])
    np.testing.assert_array_equal(W2[:, i], W2[:, i + 1])
    np.testing.assert_array_equal(W2[old][:, i] + W2[old][:, i + 1], W[:, i])
    others = [a for a in old if a != i]
    np.testing.assert_array_equal(W2[np.ix_(old, others)], np.delete(W, i, axis=1))
    np.testing.assert_array_equal(np.asarray(big.tau)[[i, i + 1]], np.asarray(net6.tau)[[i, i]])
    S2 = np.asarray(big.noise_cov)
    np.testing.assert_array_equal(S2[np.ix_(old, old)], np.asarray(net6.noise_cov))
    np.testing.assert_array_equal(S2[i + 1], S2[i])  # duplicated row/col: correlation 1
    assert float(big.tau_noise) == float(net6.tau_noise) and float(big.k) == float(net6.k)
    # the summed input every cell receives from the pair equals what i sent before
    r = np.abs(np.random.default_rng(1).normal(size=N))
    np.testing.assert_allclose(W2 @ r[duplication_index(N, i)], (W @ r)[duplication_index(N, i)],
                               rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("i", [E_SPLIT, I_SPLIT], ids=["E", "I"])
def test_split_neuron_leaves_closure_moments_unchanged(net6, h6, i):
    m = ms.stationary_moments(net6, h6)
    big = split_neuron(net6, i).replace(n_exc=None)  # n_exc is irrelevant to the closure
    m2 = ms.stationary_moments(big, split_inputs(h6, i))
    old = _old_cells(N0, i)
    np.testing.assert_allclose(m2.mean[:, old], m.mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m2.cov[:, old][:, :, old], m.cov, rtol=0, atol=1e-9)
    # the copy equals the original: same mean, same covariances, correlation 1 with it
    np.testing.assert_allclose(m2.mean[:, i + 1], m2.mean[:, i], rtol=0, atol=1e-9)
    np.testing.assert_allclose(m2.cov[:, i + 1, :], m2.cov[:, i, :], rtol=0, atol=1e-9)
    np.testing.assert_allclose(m2.cov[:, i, i + 1], m.cov[:, i, i], rtol=0, atol=1e-9)
    pred = split_moments(m, i)
    np.testing.assert_allclose(m2.mean, pred.mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m2.cov, pred.cov, rtol=0, atol=1e-9)


def test_published_variant_halving_incoming_weights_is_not_neutral(net6, h6):
    """Halve the copies' incoming weights and copy the outgoing ones (the published
    growth code): the old cells' moments change a lot, so the tests above can fail."""
    i = E_SPLIT
    src = duplication_index(N0, i)
    W = np.asarray(net6.W)[src][:, src]
    W[[i, i + 1], :] *= 0.5
    wrong = split_neuron(net6, i).replace(W=W, n_exc=None)
    m = ms.stationary_moments(net6, h6)
    m3 = ms.stationary_moments(wrong, split_inputs(h6, i))
    old = _old_cells(N0, i)
    assert np.max(np.abs(np.asarray(m3.mean[:, old] - m.mean))) > 0.1
    assert np.max(np.abs(np.asarray(m3.cov[:, old][:, :, old] - m.cov))) > 0.01


def test_split_neuron_leaves_simulated_trajectories_unchanged(net6):
    """Same seed, noise factors L and P L: every old cell follows the same path (float64)
    and the copy follows its original exactly."""
    h = jnp.linspace(2.0, 6.0, N0)
    L = np.linalg.cholesky(np.asarray(net6.noise_cov))
    kw = dict(burn_in=0.0, dtype=jnp.float64, return_trajectories=True, progress=False)
    ref = ms.simulate(net6, h, 40.0, 0.5, 3, 7, noise_factor=L, **kw)
    U = np.asarray(ref.trajectories)  # (trials, T, N)
    assert np.all(np.isfinite(U)) and np.std(U) > 0.1  # a real stochastic run
    for i in (E_SPLIT, I_SPLIT):
        big = split_neuron(net6, i).replace(n_exc=None)  # one compilation for both splits
        sim = ms.simulate(big, split_inputs(h, i), 40.0, 0.5, 3, 7, noise_factor=split_noise_factor(L, i), **kw)
        U2 = np.asarray(sim.trajectories)
        np.testing.assert_allclose(U2[..., _old_cells(N0, i)], U, rtol=0, atol=1e-9)
        np.testing.assert_allclose(U2[..., i + 1], U2[..., i], rtol=0, atol=1e-9)


def test_split_helpers_validate_arguments(net6):
    for bad in (N0, -1, 1.0, True, "1"):
        with pytest.raises(ValueError, match="i must"):
            split_neuron(net6, bad)
    with pytest.raises(ValueError, match="net must be an SSN"):
        split_neuron(np.eye(2), 0)
    with pytest.raises(ValueError, match="h must"):
        split_inputs(1.0, 0)
    with pytest.raises(ValueError, match="L must"):
        split_noise_factor(np.ones(3), 0)
    with pytest.raises(ValueError, match="moments.cov"):
        split_moments(ms.Moments(jnp.zeros(3), jnp.zeros((2, 2))), 0)
    with pytest.raises(ValueError, match="i must"):
        split_inputs(jnp.ones(3), 3)
    # a network without an E/I split stays without one
    assert split_neuron(net6.replace(n_exc=None), 0).n_exc is None


# --------------------------------------------------------------------------- parameter level


def test_parameter_level_split_equals_split_neuron():
    param = Growing(n_e=2, n_i=2, d_noise=5)
    theta = param.random_theta(jax.random.PRNGKey(3), scale=0.3)  # G, L, W all generic
    h_raw = jnp.asarray(np.random.default_rng(4).uniform(0.0, 2.0, size=(3, 4)))
    for i in range(param.N):
        p2, th2 = param.split(theta, i)
        assert (p2.n_e, p2.n_i) == ((3, 2) if i < 2 else (2, 3)) and th2.shape == (p2.size,)
        a, b = p2.network(th2), split_neuron(param.network(theta), i)
        assert a.n_exc == b.n_exc and a.satisfies_dale()
        np.testing.assert_allclose(a.W, b.W, rtol=1e-14, atol=0)
        np.testing.assert_array_equal(a.tau, b.tau)
        np.testing.assert_allclose(a.noise_cov, b.noise_cov, rtol=1e-13, atol=1e-14)
        np.testing.assert_array_equal(p2.noise_factor(th2), split_noise_factor(param.noise_factor(theta), i))
        # the copy's own raw input is ignored by G' (weight 0) until training changes it
        h2 = split_inputs(h_raw, i).at[:, i + 1].set(jnp.array([7.0, -3.0, 11.0]))
        np.testing.assert_allclose(p2.inputs(th2, h2), split_inputs(param.inputs(theta, h_raw), i),
                                   rtol=1e-14, atol=1e-14)
    # traceable in theta (under jit, same numbers)
    np.testing.assert_array_equal(jax.jit(lambda t: param.split(t, 3)[1])(theta), th2)
    with pytest.raises(ValueError, match="theta must have shape"):
        param.split(jnp.zeros(3), 0)
    with pytest.raises(ValueError, match="i must"):
        param.split(theta, 4)
    with pytest.raises(ValueError, match="n_e must"):
        Growing(n_e=0)
    with pytest.raises(ValueError, match="d_noise must"):
        Growing(d_noise=1.5)
    with pytest.raises(ValueError, match="h_raw must"):
        param.inputs(theta, jnp.ones((2, 3)))


def test_growing_json_round_trip_and_population_averages():
    param = Growing(n_e=3, n_i=2, d_noise=4)
    theta = param.to_theta(param.init_params(seed=1, scale=0.0))
    net = param.network(theta)
    W = np.asarray(net.W)
    d = growth._two_population_defaults()
    # summed weights per population are Baseline15's at any size
    np.testing.assert_allclose(W[:3, :3].sum(1), d["w_ee"], rtol=1e-12)
    np.testing.assert_allclose(W[3:, 3:].sum(1), -d["w_ii"], rtol=1e-12)
    np.testing.assert_allclose(np.diag(np.asarray(net.noise_cov)), [3.01] * 3 + [1.51] * 2, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(net.tau), [20.0] * 3 + [10.0] * 2)
    np.testing.assert_array_equal(param.from_json(param.to_json(theta)), theta)
    # the document names its parameterization: it is rebuilt from the JSON alone
    param2, theta2 = ms.parameterization_from_json(param.to_json(theta))
    assert param2 == param and ms.get_parameterization("Growing", n_e=3, n_i=2, d_noise=4) == param
    np.testing.assert_array_equal(theta2, theta)


def test_register_parameterization_checks_its_argument():
    with pytest.raises(ValueError, match="cls must be a Parameterization subclass"):
        ms.register_parameterization(dict)

    class Impostor(ms.Ring):
        kind = "growing"

    with pytest.raises(ValueError, match="'growing' is already registered for Growing"):
        ms.register_parameterization(Impostor)


# --------------------------------------------------------------------------- policies


def _ctx(population, candidates, net, moments, targets, new_target=None, e_parent=None, count=0, task=None):
    return SplitContext(population, tuple(candidates), net, moments, tuple(targets), new_target, e_parent,
                        count, np.random.default_rng(0), task)


def test_split_policies_pick_the_documented_cell(net6):
    task = Task(inputs=np.zeros((1, 6)), target_mean=np.array([[3.0, 9.0, 5.0]]),
                target_cov=np.eye(3)[None], n_exc=3)
    mom = ms.Moments(jnp.asarray([[3.0, 5.2, 7.0, 1.0, 1.0, 1.0]]), jnp.eye(6)[None])
    # E cells have targets (0, 1, 2) = means (3, 9, 5): cell 1 is furthest off (5.2 vs 9)
    ctx = _ctx("E", range(3), net6, mom, (0, 1, 2), new_target=2, task=task)
    assert growth._POLICIES["largest_error"](ctx) == 1
    # the new target is 5 (dimension 2): cell 1 (mean 5.2) is the nearest
    assert growth._POLICIES["nearest_target"](ctx) == 1
    assert growth._POLICIES["round_robin"](ctx._replace(count=4)) == 1
    assert growth._POLICIES["random"](ctx) in (0, 1, 2)
    # I splits copy the strongest inhibitor of the E cell split in this stage
    W = np.asarray(net6.W)
    ctx_i = _ctx("I", range(3, 6), net6, mom, (0, 1, 2), e_parent=2, task=task)
    assert growth._POLICIES["largest_error"](ctx_i) == 3 + int(np.argmax(np.abs(W[2, 3:])))
    # without moments (unstable network) the error-based policies fall back to round robin
    assert growth._POLICIES["nearest_target"](ctx._replace(moments=None, count=2)) == 2


def test_growth_sizes_schedule():
    assert growth_sizes(3, 3) == [(1, 1), (2, 2), (3, 3)]
    assert growth_sizes(4, 2) == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert growth_sizes(1, 3) == [(1, 1), (1, 3)]
    for ne, ni in ((5, 3), (2, 7), (50, 50)):
        s = growth_sizes(ne, ni)
        assert s[0] == (1, 1) and s[-1] == (ne, ni)
        assert all(b[0] >= a[0] and b[1] >= a[1] and b != a for a, b in zip(s, s[1:]))


# --------------------------------------------------------------------------- grow


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
    assert (tmp_path / "growth.json").exists()


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
    assert not (tmp_path / "growth.json").exists() and load_checkpoint(tmp_path / "stage_0")["step"] == 2
    resumed = grow(tiny_task, train_options=sim, checkpoint_dir=tmp_path, resume=True, **kw)
    straight = grow(tiny_task, train_options=sim, **kw)
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    assert resumed.stages[0].train_history["step"] == [0, 1, 2, 3]
    assert resumed.stages[0].train_history["loss"] == straight.stages[0].train_history["loss"]
    with pytest.raises(ValueError, match="must not set 'checkpoint_dir'"):
        grow(tiny_task, train_options=dict(sim, checkpoint_dir=tmp_path), **kw)


def test_grow_reports_an_unstable_stage(tiny_task):
    """A trainer that makes the network unstable: recorded (stable=False, loss inf) with a
    warning, and the (neutral) split keeps it unstable."""

    def explode(param, task, theta, n_steps, seed):
        a, b, f = param._slices()["w_abs"]
        logw = theta[a:b].reshape(f.shape).at[:, : param.n_e].add(np.log(20.0))  # 20x excitation
        return theta.at[a:b].set(logw.ravel())

    with pytest.warns(RuntimeWarning, match="not stable"):
        res = grow(tiny_task, sizes=[(1, 1), (3, 3)], steps_per_stage=[1, 0], train_fn=explode, progress=False)
    assert [s.stable for s in res.stages] == [False, False]
    assert res.stages[0].loss == np.inf and res.net.satisfies_dale() and res.net.N == 6


def test_unstable_initialization_raises_after_a_few_attempts(tiny_task):
    with pytest.raises(ms.UnstableNetworkError, match="no stable 1 E \\+ 1 I initialization in 2 attempts"):
        growth.stable_initial_theta(tiny_task, d_noise=2, constants={"tau_i": 1000.0}, max_attempts=2)
    with pytest.raises(ValueError, match="max_attempts"):
        growth.stable_initial_theta(tiny_task, d_noise=2, max_attempts=0)
    with pytest.raises(ValueError, match="e_cell"):
        growth.stable_initial_theta(tiny_task, d_noise=2, e_cell=3)


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
