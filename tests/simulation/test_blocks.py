"""Tests of momentssn.simulation.blocks: trial blocks on host threads give the run of one
program (same trials, same noise), up to summation order (float64 is enabled in conftest.py)."""

import warnings
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
import momentssn.simulation.simulate as sim_mod
from momentssn.simulation import blocks
from momentssn.simulation.noise import trial_key_data
from momentssn.simulation.simulate import simulate

NET3 = ms.SSN(np.array([[0.3, -0.5, 0.2], [0.6, -0.4, 0.1], [0.2, -0.3, -0.2]]), np.array([20.0, 10.0, 15.0]),
              np.array([[0.5, 0.2, 0.1], [0.2, 0.4, -0.1], [0.1, -0.1, 0.3]]), 20.0, n_exc=1)
H3 = jnp.array([[2.0, 1.0, 1.5], [4.0, 3.0, 2.0]])  # B = 2 stimuli


def _fields(res):
    """The statistics a result carries, as float64 numpy arrays by name."""
    out = {}
    for f in ("moments", "group_moments", "n_samples", "group_n_samples", "trial_mean", "trial_var",
              "diverged", "divergence_time", "n_diverged", "first_divergence_time"):
        for i, x in enumerate(jax.tree_util.tree_leaves(getattr(res, f))):
            out[f"{f}[{i}]"] = np.asarray(x, np.float64)
    return out


def _assert_same(a, b, rtol):
    fa, fb = _fields(a), _fields(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        finite = np.abs(fa[k][np.isfinite(fa[k])])
        scale = finite.max() if finite.size else 1.0
        np.testing.assert_allclose(fa[k], fb[k], rtol=rtol, atol=rtol * scale, equal_nan=True, err_msg=k)


@pytest.fixture
def count_blocks(monkeypatch):
    """Records the number of blocks of every run that is split."""
    calls = []
    real = sim_mod.run_blocks

    def spy(cfg, n, *a):
        calls.append(n)
        return real(cfg, n, *a)

    monkeypatch.setattr(sim_mod, "run_blocks", spy)
    return calls


def test_blocks_equal_one_program_with_batch_given_states_and_float32(count_blocks):
    rng = np.random.default_rng(0)
    u0 = rng.normal(size=(2, 8, 3))  # per stimulus and trial
    eta0 = 0.3 * rng.normal(size=(8, 3))  # per trial
    kw = dict(burn_in=30.0, u0=u0, eta0=eta0, dtype=jnp.float64)
    one = simulate(NET3, H3, 150.0, 0.5, 8, 3, threads=1, **kw)
    assert count_blocks == []
    for th, nb in ((2, 2), (3, 2), (8, 8)):  # blocks hold whole groups: the largest divisor of G = 8
        _assert_same(simulate(NET3, H3, 150.0, 0.5, 8, 3, threads=th, **kw), one, 1e-11)
        assert count_blocks[-1] == nb
    # float32 (the default dtype), groups given
    one32 = simulate(NET3, H3, 150.0, 0.5, 8, 3, threads=1, burn_in=30.0, n_groups=4)
    _assert_same(simulate(NET3, H3, 150.0, 0.5, 8, 3, threads=2, burn_in=30.0, n_groups=4), one32, 2e-5)


def _bistable():
    """One E neuron: tau du/dt = -u + 0.3 u^2 + noise: stable at 0, unstable at 3.33 mV."""
    return ms.SSN(np.array([[1.0]]), np.array([20.0]), np.array([[0.01]]), 20.0, n_exc=1)


def test_blocks_with_diverging_trials_and_a_block_that_lost_every_trial(count_blocks):
    u0 = np.array([0.0, 6.0, 0.0, 0.0, 6.0, 6.0, 6.0, 6.0])[:, None]  # block 2 of 4: all diverge
    kw = dict(burn_in=20.0, dtype=jnp.float64, u0=u0)
    with pytest.warns(RuntimeWarning, match="5 of 8 trials diverged"):
        one = simulate(_bistable(), jnp.zeros(1), 200.0, 0.5, 8, 5, threads=1, **kw)
    for th in (2, 4):
        with pytest.warns(RuntimeWarning, match="5 of 8 trials diverged"):
            _assert_same(simulate(_bistable(), jnp.zeros(1), 200.0, 0.5, 8, 5, threads=th, **kw), one, 1e-11)
    assert count_blocks == [2, 4]
    assert int(one.n_diverged) == 5 and int(one.n_samples) == 3 * 360


def test_traced_records_and_defaults_stay_one_program(count_blocks):
    kw = dict(burn_in=30.0, dtype=jnp.float64)
    ref = simulate(NET3, H3[0], 150.0, 0.5, 8, 3, threads=1, **kw)

    def f(h):
        return simulate(NET3, h, 150.0, 0.5, 8, 3, threads=2, **kw).moments.mean

    np.testing.assert_allclose(jax.jit(f)(H3[0]), ref.moments.mean, rtol=1e-12)
    rec = simulate(NET3, H3[0], 150.0, 0.5, 8, 3, threads=2, record_stride=50, **kw)
    np.testing.assert_allclose(rec.moments.mean, ref.moments.mean, rtol=1e-12)
    simulate(NET3, H3[0], 150.0, 0.5, 8, 3, **kw)  # small run, default: one program
    assert count_blocks == []


def test_a_block_draws_the_noise_its_trials_have_in_the_whole_run():
    key = jax.random.key(11)
    whole = np.asarray(trial_key_data(key, 12))
    np.testing.assert_array_equal(np.asarray(trial_key_data(key, 4, jnp.int32(8))), whole[8:])


def test_number_of_blocks():
    cpu, gpu = [SimpleNamespace(platform="cpu")], [SimpleNamespace(platform="gpu")]
    big, small = blocks.AUTO_MIN_WORK, blocks.AUTO_MIN_WORK - 1
    assert blocks.n_blocks(2, 32, small, cpu, False) == 2  # asked for: split whatever the size
    assert blocks.n_blocks(3, 32, small, cpu, False) == 2  # whole groups: a divisor of G
    assert blocks.n_blocks(4, 6, small, cpu, False) == 3
    assert blocks.n_blocks(2, 1, big, cpu, False) == 1  # one group
    assert blocks.n_blocks(None, 32, small, cpu, False) == 1  # default: small runs stay one program
    assert blocks.n_blocks(None, 32, big, cpu, False) == blocks.largest_divisor_leq(32, blocks.cpu_cores())
    assert blocks.n_blocks(2, 32, big, gpu, False) == 1 and blocks.n_blocks(2, 32, big, cpu, True) == 1
    assert blocks.cpu_cores() >= 1


def test_progress_and_argument_errors():
    events = []
    kw = dict(burn_in=2.0, chunk_steps=10, dtype=jnp.float64)
    jax.block_until_ready(simulate(NET3, H3[0], 10.0, 0.5, 4, 0, threads=2, progress=events.append, **kw).moments)
    jax.effects_barrier()
    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]  # block 0 reports for the run
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="threads must be None or an integer >= 1"):
            with warnings.catch_warnings():
                simulate(NET3, H3[0], 10.0, 0.5, 4, 0, threads=bad, **kw)
