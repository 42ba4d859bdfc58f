"""The ring parameterizations: sizes, valid SSNs, formulas, shared defaults."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.params.base import get_parameterization
from momentssn.params.ring import (
    BASELINE15_DEFAULTS,
    Baseline15,
    General,
    Ring,
    symmetric_circulant,
)

BASELINE_NAMES = (
    "a_ee d_ee a_ei d_ei a_ie d_ie a_ii d_ii var_e var_i ell_eta rho in_a in_b in_p".split()
)
KINDS = ("baseline15", "ring", "general")
M_SMALL = 4


def test_sizes_and_names(params50):
    assert params50["baseline15"].size == 15
    assert params50["ring"].size == 211
    assert params50["general"].size == 20003
    assert list(params50["baseline15"].names) == BASELINE_NAMES
    assert params50["ring"].shapes["w_ee"] == (26,)
    assert params50["general"].shapes["w_abs"] == (100, 100)
    for p in params50.values():
        assert p.names[-3:] == ("in_a", "in_b", "in_p")
        assert p.default_theta().shape == (p.size,)
    assert Ring(m=7).size == 8 * 4 + 3  # odd m: half-row of m // 2 + 1
    with pytest.raises(ValueError, match="unknown parameterization"):
        get_parameterization("nope")


def _check_valid(param, net):
    m, N = param.m, param.N
    assert isinstance(net, ms.SSN)
    assert net.W.shape == (N, N) and net.noise_cov.shape == (N, N) and net.n_exc == m
    np.testing.assert_array_equal(np.asarray(net.tau), [20.0] * m + [10.0] * m)
    assert float(net.tau_noise) == 20.0 and float(net.k) == 0.3 and float(net.n) == 2.0
    W = np.asarray(net.W)
    assert np.all(W[:, :m] >= 0) and np.all(W[:, m:] <= 0)  # Dale
    S = np.asarray(net.noise_cov)
    np.testing.assert_array_equal(S, S.T)
    assert np.linalg.eigvalsh(S).min() >= -1e-12 * np.abs(S).max()


@pytest.mark.parametrize("kind", KINDS)
def test_valid_networks_default_and_random(kind, params50, default_thetas):
    param = params50[kind]
    _check_valid(param, param.network(default_thetas[kind]))
    for seed in (0, 1):
        _check_valid(param, param.network(param.random_theta(seed, scale=0.5)))
    theta = param.random_theta(jax.random.PRNGKey(3), scale=0.1)
    assert float(jnp.max(jnp.abs(theta - default_thetas[kind]))) < 1.0



def test_baseline_formulas_match_numpy_loop():
    m = 50
    base = Baseline15(m=m)
    p = {k: v * (1.0 + 0.1 * i) for i, (k, v) in enumerate(BASELINE15_DEFAULTS.items())}
    p["rho"] = 0.3
    net = base.network(base.to_theta(p))
    ang = 2 * np.pi * np.arange(m) / m
    W = np.zeros((2 * m, 2 * m))
    S = np.zeros((2 * m, 2 * m))
    var = {"e": p["var_e"], "i": p["var_i"]}
    for i in range(2 * m):
        for j in range(2 * m):
            X, Y = "ei"[i // m], "ei"[j // m]
            dcos = np.cos(ang[i % m] - ang[j % m]) - 1.0
            sign = 1.0 if Y == "e" else -1.0
            W[i, j] = sign * p[f"a_{X}{Y}"] * np.exp(dcos / p[f"d_{X}{Y}"] ** 2)
            K = np.exp(dcos / p["ell_eta"] ** 2)
            c = 1.0 if X == Y else p["rho"]
            S[i, j] = c * np.sqrt(var[X] * var[Y]) * K + (0.01 if i == j else 0.0)
    np.testing.assert_allclose(np.asarray(net.W), W, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(net.noise_cov), S, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", ("ring", "general"))
def test_defaults_reproduce_baseline15(kind, params50, default_thetas):
    ref = params50["baseline15"].network(default_thetas["baseline15"])
    net = params50[kind].network(default_thetas[kind])
    np.testing.assert_allclose(np.asarray(net.W), np.asarray(ref.W), rtol=1e-13, atol=0)
    S, S0 = np.asarray(net.noise_cov), np.asarray(ref.noise_cov)
    assert np.max(np.abs(S - S0)) < 1e-12 * np.max(np.abs(S0))
    # same input map
    h = np.linspace(-3.0, 5.0, 200).reshape(2, 100)
    np.testing.assert_allclose(
        params50[kind].inputs(default_thetas[kind], h),
        params50["baseline15"].inputs(default_thetas["baseline15"], h),
        rtol=1e-13,
    )


def test_ring_blocks_are_symmetric_circulant():
    m = M_SMALL
    ring = Ring(m=m)
    theta = ring.random_theta(4, scale=1.0)
    W = np.asarray(jax.jit(ring.network)(theta).W)
    shift = np.roll(np.eye(m), 1, axis=1)
    for r in range(2):
        for c in range(2):
            B = W[r * m : (r + 1) * m, c * m : (c + 1) * m]
            np.testing.assert_allclose(B, B.T, atol=1e-15)
            np.testing.assert_allclose(shift @ B @ shift.T, B, atol=1e-15)
    c = jnp.arange(5.0)
    C = np.asarray(symmetric_circulant(c, 8))
    np.testing.assert_array_equal(C[0], [0, 1, 2, 3, 4, 3, 2, 1])
    np.testing.assert_array_equal(C[3], np.roll(C[0], 3))



@pytest.mark.parametrize("cls", (Baseline15, Ring, General))
def test_traceable_in_theta(cls):
    param = cls(m=M_SMALL)
    theta = param.random_theta(0, scale=0.2)
    net_jit = jax.jit(param.network)(theta)
    net = param.network(theta)
    np.testing.assert_allclose(net_jit.W, net.W, rtol=1e-14)
    np.testing.assert_allclose(net_jit.noise_cov, net.noise_cov, rtol=1e-13, atol=1e-15)
    # physical params -> theta -> physical params
    params = param.from_theta(theta)
    back = param.to_theta({k: np.asarray(v) for k, v in params.items()})
    assert float(jnp.max(jnp.abs(back - theta))) < 1e-12
    # gradients of a function of the network flow to every entry of theta
    g = jax.jit(jax.grad(lambda t: jnp.sum(param.network(t).W ** 2) + jnp.sum(param.network(t).noise_cov)))(theta)
    assert g.shape == theta.shape and np.all(np.isfinite(g))
    # General/Ring noise mixing: Sigma = L L^T
    if cls is not Baseline15:
        L = param.mixing(params) if cls is Ring else params["mix"]
        np.testing.assert_allclose(net.noise_cov, L @ L.T, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_default_network_on_published_task(echeveste_task_path):
    """m = 50 defaults on the 5 published stimuli: stable, E means/stds in the targets' range.

    One stimulus at a time (unbatched solves compile once and are cheap to repeat).
    """
    from momentssn.losses.moment import loss_per_stimulus

    task = np.load(echeveste_task_path)
    base = Baseline15()
    theta = base.default_theta()
    net = base.network(theta)
    h = base.inputs(theta, task["inputs"])
    losses = []
    for s in range(5):
        moments, info = ms.stationary_solve(net, h[s])
        assert bool(info.stable)
        mean_e, std_e = np.asarray(moments.mean[:50]), np.asarray(moments.std[:50])
        assert 2.5 < mean_e.min() and mean_e.max() < 8.0
        assert 0.5 < std_e.min() and std_e.max() < 2.5
        losses.append(float(loss_per_stimulus(moments, task["target_mean"][s], task["target_cov"][s])))
    assert 0.0 < np.mean(losses) < 0.1


@pytest.mark.parametrize("kind", ["baseline15", "ring", "general"])
def test_echeveste_start_is_the_same_network_in_every_parameterization(kind):
    m = 6
    h_raw = np.linspace(-0.5, 2.0, 2 * m)[None]  # min h~ = -0.5: in_b = 1.1 + 0.5
    start = ms.echeveste_start(h_raw)
    assert np.isclose(start["in_b"], 1.6) and start["rho"] == 0.8 and start["var_e"] == 4.0
    base = Baseline15(m=m)
    ref = base.network(base.to_theta(start))
    param = ms.get_parameterization(kind, m=m)
    theta = ms.echeveste_theta(param, h_raw)
    net = param.network(theta)
    assert np.allclose(net.W, ref.W, atol=1e-10)
    assert np.allclose(net.noise_cov, ref.noise_cov, atol=1e-8)
    assert np.allclose(param.inputs(theta, h_raw), base.inputs(base.to_theta(start), h_raw), atol=1e-10)
