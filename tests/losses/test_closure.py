"""Closure losses (momentssn.losses.closure): gradients vs finite differences, +inf with a
finite zero gradient for unstable networks, transient vs stationary, and the forward-only
score of a network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from momentssn.losses.closure import network_closure_loss, stationary_loss, time_averaged_moments, transient_loss
from momentssn.params.ring import BASELINE15_DEFAULTS, Baseline15, General, Ring

M_SMALL = 4  # sites per population in the gradient tests (N = 8)


# --------------------------------------------------------------------------- stationary
# One compiled value-and-gradient per (parameterization, shapes), shared by the tests
# (compilation dominates their cost); targets and inputs are arguments, not constants.
_stationary_vg = jax.jit(
    jax.value_and_grad(stationary_loss, argnums=1, has_aux=True), static_argnums=0
)


@pytest.fixture(scope="module")
def small_problem():
    """Baseline15 at m = 4, 3 stimuli, synthetic targets near (not at) the model's moments."""
    param = Baseline15(m=M_SMALL)
    theta = param.default_theta()
    rng = np.random.default_rng(1)
    ang = 2 * np.pi * np.arange(M_SMALL) / M_SMALL
    bump = np.concatenate([1 + np.cos(ang), 1 + np.cos(ang)])
    h_raw = np.array([0.0, 0.5, 1.0])[:, None] * bump[None, :] * 4.0
    zeros = (np.zeros((3, M_SMALL)), np.zeros((3, M_SMALL, M_SMALL)))
    (_, aux), _ = _stationary_vg(param, theta, h_raw, *zeros)
    mom = aux.moments
    t_mean = np.asarray(mom.mean[:, :M_SMALL]) + rng.normal(scale=0.5, size=(3, M_SMALL))
    A = rng.normal(scale=0.3, size=(3, M_SMALL, M_SMALL))
    t_cov = np.asarray(mom.cov[:, :M_SMALL, :M_SMALL]) * 1.3 + A @ np.swapaxes(A, 1, 2)
    return param, theta, h_raw, t_mean, t_cov, mom


def test_stationary_loss_zero_at_perfect_targets(small_problem):
    param, theta, h_raw, _, _, mom = small_problem
    (loss, aux), grad = _stationary_vg(
        param, theta, h_raw, mom.mean[:, :M_SMALL], mom.cov[:, :M_SMALL, :M_SMALL]
    )
    assert bool(aux.stable) and aux.per_stimulus.shape == (3,)
    assert float(loss) < 1e-20 and float(jnp.max(jnp.abs(grad))) < 1e-9
    assert aux.moments.mean.shape == (3, 2 * M_SMALL) and aux.info.stable.shape == (3,)


def test_stationary_loss_gradient_vs_finite_differences(small_problem):
    param, theta, h_raw, t_mean, t_cov, _ = small_problem
    (loss, aux), grad = _stationary_vg(param, theta, h_raw, t_mean, t_cov)
    assert bool(aux.stable) and np.isfinite(float(loss)) and float(loss) > 1e-4
    value = lambda t: float(_stationary_vg(param, t, h_raw, t_mean, t_cov)[0][0])  # noqa: E731
    eps = 1e-5
    fd = np.array(
        [(value(theta.at[i].add(eps)) - value(theta.at[i].add(-eps))) / (2 * eps) for i in range(param.size)]
    )
    assert np.max(np.abs(fd - np.asarray(grad))) < 1e-6 * np.max(np.abs(fd))
    assert np.all(np.abs(np.asarray(grad)) > 0)  # every parameter matters


@pytest.mark.parametrize("cls", (Ring, General))
def test_ring_general_network_derivatives(cls):
    """Ring/General reach the solver only through (W, Sigma_eta, h): check the derivative
    of a smooth function of those along a random direction against finite differences
    (the chain rule through the solver is tested with Baseline15 above)."""
    param = cls(m=M_SMALL)
    theta = param.random_theta(2, scale=0.3)
    h_raw = np.linspace(-0.5, 2.0, 2 * M_SMALL)

    def f(t):
        net = param.network(t)
        h = param.inputs(t, h_raw)
        return jnp.sum(jnp.sin(net.W)) + jnp.sum(net.noise_cov**2) + jnp.sum(jnp.cos(h))

    vg = jax.jit(jax.value_and_grad(f))
    v = jax.random.normal(jax.random.PRNGKey(5), theta.shape)
    eps = 1e-6
    fd = (vg(theta + eps * v)[0] - vg(theta - eps * v)[0]) / (2 * eps)
    assert float(jnp.dot(vg(theta)[1], v)) == pytest.approx(float(fd), rel=1e-7)


def _runaway_theta(param):
    """Almost no inhibition: the supralinear E population has no fixed point for strong input."""
    return param.to_theta(dict(BASELINE15_DEFAULTS, a_ee=3.0, a_ei=1e-3, a_ii=1e-3))


def test_unstable_network_gives_inf_and_zero_gradient(small_problem):
    param, _, h_raw, t_mean, t_cov, _ = small_problem
    (loss, aux), grad = _stationary_vg(param, _runaway_theta(param), h_raw, t_mean, t_cov)
    assert float(loss) == np.inf
    assert not bool(aux.stable) and np.all(np.asarray(aux.per_stimulus) == np.inf)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad) == 0.0)


def test_partly_unstable_batch_gives_inf(small_problem):
    """Only the strongest stimulus runs away: total +inf and zero gradient, while the
    stable stimuli keep finite per-stimulus losses."""
    param, _, h_raw, t_mean, t_cov, _ = small_problem
    theta = param.to_theta(dict(BASELINE15_DEFAULTS, a_ei=1e-3, a_ii=1e-3))
    h_bad = np.array(h_raw)
    h_bad[2] *= 100.0  # h ~ 2 (h~ + 2) up to ~3000 mV: far beyond the E-only runaway point
    (loss, aux), grad = _stationary_vg(param, theta, h_bad, t_mean, t_cov)
    ok = np.asarray(aux.stable_per_stimulus)
    assert ok[0] and not ok[2]
    assert float(loss) == np.inf and np.all(np.asarray(grad) == 0.0)
    assert np.all(np.isfinite(np.asarray(aux.per_stimulus)[ok]))


# --------------------------------------------------------------------------- transient


def test_time_averaged_moments_by_hand():
    mean = jnp.array([[0.0], [1.0], [2.0]])  # (T = 3, N = 1)
    cov = jnp.array([[[1.0]], [[2.0]], [[3.0]]])
    avg = time_averaged_moments(mean, cov)
    # trapezoid weights (1/4, 1/2, 1/4)
    assert float(avg.mean[0]) == pytest.approx(1.0) and float(avg.cov[0, 0]) == pytest.approx(2.0)
    pooled = time_averaged_moments(mean, cov, pooled=True)
    assert float(pooled.cov[0, 0]) == pytest.approx(2.0 + 0.25 * 1 + 0.25 * 1)


_TRANSIENT_KW = dict(t_max=300.0, dt=0.5, t_avg=50.0, sample_every=5.0)
_transient_value = jax.jit(
    lambda param, theta, *args: transient_loss(param, theta, *args, **_TRANSIENT_KW), static_argnums=0
)
_transient_vg = jax.jit(
    jax.value_and_grad(
        lambda param, theta, *args: transient_loss(param, theta, *args, **_TRANSIENT_KW),
        argnums=1,
        has_aux=True,
    ),
    static_argnums=0,
)


def test_transient_loss_matches_stationary(small_problem):
    param, theta, h_raw, t_mean, t_cov, _ = small_problem
    loss, aux = _transient_value(param, theta, h_raw, t_mean, t_cov)
    assert bool(aux.stable) and aux.info is None
    (loss_st, aux_st), _ = _stationary_vg(param, theta, h_raw, t_mean, t_cov)
    # after 250 ms (>> the ~25 ms relaxation time) the transient has settled
    assert float(loss) == pytest.approx(float(loss_st), rel=1e-4)
    np.testing.assert_allclose(aux.moments.mean, aux_st.moments.mean, rtol=1e-4)
    # diverging network: +inf
    loss, aux = _transient_value(param, _runaway_theta(param), h_raw, t_mean, t_cov)
    assert float(loss) == np.inf and not bool(aux.stable)


@pytest.mark.slow
def test_transient_loss_gradient(small_problem):
    """Reverse mode through the RK4 steps: vs the stationary gradient (settled), vs finite
    differences, and exactly 0 for a diverging network."""
    param, theta, h_raw, t_mean, t_cov, _ = small_problem
    (loss, aux), grad = _transient_vg(param, theta, h_raw, t_mean, t_cov)
    (loss_st, _), grad_st = _stationary_vg(param, theta, h_raw, t_mean, t_cov)
    np.testing.assert_allclose(grad, grad_st, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(grad_st))))
    v = jax.random.normal(jax.random.PRNGKey(0), theta.shape)
    value = lambda t: float(_transient_vg(param, t, h_raw, t_mean, t_cov)[0][0])  # noqa: E731
    eps = 1e-5
    fd = (value(theta + eps * v) - value(theta - eps * v)) / (2 * eps)
    assert float(jnp.dot(grad, v)) == pytest.approx(fd, rel=1e-6)
    (loss, aux), grad = _transient_vg(param, _runaway_theta(param), h_raw, t_mean, t_cov)
    assert float(loss) == np.inf and np.all(np.asarray(grad) == 0.0)


# --------------------------------------------------------------------------- score of a network


def test_network_closure_loss_is_the_stationary_loss_of_the_built_network(small_problem):
    """The forward-only score of param.network(theta) equals stationary_loss through the
    parameterization (the other route), per stimulus; moments cover every cell."""
    param, theta, h_raw, t_mean, t_cov, mom = small_problem
    (loss, aux), _ = _stationary_vg(param, theta, h_raw, t_mean, t_cov)
    sc = network_closure_loss(param.network(theta), param.inputs(theta, h_raw), t_mean, t_cov)
    assert sc.stable and sc.converged and sc.max_real_eig < 0
    np.testing.assert_allclose(sc.per_stimulus, np.asarray(aux.per_stimulus), rtol=1e-10)
    assert sc.loss == pytest.approx(float(loss), rel=1e-10)
    np.testing.assert_allclose(np.asarray(sc.moments.cov), np.asarray(mom.cov), rtol=1e-9, atol=1e-12)


def test_network_closure_loss_of_an_unstable_network_is_inf(small_problem):
    param, _, h_raw, t_mean, t_cov, _ = small_problem
    theta = _runaway_theta(param)
    sc = network_closure_loss(param.network(theta), param.inputs(theta, h_raw), t_mean, t_cov)
    assert sc.loss == np.inf and not sc.stable and sc.moments is None
    assert np.all(np.isposinf(sc.per_stimulus)) and np.isfinite(sc.max_real_eig)
