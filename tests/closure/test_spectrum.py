"""Lagged covariances and power spectra at the stationary point."""

import jax.numpy as jnp
import numpy as np

import momentssn as ms

NET = ms.SSN.two_population()


def test_zero_lag_is_the_stationary_covariance_and_symmetry():
    h = jnp.array([5.0, 5.0])
    st = ms.stationary_moments(NET, h)
    C = ms.lagged_covariance(NET, h, jnp.array([0.0, 7.0, -7.0]), moments=st)
    assert np.allclose(C[0], st.cov, rtol=1e-10)
    assert np.allclose(C[1], C[2].T, rtol=1e-12)


def test_ou_autocovariance_closed_form():
    # W = 0, one neuron: C(l) = s2 tn/(tn^2 - t^2) (tn e^{-l/tn} - t e^{-l/t})
    t, tn, s2 = 10.0, 30.0, 0.5
    net = ms.SSN(np.zeros((1, 1)), np.array([t]), np.array([[s2]]), tn)
    lags = jnp.array([0.0, 5.0, 20.0, 80.0])
    C = np.asarray(ms.lagged_covariance(net, jnp.zeros(1), lags))[:, 0, 0]
    L = np.asarray(lags)
    ref = s2 * tn / (tn**2 - t**2) * (tn * np.exp(-L / tn) - t * np.exp(-L / t))
    assert np.allclose(C, ref, rtol=1e-10)


def test_spectrum_integrates_to_variance_and_transforms_to_lagged_cov():
    h = jnp.array([15.0, 15.0])
    st = ms.stationary_moments(NET, h)
    f = jnp.linspace(-3000.0, 3000.0, 600001)
    Sf = np.asarray(ms.power_spectrum(NET, h, f, moments=st))
    df = float(f[1] - f[0])
    var = Sf.sum(axis=0) * df
    assert np.allclose(var, np.asarray(st.var), rtol=2e-3)
    lag = 10.0  # ms
    full = np.asarray(ms.power_spectrum(NET, h, f[::10], moments=st, full=True))
    C_ft = np.real(np.sum(full * np.exp(2j * np.pi * np.asarray(f[::10])[:, None, None] * lag / 1000), axis=0)) * df * 10
    C = np.asarray(ms.lagged_covariance(NET, h, jnp.array([lag]), moments=st))[0]
    assert np.allclose(C_ft, C, rtol=1e-2, atol=1e-3 * np.abs(C).max())


def test_input_speeds_up_dynamics_and_peak_frequency():
    # Stronger input quenches variability and speeds up the dynamics: the spectrum
    # broadens (the frequency where power halves increases with h).
    H = jnp.array([[2.0, 2.0], [15.0, 15.0]])
    f = jnp.linspace(0.0, 150.0, 301)
    Sf = np.asarray(ms.power_spectrum(NET, H, f))[..., 0]
    half = [float(f[np.argmax(S < 0.5 * S[0])]) for S in Sf]
    assert half[1] > 1.5 * half[0]
    # peak_frequency finds the maximum above fmin along the frequency axis
    bump = np.exp(-((np.asarray(f) - 40.0) ** 2) / 50.0)
    spec = np.stack([bump, np.roll(bump, 20)])[:, :, None] * np.ones(3)
    pk = np.asarray(ms.peak_frequency(f, jnp.asarray(spec)).frequency)
    assert pk.shape == (2, 3) and np.allclose(pk[0], 40.0) and np.allclose(pk[1], 50.0)


def test_peak_frequency_reports_no_peak_without_an_interior_maximum():
    # One leaky neuron driven by OU noise: S(f) = s2 tn 2e-3 / ((1 + (w t)^2)(1 + (w tn)^2))
    # falls monotonically: no peak, even though its largest value in [5, 120] Hz sits at 5 Hz.
    t, tn, s2 = 10.0, 30.0, 0.5
    net = ms.SSN(np.zeros((1, 1)), np.array([t]), np.array([[s2]]), tn)
    f = np.linspace(0.0, 120.0, 241)
    S = np.asarray(ms.power_spectrum(net, jnp.zeros(1), jnp.asarray(f)))[:, 0]
    w = 2 * np.pi * f / 1000
    assert np.allclose(S, s2 * 2 * tn * 1e-3 / ((1 + (w * t) ** 2) * (1 + (w * tn) ** 2)), rtol=1e-10)
    flat = ms.peak_frequency(f, S, fmin=5.0)
    assert not bool(flat.has_peak) and float(flat.frequency) == 0.0 and float(flat.power) == 0.0
    # the same fall-off with a gamma bump at 40 Hz: a peak, at the sample numpy finds
    bumped = S + 0.2 * S[0] * np.exp(-((f - 40.0) ** 2) / 20.0)
    i = 1 + np.flatnonzero((bumped[1:-1] > bumped[:-2]) & (bumped[1:-1] >= bumped[2:]))
    assert i.size == 1 and abs(f[i[0]] - 40.0) < 2.0
    both = ms.peak_frequency(f, jnp.asarray(np.stack([S, bumped], axis=1)), fmin=5.0)  # (F, 2)
    assert np.array_equal(np.asarray(both.has_peak), [False, True])
    assert np.array_equal(np.asarray(both.frequency), [0.0, f[i[0]]])
    assert float(both.power[1]) == bumped[i[0]]
    # a band that excludes the bump has no peak
    assert not bool(ms.peak_frequency(f, bumped, fmin=5.0, fmax=30.0).has_peak)
