"""The Growing parameterization: its split equals split_neuron, JSON round trip,
population averages, registration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.growth.split import split_inputs, split_neuron, split_noise_factor
from momentssn.params.growing import Growing, two_population_defaults


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
    d = two_population_defaults()
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

