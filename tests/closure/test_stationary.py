"""Stationary moments: closed forms, reference networks, implicit gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import momentssn as ms
from reference import PUBLISHED_BASELINE15, ou_stationary_cov, random_ei_network


def two_pop_h(h):
    return jnp.array([h, h], dtype=jnp.float64)


def test_zero_connectivity_gives_exact_ou_moments():
    rng = np.random.default_rng(0)
    N = 4
    L = rng.normal(size=(N, N))
    Sig = L @ L.T / N
    tau = np.array([20.0, 10.0, 15.0, 5.0])
    net = ms.SSN(np.zeros((N, N)), tau, Sig, 30.0)
    h = jnp.array([1.0, -2.0, 0.5, 3.0])
    m = ms.stationary_moments(net, h)
    ref = ou_stationary_cov(tau, Sig, 30.0)
    assert np.max(np.abs(m.mean - h)) < 1e-12
    assert np.max(np.abs(m.cov - ref)) <= 1e-10 * np.max(np.abs(ref))


def test_two_population_variability_peak_and_quenching():
    net = ms.SSN.two_population()
    hs = jnp.arange(0.0, 20.0, 1.0)
    m = ms.stationary_moments(net, jnp.stack([hs, hs], axis=1))
    sd_e = np.asarray(m.std[:, 0])
    assert abs(sd_e[2] - 0.92) < 0.02  # Hennequin et al. 2018: ~0.92 mV at h = 2
    assert abs(sd_e[15] - 0.30) < 0.01  # ~0.30 mV at h = 15
    assert 1 <= int(np.argmax(sd_e)) <= 3  # peak near h = 2 ...
    assert np.all(np.diff(sd_e[3:]) < 0)  # ... then quenched as h grows
    assert np.all(np.diff(np.asarray(m.mean[:, 0])[:8]) > 0)


def test_solution_satisfies_the_fixed_point_equations_random_network():
    net = random_ei_network(100, seed=0)
    rng = np.random.default_rng(1)
    h = jnp.asarray(rng.uniform(1.0, 4.0, size=(2, 100)))
    m, info = ms.stationary_solve(net, h)
    assert bool(np.all(info.stable))
    for b in range(2):
        mu, S = np.asarray(m.mean[b]), np.asarray(m.cov[b])
        nu, gamma = ms.rate_expectations(m.mean[b], m.std[b], net.k, net.n)
        W, tau = np.asarray(net.W), np.asarray(net.tau)
        assert np.max(np.abs(-mu + h[b] + W @ np.asarray(nu))) < 1e-9
        # covariance by scipy's Schur-based Lyapunov solver on the augmented system
        J = (-np.eye(100) + W * np.asarray(gamma)[None, :]) / tau[:, None]
        A = np.block([[J, np.diag(1 / tau)], [np.zeros((100, 100)), -np.eye(100) / 20.0]])
        D = np.zeros((200, 200))
        D[100:, 100:] = 2 * np.asarray(net.noise_cov) / 20.0
        P = scipy.linalg.solve_continuous_lyapunov(A, -D)
        assert np.max(np.abs(P[:100, :100] - S)) <= 1e-9 * np.max(np.abs(S))
        assert np.linalg.eigvalsh(S).min() > 0


def test_batch_equals_single_and_warm_start():
    net = ms.SSN.two_population()
    H = jnp.array([[2.0, 2.0], [10.0, 10.0]])
    mb = ms.stationary_moments(net, H)
    for b in range(2):
        m1 = ms.stationary_moments(net, H[b])
        assert np.allclose(mb.mean[b], m1.mean, rtol=1e-12)
        assert np.allclose(mb.cov[b], m1.cov, rtol=1e-11)
    _, info = ms.stationary_solve(net, H[1], init=ms.Moments(mb.mean[1], mb.cov[1]))
    assert int(info.iterations) <= 2


def test_warm_start_with_sensitivity():
    """info.warm_start carries K = d diag S / d gamma: exact at the root when the solve
    is differentiated (vs forward-mode AD of the Lyapunov solution); starting from it
    at nearby parameters gives the cold solve's moments and gradients, also when the
    K is poor (Newton then recomputes it)."""
    from momentssn.closure import equations as closure
    from momentssn.closure.lyapunov import solve_lyapunov

    net = random_ei_network(6, seed=3)
    h = jnp.linspace(1.0, 3.0, 6)
    N = net.N
    wm, wS = jnp.linspace(-1.0, 1.0, N), jnp.eye(N)

    def loss(net, init):
        m, info = ms.stationary_solve(net, h, init)
        return jnp.sum(wm * m.mean) + jnp.sum(wS * m.cov), info

    vg = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (v0, info0), g0 = vg(net, None)
    ws = info0.warm_start
    mu, s = ws.z[:N], ws.z[N:]

    def diag_S(gamma):
        J = closure.effective_jacobian(net, gamma)
        return jnp.diagonal(solve_lyapunov(J, closure.lyapunov_rhs(net, closure.stationary_cross_cov(net, J))))

    K_ad = jax.jacfwd(diag_S)(closure.expectations(net, mu, s)[1])
    assert np.max(np.abs(ws.sensitivity - K_ad)) <= 1e-10 * np.max(np.abs(K_ad))

    near = net.replace(W=net.W * 1.02)
    (v_cold, _), g_cold = vg(near, None)
    for K in (ws.sensitivity, 3.0 * ws.sensitivity, jnp.zeros((N, N))):
        (v, info), g = vg(near, ms.WarmStart(ws.z, K))
        assert bool(info.converged)
        assert np.isclose(v, v_cold, rtol=1e-12)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_cold)):
            assert np.allclose(a, b, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="init.sensitivity must have shape"):
        ms.stationary_solve(net, h, ms.WarmStart(ws.z, jnp.zeros((N, N + 1))))


def _loss(net, h, wm, wS):
    m = ms.stationary_moments(net, h)
    return jnp.sum(wm * m.mean) + jnp.sum(wS * m.cov)


@pytest.mark.parametrize("which", ["two_pop", "random6"])
def test_gradients_match_finite_differences(which):
    if which == "two_pop":
        net, h = ms.SSN.two_population(), two_pop_h(3.0)
    else:
        net = random_ei_network(6, seed=3)
        h = jnp.linspace(1.0, 3.0, 6)
    N = net.N
    rng = np.random.default_rng(7)
    wm = jnp.asarray(rng.normal(size=N))
    wS = jnp.asarray(rng.normal(size=(N, N)))
    g_net, g_h = jax.grad(_loss, argnums=(0, 1))(net, h, wm, wS)
    eps = 1e-6
    # direction derivative along random perturbations of every leaf
    for name in ("W", "tau", "noise_cov", "tau_noise", "k", "n"):
        leaf = getattr(net, name)
        d = rng.normal(size=leaf.shape)
        if name == "noise_cov":
            d = d + d.T
        d = jnp.asarray(d) * (0.05 if name in ("tau", "tau_noise") else 1.0)
        plus = _loss(net.replace(**{name: leaf + eps * d}), h, wm, wS)
        minus = _loss(net.replace(**{name: leaf - eps * d}), h, wm, wS)
        fd = (plus - minus) / (2 * eps)
        an = jnp.sum(getattr(g_net, name) * d)
        assert np.isclose(an, fd, rtol=1e-5, atol=1e-8), (name, an, fd)
    d = jnp.asarray(rng.normal(size=N))
    fd = (_loss(net, h + eps * d, wm, wS) - _loss(net, h - eps * d, wm, wS)) / (2 * eps)
    assert np.isclose(jnp.sum(g_h * d), fd, rtol=1e-5, atol=1e-8)


def _strong_ring(m=4):
    """The published network on a ring of m sites (weights x 50/m keep the ring sums):
    strongly coupled, with a weak input for which the default Newton start fails."""
    from momentssn.params.ring import Baseline15

    p = dict(PUBLISHED_BASELINE15)
    for k in ("a_ee", "a_ei", "a_ie", "a_ii"):
        p[k] *= 50 / m
    param = Baseline15(m=m)
    theta = param.to_theta(p)
    h = param.inputs(theta, jnp.linspace(0.0, 1.0, 2 * m))
    return param.network(theta), h


def test_strong_network_falls_back_to_relaxation_from_rest():
    from momentssn.closure import stationary as st

    net, h = _strong_ring()
    # Newton from the default (mean-only) start finds no root here ...
    z0 = st._initial_guess(net, h)
    no_K = jnp.full((net.N, net.N), jnp.nan)
    _, converged, _ = st._newton(net, h, z0, no_K, 1e-13, st._MAX_FIRST)
    assert not bool(converged)
    # ... the solve still converges, to the state the moment ODE settles into from rest.
    m, info = ms.stationary_solve(net, h)
    assert bool(info.converged) and float(info.max_real_eig) < 0
    tr = ms.propagate_moments(net, h, t_max=3000.0, dt=0.5, save_every=6000)
    assert np.max(np.abs(m.mean - tr.mean[-1])) < 1e-8
    assert np.max(np.abs(m.cov - tr.cov[-1])) < 1e-8 * np.max(np.abs(tr.cov[-1]))
    # implicit gradients at a root found through the fallback: finite differences
    rng = np.random.default_rng(1)
    wm = jnp.asarray(rng.normal(size=net.N))
    g = jax.grad(lambda hh: jnp.sum(wm * ms.stationary_moments(net, hh).mean))(h)
    d = jnp.asarray(rng.normal(size=net.N))
    f = lambda hh: float(jnp.sum(wm * ms.stationary_moments(net, hh).mean))  # noqa: E731
    eps = 1e-6
    fd = (f(h + eps * d) - f(h - eps * d)) / (2 * eps)
    assert np.isclose(float(jnp.sum(g * d)), fd, rtol=1e-5)


def test_gradient_is_jittable_and_vmaps_over_stimuli():
    net = ms.SSN.two_population()
    H = jnp.array([[2.0, 2.0], [8.0, 8.0]])
    f = jax.jit(jax.grad(lambda n: jnp.sum(ms.stationary_moments(n, H).cov)))
    g = f(net)
    assert np.all(np.isfinite(np.asarray(g.W)))


def test_runaway_network_raises():
    # E-E excitation with negligible inhibition: the mean dynamics diverge.
    net = ms.SSN(
        np.array([[3.0, -0.1], [3.0, -0.1]]), np.array([20.0, 10.0]), 0.01 * np.eye(2), 20.0
    )
    with pytest.raises(ms.UnstableNetworkError) as err:
        ms.stationary_moments(net, jnp.array([5.0, 5.0]))
    assert "eig" in str(err.value) or "diverge" in str(err.value)


def test_unstable_fixed_point_names_the_eigenvalue():
    # A fixed point exists (Newton finds it) but slow inhibition makes it oscillatory unstable.
    net = ms.SSN(
        np.array([[2.5, -1.3], [2.4, -1.0]]), np.array([20.0, 200.0]), 0.001 * np.eye(2), 20.0
    )
    with pytest.raises(ms.UnstableNetworkError, match="real part") as err:
        ms.stationary_moments(net, jnp.array([10.0, 10.0]))
    assert err.value.max_real_eig >= 0


def test_bad_input_shapes():
    net = ms.SSN.two_population()
    with pytest.raises(ValueError, match="h must have shape"):
        ms.stationary_moments(net, jnp.ones(3))
    with pytest.raises(ValueError, match="h contains NaN"):
        ms.stationary_moments(net, jnp.array([np.nan, 1.0]))
