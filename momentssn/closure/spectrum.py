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

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from . import equations as closure
from ..model import SSN
from ..moments import Moments
from .stationary import stationary_moments

__all__ = ["lagged_covariance", "power_spectrum", "peak_frequency"]


def _stationary(net: SSN, h, moments):
    h = jnp.asarray(h, net.W.dtype)
    m = stationary_moments(net, h) if moments is None else moments
    return h, m


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
        lags: (L,) lags in ms (negative lags give the transpose).
        moments: the stationary moments if already computed (else computed here).
    """
    h, m = _stationary(net, h, moments)
    lags = jnp.asarray(lags, net.W.dtype)
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
        freqs: (F,) frequencies in Hz.
        moments: the stationary moments if already computed.
        full: return the cross-spectral matrices (.., F, N, N) (complex) instead of
            the auto-spectra (.., F, N) (real).
    """
    h, m = _stationary(net, h, moments)
    freqs = jnp.asarray(freqs, net.W.dtype)
    f = lambda mu, S: _spectrum_one(net, mu, S, freqs, full)  # noqa: E731
    return jax.vmap(f)(m.mean, m.cov) if h.ndim == 2 else f(m.mean, m.cov)


def peak_frequency(freqs, spectrum, fmin: float = 1.0) -> jax.Array:
    """Frequency (Hz) of the largest spectral power above ``fmin``, along the F axis.

    freqs: (F,); spectrum: (.., F) or (.., F, N) -> (..) or (.., N).
    """
    freqs = jnp.asarray(freqs)
    spectrum = jnp.asarray(spectrum)
    axis = spectrum.ndim - 1 if spectrum.shape[-1] == freqs.shape[0] else spectrum.ndim - 2
    mask_shape = [1] * spectrum.ndim
    mask_shape[axis] = -1
    masked = jnp.where((freqs >= fmin).reshape(mask_shape), spectrum, -jnp.inf)
    return freqs[jnp.argmax(masked, axis=axis)]
