"""The growth paper's random start of the General SSN (momentssn.params.init)."""

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.params.init import PaperInit, paper_params, paper_theta, stable_paper_theta


def test_paper_start_statistics_and_noise_closed_form():
    param = ms.get_parameterization("general", m=50)  # N = 100: 10,000 weights
    N = param.N
    net = param.network(paper_theta(param, seed=3))
    W = np.asarray(net.W)
    # Dale: E columns >= 0, I columns <= 0
    assert np.all(W[:, :50] > 0) and np.all(W[:, 50:] < 0)
    # |W| half-normal of N(0, 1/N): mean sqrt(2 / (pi N)) (SE 0.75 %), second moment 1/N (SE 1.4 %)
    a = np.abs(W)
    assert abs(a.mean() / np.sqrt(2.0 / (np.pi * N)) - 1.0) < 0.03
    assert abs((a**2).mean() * N - 1.0) < 0.05
    # Sigma_eta = L L^T, L = 0.9 I + 0.1 11^T: 0.81 I + (0.18 + 0.01 N) 11^T
    expect = 0.81 * np.eye(N) + (0.18 + 0.01 * N) * np.ones((N, N))
    np.testing.assert_allclose(np.asarray(net.noise_cov), expect, rtol=1e-12)
    # the input map keeps the parameterization's default
    default = param.default_params()
    for name in ("in_a", "in_b", "in_p"):
        assert float(param.field(paper_theta(param, 3), name)) == pytest.approx(default[name])


def test_paper_start_is_deterministic_and_draws_differ():
    param = ms.get_parameterization("general", m=3)
    a, b = paper_params(param, 5), paper_params(param, 5)
    np.testing.assert_array_equal(a["w_abs"], b["w_abs"])
    assert not np.allclose(paper_params(param, 5, draw=1)["w_abs"], a["w_abs"])
    assert not np.allclose(paper_params(param, 6)["w_abs"], a["w_abs"])


def test_paper_start_rejects_bad_arguments():
    with pytest.raises(ValueError, match="w_abs"):
        paper_params(ms.get_parameterization("ring", m=4), 0)
    param = ms.get_parameterization("general", m=2)
    with pytest.raises(ValueError, match="seed"):
        paper_params(param, -1)
    with pytest.raises(ValueError, match="h_raw"):
        stable_paper_theta(param, np.ones((2, 3)), 0)
    with pytest.raises(ValueError, match="max_draws"):
        stable_paper_theta(param, np.ones((2, 4)), 0, max_draws=0)


def _numpy_max_real_eig(net, mean, cov):
    """Largest Re eig of J = T^-1 (-I + W Gamma), gamma_i = E[r'(u_i)] = 2 k E[[u_i]_+] for
    n = 2 and u_i ~ N(mu_i, s_i^2) (closed form, scipy-free: the normal cdf by erf)."""
    from math import erf

    mu, s = np.asarray(mean), np.sqrt(np.diagonal(np.asarray(cov)))
    z = mu / s
    Phi = 0.5 * (1.0 + np.array([erf(v / np.sqrt(2.0)) for v in z]))
    phi = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    gamma = 2.0 * net.k * (mu * Phi + s * phi)
    J = (-np.eye(len(mu)) + np.asarray(net.W) * gamma[None, :]) / np.asarray(net.tau)[:, None]
    return float(np.max(np.linalg.eigvals(J).real))


def test_stable_draw_is_the_first_stable_one():
    """Redraws stop at the first draw whose fixed points are all stable (checked by numpy
    eigenvalues of the Jacobian at the closure's fixed point); the draws before it have
    no stable fixed point for some stimulus."""
    param = ms.get_parameterization("general", m=3)  # N = 6, 2 stimuli: the shapes of tests/growth
    h_raw = np.array([[0.0, 0.5, 1.0, 0.0, 0.5, 1.0], [1.5, 0.2, 0.8, 1.5, 0.2, 0.8]])
    counts = []
    for seed in range(4):
        theta, draws = stable_paper_theta(param, h_raw, seed)
        counts.append(draws)
        np.testing.assert_array_equal(theta, paper_theta(param, seed, draws - 1))
        net, h = param.network(theta), param.inputs(theta, jnp.asarray(h_raw))
        m, info = ms.stationary_solve(net, h)
        for b in range(2):
            assert _numpy_max_real_eig(net, m.mean[b], m.cov[b]) < 0
        for d in range(draws - 1):
            th = paper_theta(param, seed, d)
            info = ms.stationary_solve(param.network(th), param.inputs(th, jnp.asarray(h_raw)))[1]
            assert not np.all(np.asarray(info.stable) & np.asarray(info.converged))
    assert max(counts) > 1  # some first draws are unstable (why the redraw exists)
    np.testing.assert_array_equal(PaperInit(h_raw)(param, 0), stable_paper_theta(param, h_raw, 0)[0])
    np.testing.assert_array_equal(PaperInit()(param, 0), paper_theta(param, 0))
