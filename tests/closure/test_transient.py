"""Transient moment propagation against an independent integrator and the stationary solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import momentssn as ms
from reference import closure_rhs_numpy

NET = ms.SSN.two_population()


def test_matches_scipy_solve_ivp_on_numpy_closure():
    h = np.array([4.0, 4.0])
    tr = ms.propagate_moments(NET, jnp.asarray(h), 100.0, 0.1, save_every=100)
    y0 = np.zeros(2 + 4 + 4)
    sol = solve_ivp(closure_rhs_numpy(NET, h), (0, 100), y0, t_eval=np.asarray(tr.t),
                    rtol=1e-10, atol=1e-12, method="DOP853")
    mu = sol.y[:2].T
    S = sol.y[2:6].T.reshape(-1, 2, 2)
    assert tr.mean.shape == (11, 2) and tr.cov.shape == (11, 2, 2) and tr.cross_cov.shape == (11, 2, 2)
    assert np.max(np.abs(tr.mean - mu)) < 1e-8
    assert np.max(np.abs(tr.cov - S)) < 1e-8


def test_converges_to_stationary_moments_batched():
    H = jnp.array([[3.0, 3.0], [15.0, 15.0]])
    tr = ms.propagate_moments(NET, H, 1500.0, 0.5, save_every=3000)
    st = ms.stationary_moments(NET, H)
    assert tr.mean.shape == (2, 2, 2)
    assert np.allclose(tr.mean[:, -1], st.mean, rtol=1e-6)
    assert np.allclose(tr.cov[:, -1], st.cov, rtol=1e-5, atol=1e-9)


def test_starts_from_rest_and_accepts_initial_state():
    h = jnp.array([2.0, 2.0])
    tr = ms.propagate_moments(NET, h, 10.0, 0.5)
    assert np.all(tr.mean[0] == 0) and np.all(tr.cov[0] == 0)
    st = ms.stationary_moments(NET, h)
    tr2 = ms.propagate_moments(NET, h, 10.0, 0.5, mean0=st.mean, cov0=st.cov,
                               cross_cov0=ms.cross_covariance(NET, st))
    assert np.allclose(tr2.mean[-1], st.mean, rtol=1e-9)
    assert np.allclose(tr2.cov[-1], st.cov, rtol=1e-8)


def test_differentiable_through_trajectory():
    h = jnp.array([3.0, 3.0])

    def loss(W):
        tr = ms.propagate_moments(NET.replace(W=W), h, 50.0, 0.5)
        return jnp.mean(tr.cov[-20:, 0, 0]) + jnp.mean(tr.mean[-20:, 0])

    W = NET.W
    g = jax.grad(loss)(W)
    d = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2)))
    eps = 1e-6
    fd = (loss(W + eps * d) - loss(W - eps * d)) / (2 * eps)
    assert np.isclose(jnp.sum(g * d), fd, rtol=1e-6)


@pytest.mark.parametrize("kw, match", [(dict(dt=0.0), "dt must be > 0"),
                                       (dict(t_max=-1.0), "t_max must be > 0"),
                                       (dict(h=jnp.ones(3)), "h must have shape")])
def test_bad_arguments(kw, match):
    args = dict(net=NET, h=jnp.ones(2), t_max=10.0, dt=0.5)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        ms.propagate_moments(**args)
