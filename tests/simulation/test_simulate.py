"""Tests of momentssn.simulation.simulate (float64 is enabled in conftest.py).

Compilation dominates the cost: the configurations below are few and reused.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

import momentssn as ms
from momentssn._util import psd_sqrt
from momentssn.errors import SimulationDivergedError
from momentssn.simulation.noise import threefry2x32
from momentssn.simulation.simulate import SimulationResult, simulate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------------------
# W = 0: pure filtered OU noise, closed form
# ---------------------------------------------------------------------------

TAU3 = np.array([20.0, 10.0, 15.0])
TE3 = 20.0
SIG3 = np.array([[1.0, 0.5, 0.2], [0.5, 0.8, -0.3], [0.2, -0.3, 0.6]])
H3 = np.array([1.0, -2.0, 0.5])


def linear_net(W=None):
    return ms.SSN(np.zeros((3, 3)) if W is None else W, TAU3, SIG3, TE3)


def ou_filtered_cov(tau, tau_eta, Sigma):
    """Stationary covariance of u for W = 0.

    tau_i du_i = (-u_i + h_i + eta_i) dt with OU eta (stationary cov Sigma, time tau_eta):
    u_i - h_i = int_0^inf (1/tau_i) e^{-a/tau_i} eta_i(t - a) da, and
    Cov(eta_i(t - a), eta_j(t - b)) = Sigma_ij e^{-|a-b|/tau_eta}, so

        Cov(u_i, u_j) = Sigma_ij tau_eta (tau_eta (tau_i + tau_j) + 2 tau_i tau_j)
                        / ((tau_i + tau_j) (tau_i + tau_eta) (tau_j + tau_eta)),

    which for i = j is Var(u_i) = Sigma_ii tau_eta / (tau_i + tau_eta); the mean is h.
    """
    ti, tj = tau[:, None], tau[None, :]
    return Sigma * tau_eta * (tau_eta * (ti + tj) + 2 * ti * tj) / ((ti + tj) * (ti + tau_eta) * (tj + tau_eta))


def test_closed_form_equals_lyapunov():
    """The formula above is the u-block of the stationary Lyapunov solution of the
    augmented linear system A = [[-T^-1, T^-1], [0, -I/tau_eta]], D = diag(0, 2 Sigma/tau_eta)."""
    N = 3
    A = np.block([[-np.diag(1 / TAU3), np.diag(1 / TAU3)], [np.zeros((N, N)), -np.eye(N) / TE3]])
    D = np.zeros((2 * N, 2 * N))
    D[N:, N:] = 2 * SIG3 / TE3
    P = sl.solve_continuous_lyapunov(A, -D)
    np.testing.assert_allclose(ou_filtered_cov(TAU3, TE3, SIG3), P[:N, :N], rtol=1e-12, atol=1e-14)


def _lin_run(seed=0, **kw):
    # dt = 0.5 ms: the scheme's stationary covariance differs from the continuous one by
    # 5e-5 (relative, exactly computable by a discrete Lyapunov solve), << the MC error ~1e-2.
    return simulate(linear_net(), H3, 4000.0, 0.5, 64, seed, burn_in=200.0, dtype=jnp.float64, **kw)


@pytest.fixture(scope="module")
def lin():
    return _lin_run()


def test_linear_matches_closed_form_within_4_se(lin):
    C = ou_filtered_cov(TAU3, TE3, SIG3)
    se = lin.standard_error()
    m, c = np.asarray(lin.moments.mean), np.asarray(lin.moments.cov)
    sm, sc = np.asarray(se.mean), np.asarray(se.cov)
    assert lin.n_diverged == 0 and int(lin.n_samples) == 64 * 7600
    # the standard error is informative (a few % of the variance), not huge
    assert np.all(sc.diagonal() < 0.05 * C.diagonal()) and np.all(sm < 0.05)
    assert np.all(np.abs(m - H3) < 4 * sm), (m, sm)
    assert np.all(np.abs(c - C) < 4 * sc), (c, C, sc)


def test_determinism_by_seed(lin):
    again = _lin_run(0)
    for a, b in zip(jax.tree_util.tree_leaves(lin), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = _lin_run(1)
    assert not np.allclose(np.asarray(other.moments.cov), np.asarray(lin.moments.cov))


# ---------------------------------------------------------------------------
# two-population SSN (Hennequin et al. 2018), h = 15 for E and I
# ---------------------------------------------------------------------------

# The Gaussian moment closure (DESIGN.md) of this network at h = 15, solved with scipy
# (fixed point of mu = h + W nu(mu, S) and the augmented Lyapunov equation):
CLOSURE_MEAN = np.array([6.10933, 10.83752])
CLOSURE_STD = np.array([0.299253, 0.300465])


@pytest.fixture(scope="module")
def twopop():
    # float32 (default).  dt = 0.5 ms: simulated std moved by < 0.5% between dt = 0.1 and 0.5.
    # 256 trials x 5.5 s after burn-in: MC standard error of the std ~0.6%.
    net = ms.SSN.two_population()
    return simulate(net, jnp.array([15.0, 15.0]), 6000.0, 0.5, 256, 3, burn_in=500.0)


def test_two_population_std_about_030(twopop):
    assert twopop.moments.mean.dtype == jnp.float32
    std = np.asarray(twopop.moments.std)
    assert abs(std[0] - 0.30) < 0.015, std
    np.testing.assert_allclose(np.asarray(twopop.moments.mean), CLOSURE_MEAN, rtol=0.02)
    np.testing.assert_allclose(std, CLOSURE_STD, rtol=0.02)


def test_two_population_vs_stationary_moments(twopop):
    if not hasattr(ms, "stationary_moments"):
        pytest.skip("momentssn.stationary_moments is not available yet (momentssn/stationary.py in progress)")
    net = ms.SSN.two_population()
    ref = ms.stationary_moments(net, jnp.array([15.0, 15.0]))
    np.testing.assert_allclose(np.asarray(twopop.moments.mean), np.asarray(ref.mean), rtol=0.02)
    np.testing.assert_allclose(np.asarray(twopop.moments.std), np.asarray(ref.std), rtol=0.02)


# ---------------------------------------------------------------------------
# precision, streaming, records, batching
# ---------------------------------------------------------------------------


def _small(dtype):
    net = ms.SSN.two_population()
    h = jnp.array([[15.0, 15.0], [4.0, 3.0]])
    return simulate(net, h, 300.0, 0.5, 8, 7, burn_in=50.0, dtype=dtype, record_stride=1,
                    return_trajectories=True, n_groups=4)


@pytest.fixture(scope="module")
def small64():
    return _small(jnp.float64)


def test_float32_and_float64_agree(small64):
    r32, r64 = _small(jnp.float32), small64
    assert r32.moments.cov.dtype == jnp.float32 and r64.moments.cov.dtype == jnp.float64
    # same random stream (float64 refines the float32 uniforms), so the paths agree to rounding
    np.testing.assert_allclose(r32.moments.mean, r64.moments.mean, rtol=1e-5)
    np.testing.assert_allclose(r32.moments.cov, r64.moments.cov, rtol=1e-3, atol=1e-6)


def test_streamed_moments_equal_trajectory_moments(small64):
    res = small64
    X = np.asarray(res.trajectories)  # (B, T, R, N), R = n_steps + 1 (t = 0 included)
    assert X.shape == (2, 8, 601, 2)
    np.testing.assert_allclose(res.time_resolved.t, np.arange(601) * 0.5)
    win = X[:, :, 100:600, :]  # 50 <= t < 300 ms
    flat = win.reshape(2, -1, 2)
    np.testing.assert_allclose(res.moments.mean, flat.mean(1), rtol=1e-12)
    cov = np.einsum("bsi,bsj->bij", flat - flat.mean(1, keepdims=True), flat - flat.mean(1, keepdims=True))
    np.testing.assert_allclose(res.moments.cov, cov / flat.shape[1], rtol=1e-9)
    np.testing.assert_array_equal(res.n_samples, [8 * 500, 8 * 500])
    # groups of 2 consecutive trials
    g = win.reshape(2, 4, 2 * 500, 2)
    np.testing.assert_allclose(res.group_moments.mean, g.mean(2), rtol=1e-12)
    np.testing.assert_allclose(res.trial_mean, win.mean(2), rtol=1e-12)
    np.testing.assert_allclose(res.trial_var, win.var(2), rtol=1e-8)
    # time-resolved: across-trial moments at each recorded time
    np.testing.assert_allclose(res.time_resolved.mean, X.mean(1), rtol=1e-12)
    tv = np.var(X, axis=1, ddof=1)
    np.testing.assert_allclose(res.time_resolved.var, tv, rtol=1e-9, atol=1e-15)
    assert np.all(res.time_resolved.cov[:, 0] == 0)  # deterministic start u = 0
    # a batch equals the single stimuli (common random numbers), and the SE has the pooled shapes
    single = simulate(ms.SSN.two_population(), jnp.array([4.0, 3.0]), 300.0, 0.5, 8, 7, burn_in=50.0,
                      dtype=jnp.float64, n_groups=4)
    np.testing.assert_allclose(single.moments.cov, res.moments.cov[1], rtol=1e-10)
    assert single.standard_error().cov.shape == (2, 2) and res.standard_error().mean.shape == (2, 2)
    assert single.time_resolved is None and single.trajectories is None


# A duplicated neuron (row/column 1 of Sigma = row/column 0): singular but PSD noise.
SING_SIG = np.array([[0.05, 0.05, 0.01], [0.05, 0.05, 0.01], [0.01, 0.01, 0.02]])
SING_W = np.array([[0.6, 0.6, -1.0], [0.6, 0.6, -1.0], [1.0, 1.0, -0.5]]) * 0.5


def _shard_case():
    """Used in this process (one device) and in a subprocess with 4 host devices."""
    net = ms.SSN(SING_W, np.array([20.0, 20.0, 10.0]), SING_SIG, 30.0, n_exc=2)
    return simulate(net, jnp.array([10.0, 10.0, 10.0]), 200.0, 0.5, 8, 2, burn_in=20.0, dtype=jnp.float64,
                    record_stride=20)


@pytest.fixture(scope="module")
def shard_ref():
    return _shard_case()


def test_singular_noise_cov(shard_ref):
    assert np.linalg.eigvalsh(SING_SIG).min() < 1e-12
    L = np.asarray(psd_sqrt(jnp.asarray(SING_SIG)))
    np.testing.assert_allclose(L @ L.T, SING_SIG, atol=1e-12)
    c = np.asarray(shard_ref.moments.cov)
    assert np.all(np.isfinite(c)) and shard_ref.n_diverged == 0 and np.all(np.diag(c) > 0)
    # neurons 0 and 1 are identical and receive identical noise: perfectly correlated
    np.testing.assert_allclose(c[0, 0], c[1, 1], rtol=1e-10)
    np.testing.assert_allclose(c[0, 1], c[0, 0], rtol=1e-10)
    # the factor's derivative (used by gradients w.r.t. noise_cov) is finite at a singular matrix
    J = jax.jacfwd(psd_sqrt)(jnp.asarray(SING_SIG))
    assert np.all(np.isfinite(np.asarray(J)))


# ---------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------


def _bistable():
    """One E neuron: tau du/dt = -u + 0.3 u^2 + noise: stable at 0, unstable at 3.33 mV."""
    return ms.SSN(np.array([[1.0]]), np.array([20.0]), np.array([[0.01]]), 20.0, n_exc=1)


def test_divergent_trials_are_excluded_and_reported():
    u0 = np.array([0.0, 0.0, 0.0, 0.0, 6.0, 6.0, 6.0, 6.0])[:, None]  # trials 4..7 blow up
    with pytest.warns(RuntimeWarning, match="4 of 8 trials diverged"):
        res = simulate(_bistable(), jnp.zeros(1), 200.0, 0.5, 8, 5, burn_in=20.0, dtype=jnp.float64, u0=u0)
    assert int(res.n_diverged) == 4
    np.testing.assert_array_equal(res.diverged, [False] * 4 + [True] * 4)
    t = float(res.first_divergence_time)
    assert 0 < t < 200 and np.all(np.isinf(res.divergence_time[:4]))
    assert np.all(np.isfinite(res.moments.cov)) and int(res.n_samples) == 4 * 360
    assert np.all(np.isnan(res.trial_mean[4:]))
    # whole-trial exclusion: the pooled moments are those of the 4 good trials alone
    # (N = 1, equal windows: pooled mean/var from the per-trial time means/variances)
    tm, tv = np.asarray(res.trial_mean[:4, 0]), np.asarray(res.trial_var[:4, 0])
    np.testing.assert_allclose(res.moments.mean[0], tm.mean(), rtol=1e-12)
    np.testing.assert_allclose(res.moments.cov[0, 0], np.mean(tv + tm**2) - tm.mean() ** 2, rtol=1e-9)
    assert float(res.moments.cov[0, 0]) < 0.01  # no trace of the runaway transients
    # the same under a transformation (traced: no warning possible), with finite gradients

    def f(h):
        r = simulate(_bistable(), h, 200.0, 0.5, 8, 5, burn_in=20.0, dtype=jnp.float64, u0=u0)
        return r.moments.cov.sum() + r.moments.mean.sum(), r.n_diverged

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (val, nd), g = jax.value_and_grad(f, has_aux=True)(jnp.zeros(1))
    # (traced noise_cov takes the general L = psd_sqrt path, the eager call the diagonal one)
    np.testing.assert_allclose(val, res.moments.cov.sum() + res.moments.mean.sum(), rtol=1e-12)
    assert int(nd) == 4 and np.all(np.isfinite(np.asarray(g)))


def test_runaway_excitatory_network_reports_all_trials():
    net = ms.SSN(2.0 * np.ones((2, 2)), np.array([20.0, 20.0]), 0.05 * np.eye(2), 20.0, n_exc=2)
    # eagerly: every trial diverged -> a clear error naming the stimulus and the time (issue 14)
    with pytest.raises(SimulationDivergedError, match="stimulus 0 diverged") as err:
        simulate(net, jnp.array([15.0, 15.0]), 100.0, 0.5, 4, 0, burn_in=10.0)
    assert err.value.stimulus == 0 and 0 < err.value.time_ms < 20
    # inside jit: no raising, the result reports it (same assertions as before)
    res = jax.jit(lambda h: simulate(net, h, 100.0, 0.5, 4, 0, burn_in=10.0))(jnp.array([15.0, 15.0]))
    assert int(res.n_diverged) == 4 and 0 < float(res.first_divergence_time) < 20
    assert int(res.n_samples) == 0 and np.all(np.isnan(res.moments.mean))  # no data, said so


# ---------------------------------------------------------------------------
# gradient vs finite differences (same seed -> same noise)
# ---------------------------------------------------------------------------


def test_gradient_matches_finite_differences():
    """BPTT through the streamed moments equals central finite differences of the same
    sample function (same seed -> same noise), for W (and h, noise_cov, tau)."""
    h = jnp.array([6.0, 5.0])
    # 80 steps in chunks of 24: 4 checkpointed chunks, the last one with a masked tail
    kw = dict(burn_in=10.0, dtype=jnp.float64, chunk_steps=24)
    A = jnp.array([[2.0, 1.0], [1.0, -3.0]])

    def loss(net, h):
        r = simulate(net, h, 40.0, 0.5, 4, 11, **kw)
        return jnp.sum(r.moments.mean * jnp.array([0.3, -0.2])) + jnp.sum(r.moments.cov * A)

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))  # one compilation, reused for the FD values
    net = ms.SSN.two_population().replace(noise_cov=np.array([[0.056, 0.01], [0.01, 0.012]]))
    _, (g_net, g_h) = vg(net, h)
    eps = 1e-6

    def fd(make):
        return (vg(*make(eps))[0] - vg(*make(-eps))[0]) / (2 * eps)

    for i in range(2):
        for j in range(2):
            E = np.zeros((2, 2))
            E[i, j] = 1.0
            num = fd(lambda e: (net.replace(W=net.W + e * E), h))
            np.testing.assert_allclose(g_net.W[i, j], num, rtol=1e-5, atol=1e-9)
    num = fd(lambda e: (net, h.at[0].add(e)))
    np.testing.assert_allclose(g_h[0], num, rtol=1e-5, atol=1e-9)
    Es = np.array([[0.0, 1.0], [1.0, 0.0]])  # symmetric perturbation of the noise covariance
    num = fd(lambda e: (net.replace(noise_cov=net.noise_cov + e * Es), h))
    np.testing.assert_allclose(np.sum(g_net.noise_cov * Es), num, rtol=1e-5, atol=1e-9)
    num = fd(lambda e: (net.replace(tau=net.tau + e * jnp.array([1.0, 0.0])), h))
    np.testing.assert_allclose(g_net.tau[0], num, rtol=1e-5, atol=1e-9)


def test_checkpoint_off_gives_the_same_gradient():
    """checkpoint=False (no rematerialization) changes memory, not numbers; with
    checkpointed chunks the backward pass of the default (two-stage) integrator keeps
    O(n_chunks + chunk) states, not O(n_steps): measured on the compiled gradient."""
    net = ms.SSN.two_population()
    h = jnp.array([4.0, 3.0])

    def loss(W, remat):
        r = simulate(net.replace(W=W), h, 20.0, 0.5, 4, 3, burn_in=5.0, dtype=jnp.float64,
                     chunk_steps=8, checkpoint=remat)
        return jnp.sum(r.moments.cov) + jnp.sum(r.moments.mean)

    grad = {remat: jax.jit(jax.grad(lambda W: loss(W, remat))).lower(net.W).compile() for remat in (True, False)}
    g1 = grad[True](net.W)
    g0 = grad[False](net.W)
    np.testing.assert_allclose(g0, g1, rtol=1e-12, atol=1e-14)
    # 40 steps in chunks of 8: every step's residuals against 5 chunk carries plus one
    # chunk's residuals (measured: 107 kB against 14 kB of XLA temporaries)
    temp = {remat: g.memory_analysis().temp_size_in_bytes for remat, g in grad.items()}
    assert temp[True] * 3 < temp[False], temp


def test_noise_factor_square_root_equals_default_and_duplication_copies_noise():
    """noise_factor = the symmetric square root reproduces the default run exactly; a
    duplicated factor P L drives an (N+1)-cell copy with the same noise realizations."""
    Sig = np.array([[0.056, 0.01], [0.01, 0.012]])
    net = ms.SSN.two_population().replace(noise_cov=Sig, W=np.zeros((2, 2)))
    h = jnp.array([1.0, 2.0])
    kw = dict(burn_in=0.0, dtype=jnp.float64, return_trajectories=True)
    ref = simulate(net, h, 10.0, 0.5, 3, 5, **kw)
    L = psd_sqrt(jnp.asarray(Sig))
    same = simulate(net, h, 10.0, 0.5, 3, 5, noise_factor=L, **kw)
    np.testing.assert_array_equal(np.asarray(same.trajectories), np.asarray(ref.trajectories))
    # P duplicates cell 0: cells (0, 0', 1) with W = 0 (uncoupled, so the copy is exact)
    P = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    big = ms.SSN(np.zeros((3, 3)), P @ np.asarray(net.tau), P @ Sig @ P.T, net.tau_noise, net.k, net.n)
    dup = simulate(big, P @ np.asarray(h), 10.0, 0.5, 3, 5, noise_factor=P @ np.asarray(L), **kw)
    U, U3 = np.asarray(ref.trajectories), np.asarray(dup.trajectories)
    np.testing.assert_allclose(U3[..., [0, 2]], U, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(U3[..., 1], U3[..., 0])
    # a non-square factor (D = 1, rank-one noise) is allowed
    v = np.array([[0.2], [0.1]])
    # with equal tau and u0 = h, u - h is the same linear filter of eta, and eta_1 = eta_0 / 2
    one = simulate(net.replace(noise_cov=v @ v.T, tau=np.array([10.0, 10.0])), h, 10.0, 0.5, 3, 5,
                   noise_factor=v, u0=h, **kw)
    np.testing.assert_allclose(np.asarray(one.trajectories)[..., 1] - h[1],
                               0.5 * (np.asarray(one.trajectories)[..., 0] - h[0]), atol=1e-12)
    with pytest.raises(ValueError, match="noise_factor must have shape"):
        simulate(net, h, 10.0, 0.5, 3, 5, noise_factor=np.ones((3, 2)))
    with pytest.raises(ValueError, match="L L\\^T = noise_cov"):
        simulate(net, h, 10.0, 0.5, 3, 5, noise_factor=2 * np.asarray(L))


# ---------------------------------------------------------------------------
# sharding over 4 host devices (subprocess)
# ---------------------------------------------------------------------------

_SHARD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, "tests/simulation")
    import test_simulate as T
    assert jax.device_count() == 4, jax.devices()
    res = T._shard_case()
    devs = res.trial_mean.sharding.device_set
    print(json.dumps({"n_dev": len(devs), "mean": np.asarray(res.moments.mean).tolist(),
                      "cov": np.asarray(res.moments.cov).tolist(),
                      "tmean": np.asarray(res.time_resolved.mean).tolist(),
                      "trial_mean": np.asarray(res.trial_mean).tolist()}))
    """
)


def test_sharded_equals_unsharded(shard_ref):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", _SHARD_SCRIPT], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["n_dev"] == 4  # the trial axis really was sharded over the 4 devices
    ref = shard_ref  # this process: one device
    assert len(ref.trial_mean.sharding.device_set) == 1
    np.testing.assert_allclose(out["mean"], ref.moments.mean, rtol=1e-12)
    np.testing.assert_allclose(out["cov"], ref.moments.cov, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out["tmean"], ref.time_resolved.mean, rtol=1e-12)
    np.testing.assert_allclose(out["trial_mean"], ref.trial_mean, rtol=1e-12)


# ---------------------------------------------------------------------------
# argument checking (no compilation)
# ---------------------------------------------------------------------------


def test_threefry_is_jax_threefry():
    """The unrolled hash is bit-identical to the primitive behind jax.random."""
    from jax.extend.random import threefry2x32_p

    rng = np.random.default_rng(0)
    k0, k1, x0, x1 = (jnp.asarray(rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)) for _ in range(4))
    for a, b in zip(threefry2x32(k0, k1, x0, x1), threefry2x32_p.bind(k0, k1, x0, x1)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_argument_errors():
    net = ms.SSN.two_population()
    h = jnp.array([1.0, 1.0])
    with pytest.raises(ValueError, match="burn_in"):
        simulate(net, h, 10.0, 0.5, 2, 0, burn_in=10.0)
    with pytest.raises(ValueError, match="h must have shape"):
        simulate(net, jnp.ones(3), 10.0, 0.5, 2, 0)
    with pytest.raises(ValueError, match="n_groups"):
        simulate(net, h, 10.0, 0.5, 6, 0, n_groups=4)
    with pytest.raises(ValueError, match="eta0"):
        simulate(net, h, 10.0, 0.5, 2, 0, eta0="white")
    assert SimulationResult._fields[0] == "moments"


def test_progress_reports_through_the_callback_and_never_prints(capsys):
    net, h = ms.SSN.two_population(), jnp.array([2.0, 2.0])
    kw = dict(burn_in=2.0, chunk_steps=10)
    events = []
    jax.block_until_ready(simulate(net, h, 10.0, 0.5, 2, 0, progress=events.append, **kw).moments)
    jax.effects_barrier()
    assert [(e.task, e.step, e.total) for e in events] == [("simulate", 1, 2), ("simulate", 2, 2)]
    jax.block_until_ready(simulate(net, h, 10.0, 0.5, 2, 0, **kw).moments)  # silent by default
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="progress must be a callable"):
        simulate(net, h, 10.0, 0.5, 2, 0, progress=True, **kw)
