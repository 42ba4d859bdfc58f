"""The split algebra: split_neuron leaves the old cells' moments and trajectories
unchanged, and the published (incoming-halving) variant does not."""

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.growth.split import (
    duplication_index,
    split_inputs,
    split_moments,
    split_neuron,
    split_noise_factor,
)

N0 = 6  # the size of the conftest network net6
E_SPLIT, I_SPLIT = 1, 4


def _old_cells(N, i):
    """Positions of the original cells in the split network (all but the copy i+1)."""
    return np.r_[0 : i + 1, i + 2 : N + 1]



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

