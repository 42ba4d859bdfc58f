"""The Gaussian moment closure of Hennequin & Lengyel (2016): the equations.

With u ~ N(mu, S), sigma_i^2 = S_ii and the power law r = k [u]_+^n:

    nu_i    = E[r(u_i)],   gamma_i = E[r'(u_i)]                 (momentssn.nonlinearity)
    tau dmu/dt = -mu + h + W nu                                    (mean)
    J = T^-1 (-I + W Gamma),   T = diag(tau),  Gamma = diag(gamma)  (effective Jacobian)

On the augmented state (u, eta), with P = [[S, X], [X^T, Sigma_eta]] and X = Cov(u, eta):

    A = [[J, T^-1], [0, -I/tau_eta]],   D = [[0, 0], [0, 2 Sigma_eta / tau_eta]]
    dP/dt = A P + P A^T + D,  i.e.
        dS/dt = J S + S J^T + T^-1 X^T + X T^-1
        dX/dt = J X - X / tau_eta + T^-1 Sigma_eta
        (the eta block stays at its stationary value Sigma_eta)

At stationarity X is a linear solve and S solves a Lyapunov equation:

    X = -(J - I/tau_eta)^-1 T^-1 Sigma_eta
    J S + S J^T + Q = 0,   Q = T^-1 X^T + X T^-1

Everything here is a pure function of an ``SSN`` and arrays; shapes are for one
stimulus (vmap for batches).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..model import SSN
from .nonlinearity import rate_expectations

__all__ = [
    "expectations",
    "expectations_with_derivatives",
    "effective_jacobian",
    "jacobian_at",
    "mean_velocity",
    "stationary_cross_cov",
    "lyapunov_rhs",
    "covariance_velocity",
    "augmented_system",
]


def _sigma(s: jax.Array) -> jax.Array:
    """sigma = sqrt(s), with a zero-safe gradient at s = 0 (double-where)."""
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def expectations(net: SSN, mu: jax.Array, s: jax.Array):
    """(nu, gamma), each (N,): E[r(u)] (Hz) and E[r'(u)] (Hz/mV) for u_i ~ N(mu_i, s_i).

    mu: (N,) mean (mV); s: (N,) variances (mV^2).
    """
    return rate_expectations(mu, _sigma(jnp.maximum(s, 0.0)), net.k, net.n)


def expectations_with_derivatives(net: SSN, mu: jax.Array, s: jax.Array):
    """(nu, gamma, d/dmu, d/ds) with d/dmu = (nu_mu, gamma_mu), d/ds = (nu_s, gamma_s).

    The derivatives are elementwise (each (N,)), from one forward-mode pass with two
    tangent directions (so the expectation is evaluated once).
    """
    f = lambda m, v: expectations(net, m, v)  # noqa: E731
    one, zero = jnp.ones_like(mu), jnp.zeros_like(mu)
    tangents = (jnp.stack([one, zero]), jnp.stack([zero, one]))
    jvp = lambda tm, ts: jax.jvp(f, (mu, s), (tm, ts))  # noqa: E731
    (nu, gamma), (d_nu, d_gamma) = jax.vmap(jvp, out_axes=(None, 0))(*tangents)
    return nu, gamma, (d_nu[0], d_gamma[0]), (d_nu[1], d_gamma[1])


def effective_jacobian(net: SSN, gamma: jax.Array) -> jax.Array:
    """J = T^-1 (-I + W diag(gamma)), (N, N), in 1/ms."""
    N = net.N
    return (-jnp.eye(N, dtype=net.W.dtype) + net.W * gamma[None, :]) / net.tau[:, None]


def mean_velocity(net: SSN, h: jax.Array, mu: jax.Array, nu: jax.Array) -> jax.Array:
    """dmu/dt = T^-1 (-mu + h + W nu), (N,), in mV/ms."""
    return (-mu + h + net.W @ nu) / net.tau


def jacobian_at(net: SSN, mu: jax.Array, s: jax.Array) -> jax.Array:
    """J (N, N) at mean mu (N,) and variances s (N,): gamma from the closure, then J."""
    _, gamma = expectations(net, mu, s)
    return effective_jacobian(net, gamma)


def stationary_cross_cov(net: SSN, J: jax.Array) -> jax.Array:
    """X = Cov(u, eta) = -(J - I/tau_eta)^-1 T^-1 Sigma_eta, (N, N), mV^2."""
    N = net.N
    M = J - jnp.eye(N, dtype=J.dtype) / net.tau_noise
    return -jnp.linalg.solve(M, net.noise_cov / net.tau[:, None])


def lyapunov_rhs(net: SSN, X: jax.Array) -> jax.Array:
    """Q = T^-1 X^T + X T^-1, (N, N), mV^2/ms."""
    XT = X / net.tau[None, :]
    return XT + XT.T


def covariance_velocity(net: SSN, J: jax.Array, S: jax.Array, X: jax.Array):
    """(dS/dt, dX/dt) of the augmented covariance ODE (see module docstring)."""
    JS = J @ S
    dS = JS + JS.T + lyapunov_rhs(net, X)  # J S + S J^T + Q  (S symmetric)
    dX = J @ X - X / net.tau_noise + net.noise_cov / net.tau[:, None]
    return dS, dX


def augmented_system(net: SSN, J: jax.Array):
    """(A, D) of the augmented linear system on (u, eta), each (2N, 2N)."""
    N = net.N
    Z = jnp.zeros((N, N), dtype=J.dtype)
    Ti = jnp.diag(1.0 / net.tau)
    A = jnp.block([[J, Ti], [Z, -jnp.eye(N, dtype=J.dtype) / net.tau_noise]])
    D = jnp.block([[Z, Z], [Z, 2.0 * net.noise_cov / net.tau_noise]])
    return A, D
