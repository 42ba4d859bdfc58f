"""Every public closure function refuses bad arguments with a ValueError naming them,
and reports what failed when a network is unstable (never NaN returned as moments)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms

NET = ms.SSN.two_population()
H = jnp.array([2.0, 2.0])
M = ms.Moments(jnp.zeros(2), 0.1 * jnp.eye(2))
NAN2 = jnp.array([np.nan, 1.0])
# W_EE = 50: the mean dynamics run away from rest
RUNAWAY = NET.replace(W=jnp.array([[50.0, -0.65], [1.2, -0.5]]))

BAD_CALLS = [
    (lambda: ms.stationary_moments(NET, jnp.ones((2, 3))), "h must have shape"),
    (lambda: ms.stationary_moments(NET, jnp.ones((0, 2))), "h must hold at least one"),
    (lambda: ms.stationary_moments("net", H), "net must be an SSN"),
    (lambda: ms.stationary_solve(NET, jnp.array([np.inf, 1.0])), "h contains NaN or inf"),
    (lambda: ms.stationary_solve(NET, H, init=jnp.ones(3)), "init must have shape"),
    (lambda: ms.propagate_moments(NET, H, 10.0, np.nan), "dt must be finite"),
    (lambda: ms.propagate_moments(NET, H, np.inf, 0.5), "t_max must be finite"),
    (lambda: ms.propagate_moments(NET, H, 0.1, 0.5), "t_max must be at least one step"),
    (lambda: ms.propagate_moments(NET, H, 10.0, 0.5, save_every=2.5),
     "save_every must be a positive integer"),
    (lambda: ms.propagate_moments(NET, H, 10.0, 0.5, save_every=21), "save_every must be <="),
    (lambda: ms.propagate_moments(NET, H, 1e6, 1e-6), "raise dt"),
    (lambda: ms.propagate_moments(NET, H, 10.0, 0.5, mean0=NAN2), "mean0 contains NaN"),
    (lambda: ms.propagate_moments(NET, H, 10.0, 0.5, cov0=jnp.eye(3)), "cov0 must have shape"),
    (lambda: ms.power_spectrum(NET, H, jnp.array([1.0, np.nan])), "freqs contains NaN"),
    (lambda: ms.power_spectrum(NET, H, jnp.ones((2, 2))), "freqs must be a non-empty 1-D"),
    (lambda: ms.power_spectrum(NET, H, jnp.ones(3), moments=ms.Moments(NAN2, jnp.eye(2))),
     "moments.mean contains NaN"),
    (lambda: ms.power_spectrum(NET, H, jnp.ones(3), moments=ms.Moments(jnp.zeros(3), jnp.eye(3))),
     "moments must have mean"),
    (lambda: ms.lagged_covariance(NET, H, jnp.array([np.inf]), moments=M), "lags contains NaN"),
    (lambda: ms.lagged_covariance(NET, NAN2, jnp.zeros(1)), "h contains NaN"),
    (lambda: ms.peak_frequency(jnp.array([0.0, 2.0, 1.0]), jnp.ones(3)), "freqs must be strictly increasing"),
    (lambda: ms.peak_frequency(jnp.arange(3.0), jnp.ones(4)), "spectrum must have shape"),
    (lambda: ms.peak_frequency(jnp.arange(3.0), jnp.array([1.0, np.nan, 1.0])), "spectrum contains NaN"),
    (lambda: ms.peak_frequency(jnp.arange(2.0), jnp.ones(2)), "at least 3 frequencies"),
    (lambda: ms.rate_expectations(1.0, -1.0, 0.3, 2.0), "sigma must be >= 0"),
    (lambda: ms.rate_expectations(1.0, 1.0, 0.0, 2.0), "k must be > 0"),
    (lambda: ms.rate_expectations(1.0, 1.0, 0.3, 0.5), "n must be >= 1"),
    (lambda: ms.rate_expectations(np.nan, 1.0, 0.3, 2.0), "mu contains NaN"),
    (lambda: ms.rate_expectations(jnp.ones(2), jnp.ones(3), 0.3, 2.0), "must broadcast together"),
    (lambda: ms.rectified_moment(0.0, 1.0, -1.0), "p must be >= 0"),
    (lambda: ms.rectified_moment(0.0, np.inf, 2.0), "sigma contains NaN"),
    (lambda: ms.solve_lyapunov(jnp.ones((2, 3)), jnp.ones((2, 3))), "A must be a square"),
    (lambda: ms.solve_lyapunov(-jnp.eye(2), jnp.eye(3)), "Q must have the shape of A"),
    (lambda: ms.solve_lyapunov(-jnp.eye(2), jnp.full((2, 2), np.nan)), "Q contains NaN"),
    (lambda: ms.cross_covariance(NET, ms.Moments(jnp.zeros(2), jnp.eye(3))), "moments must have mean"),
    (lambda: ms.cross_covariance(NET, (jnp.zeros(2), jnp.eye(2))), "moments must be a Moments"),
    (lambda: ms.noise_only_variance(np.eye(2)), "net must be an SSN"),
]


@pytest.mark.parametrize("call, match", BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_bad_arguments_raise_value_errors_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_propagate_moments_on_a_runaway_network_names_stimulus_time_and_cause():
    H2 = jnp.array([[2.0, 2.0], [-5.0, 0.0]])  # the second stays near rest
    with pytest.raises(ms.MomentsDivergedError) as err:
        ms.propagate_moments(RUNAWAY, H2, 100.0, 0.5)
    e = err.value
    assert isinstance(e, ms.UnstableNetworkError)
    assert e.stimulus == 0 and 0 < e.time_ms <= 100.0 and e.max_real_eig > 0
    assert "stimulus 0" in str(e) and "unstable" in str(e) and f"t = {e.time_ms:.6g} ms" in str(e)
    # inside jit nothing raises: the trajectory reports where it diverged.  The time is
    # the first saved time with a non-finite moment (checked against the arrays), and
    # the moments before it are finite.
    tr = jax.jit(lambda h: ms.propagate_moments(RUNAWAY, h, 100.0, 0.5))(H2)
    when = np.asarray(tr.diverged_at)
    assert when[0] == e.time_ms and np.isinf(when[1])
    first = int(np.argmax(~np.isfinite(np.asarray(tr.mean[0])).all(-1)))
    assert float(tr.t[first]) == when[0] and np.all(np.isfinite(tr.mean[0, :first]))
    assert np.all(np.isfinite(np.asarray(tr.mean[1])))


def test_propagate_moments_with_too_large_a_step_blames_the_step():
    # a stable network, an RK4 step far beyond its stability limit (tau_I = 10 ms)
    with pytest.raises(ms.MomentsDivergedError, match="dt = 60.0 ms is too large"):
        ms.propagate_moments(NET, H, 6000.0, 60.0)


def test_unstable_network_errors_say_what_failed():
    with pytest.raises(ms.UnstableNetworkError, match="^Newton found no fixed point for stimulus 0") as err:
        ms.stationary_moments(RUNAWAY, H)
    assert "-0." not in str(err.value)  # no stable eigenvalue offered as the reason
    # the oscillatory unstable fixed point of test_stationary: the eigenvalue, signed
    net = ms.SSN(np.array([[2.5, -1.3], [2.4, -1.0]]), np.array([20.0, 200.0]), 0.001 * np.eye(2), 20.0)
    unstable = r"unstable: largest real part of the eigenvalues of J = \+"
    with pytest.raises(ms.UnstableNetworkError, match=unstable) as err:
        ms.stationary_moments(net, jnp.array([10.0, 10.0]))
    assert f"{err.value.max_real_eig:+.4g} /ms" in str(err.value)
    # Newton stops at the mean's fixed point at the noise-only variances (no stationary
    # covariance exists where J is unstable): check both facts with numpy
    m, info = ms.stationary_solve(net, jnp.array([10.0, 10.0]))
    assert not bool(info.converged) and float(info.mean_residual) < 1e-6
    mu, s0 = np.asarray(m.mean), np.asarray(ms.noise_only_variance(net))
    nu, gamma = (np.asarray(x) for x in ms.rate_expectations(mu, np.sqrt(s0), 0.3, 2.0))
    W, tau = np.asarray(net.W), np.asarray(net.tau)
    assert np.max(np.abs(-mu + 10.0 + W @ nu)) < 1e-6 * (1 + np.abs(mu).max())
    J = (-np.eye(2) + W * gamma[None, :]) / tau[:, None]
    assert np.isclose(np.linalg.eigvals(J).real.max(), err.value.max_real_eig, rtol=1e-8)
    assert err.value.max_real_eig == float(info.max_real_eig) > 0


def test_version(monkeypatch):
    import tomllib
    from importlib import metadata
    from pathlib import Path

    assert ms.__version__ == metadata.version("momentssn")
    # a source tree that was not installed: pyproject.toml's version

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    pyproject = tomllib.loads((Path(ms.__file__).parents[1] / "pyproject.toml").read_text())
    assert ms._version() == pyproject["project"]["version"]
