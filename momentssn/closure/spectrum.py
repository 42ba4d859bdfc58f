"""Linearized second-order statistics at the stationary point: lagged covariances and spectra.

Around the stationary moments the closure is a linear system on x = (u, eta):

    dx = A x dt + noise,   A = [[J, T^-1], [0, -I/tau_eta]],  noise covariance D dt
    P = [[S, X], [X^T, Sigma_eta]]   (stationary covariance of x)

Time-lagged covariance (lag >= 0, ms):

    C(lag) = Cov(u(t + lag), u(t)) = [expm(A lag) P]_uu ,   C(-lag) = C(lag)^T

Power spectral density of u (two-sided, f in Hz, so that int S(f) df = Var(u)):

    S_u(f) = G(w) Sigma_eta G(w)^H * 2 tau_eta / (1 + (w tau_eta)^2) * 1e-3,
    G(w) = (i w I - J)^-1 T^-1,   w = 2 pi f / 1000  (rad/ms)

(eta is an OU process with spectrum Sigma_eta 2 tau_eta / (1 + w^2 tau_eta^2) in mV^2 ms;
the factor 1e-3 converts mV^2 ms to mV^2/Hz.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from . import equations as closure
from ..model import SSN, check_finite
from ..moments import Moments
from .arguments import check_moments, check_net, check_stimulus, check_vector
from .stationary import stationary_moments

__all__ = ["lagged_covariance", "power_spectrum", "peak_frequency", "SpectralPeak"]


def _stationary(net: SSN, h, moments):
    """Checked h (N,) or (B, N) and its stationary moments (given, or solved here)."""
    h = check_stimulus(net, h)
    if moments is None:
        return h, stationary_moments(net, h)
    return h, check_moments(net, moments, h.shape[:-1])


def _lagged_one(net: SSN, mean, cov, lags):
    J = closure.jacobian_at(net, mean, jnp.diagonal(cov))
    X = closure.stationary_cross_cov(net, J)
    A, _ = closure.augmented_system(net, J)
    N = net.N
    P_u = jnp.concatenate([cov, X.T], axis=0)  # (2N, N): columns of P for the u block

    def one(lag):
        E = expm(A * jnp.abs(lag))
        C = (E @ P_u)[:N]
        return jnp.where(lag >= 0, C, C.T)

    return jax.vmap(one)(lags)


def lagged_covariance(net: SSN, h, lags, moments: Moments | None = None) -> jax.Array:
    """Cov(u(t + lag), u(t)) at the stationary point, (.., L, N, N) in mV^2.

    Args:
        net: the network.
        h: (N,) or (B, N) input (mV).
        lags: (L,) lags in ms, finite (negative lags give the transpose).
        moments: the stationary moments if already computed (else computed here).

    Raises:
        ValueError: a bad argument; UnstableNetworkError: see ``stationary_moments``.
    """
    lags = check_vector("lags", lags, check_net(net).W.dtype)
    h, m = _stationary(net, h, moments)
    f = lambda mu, S: _lagged_one(net, mu, S, lags)  # noqa: E731
    return jax.vmap(f)(m.mean, m.cov) if h.ndim == 2 else f(m.mean, m.cov)


def _spectrum_one(net: SSN, mean, cov, freqs, full: bool):
    J = closure.jacobian_at(net, mean, jnp.diagonal(cov))
    N = net.N
    w = 2.0 * jnp.pi * freqs / 1000.0  # rad/ms
    cdt = jnp.result_type(J.dtype, jnp.complex64)
    eye = jnp.eye(N, dtype=cdt)
    Ti = (1.0 / net.tau).astype(cdt)

    def one(wk):
        G = jnp.linalg.solve(1j * wk * eye - J.astype(cdt), jnp.diag(Ti))
        GS = G @ net.noise_cov.astype(cdt)
        scale = 2.0 * net.tau_noise / (1.0 + (wk * net.tau_noise) ** 2) * 1e-3
        if full:
            return GS @ G.conj().T * scale
        return jnp.real(jnp.sum(GS * G.conj(), axis=1)) * scale

    return jax.vmap(one)(w)


def power_spectrum(
    net: SSN, h, freqs, moments: Moments | None = None, full: bool = False
) -> jax.Array:
    """Power spectral density of u at the stationary point (two-sided, mV^2/Hz).

    Args:
        net: the network.
        h: (N,) or (B, N) input (mV).
        freqs: (F,) frequencies in Hz, finite.
        moments: the stationary moments if already computed.
        full: return the cross-spectral matrices (.., F, N, N) (complex) instead of
            the auto-spectra (.., F, N) (real).

    Raises:
        ValueError: a bad argument; UnstableNetworkError: see ``stationary_moments``.
    """
    freqs = check_vector("freqs", freqs, check_net(net).W.dtype)
    h, m = _stationary(net, h, moments)
    f = lambda mu, S: _spectrum_one(net, mu, S, freqs, full)  # noqa: E731
    return jax.vmap(f)(m.mean, m.cov) if h.ndim == 2 else f(m.mean, m.cov)


class SpectralPeak(NamedTuple):
    """The spectral peak along the frequency axis (``peak_frequency``).

    has_peak: (..) bool, the spectrum has an interior local maximum in the band.
    frequency: (..) Hz, that of the highest interior maximum; 0.0 where ``has_peak``
        is False (no peak: a sentinel, not a frequency; mask it with ``has_peak``).
    power: (..) the spectrum there (its units); 0.0 where ``has_peak`` is False.
    """

    has_peak: jax.Array
    frequency: jax.Array
    power: jax.Array


def peak_frequency(freqs, spectrum, fmin: float = 1.0, fmax: float | None = None) -> SpectralPeak:
    """The highest interior local maximum of a spectrum in the band [fmin, fmax] (Hz).

    A peak is a sample i with S[i - 1] < S[i] >= S[i + 1] (neighbours outside the
    band count) and fmin <= f[i] <= fmax; the first and last samples of ``freqs``
    never are.  A spectrum that only falls (or only rises) across the band has no
    peak: its largest value at the band's edge is not a rhythm.

    Args:
        freqs: (F,) strictly increasing, finite frequencies (Hz), F >= 3.
        spectrum: (.., F) or (.., F, N) power, finite (the F axis is the last one
            whose length is F, checked from the end).
        fmin, fmax: the band (Hz); default fmax: no upper limit.

    Returns:
        ``SpectralPeak(has_peak, frequency, power)``, each (..) or (.., N).
    """
    freqs = check_vector("freqs", freqs, jnp.result_type(float), increasing=True)
    spectrum = jnp.asarray(spectrum)
    F = freqs.shape[0]
    if F < 3:
        raise ValueError(f"freqs must hold at least 3 frequencies to find a peak, got {F}")
    if spectrum.ndim >= 1 and spectrum.shape[-1] == F:
        axis = spectrum.ndim - 1
    elif spectrum.ndim >= 2 and spectrum.shape[-2] == F:
        axis = spectrum.ndim - 2
    else:
        raise ValueError(f"spectrum must have shape (.., {F}) or (.., {F}, N) to match freqs, "
                         f"got {spectrum.shape}")
    check_finite("spectrum", spectrum)
    S = jnp.moveaxis(spectrum, axis, -1)  # (.., F) or (.., N, F)
    hi = jnp.inf if fmax is None else fmax
    in_band = (freqs >= fmin) & (freqs <= hi)
    interior = (S[..., 1:-1] > S[..., :-2]) & (S[..., 1:-1] >= S[..., 2:]) & in_band[1:-1]
    masked = jnp.where(interior, S[..., 1:-1], -jnp.inf)
    i = jnp.argmax(masked, axis=-1)
    has = jnp.any(interior, axis=-1)
    power = jnp.take_along_axis(S[..., 1:-1], i[..., None], axis=-1)[..., 0]
    return SpectralPeak(has, jnp.where(has, freqs[1:-1][i], 0.0), jnp.where(has, power, 0.0))
