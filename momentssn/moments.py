"""Containers for first and second moments of the membrane potential (pytrees)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

__all__ = ["Moments", "MomentTrajectory", "symmetrize", "std", "correlation"]


def symmetrize(C: jax.Array) -> jax.Array:
    """(C + C^T) / 2 over the last two axes."""
    return 0.5 * (C + jnp.swapaxes(C, -1, -2))


class Moments(NamedTuple):
    """Mean (..., N) in mV and covariance (..., N, N) in mV^2 of u."""

    mean: jax.Array
    cov: jax.Array

    var = property(lambda self: variance(self.cov), doc="(..., N) variances (mV^2).")
    std = property(lambda self: std(self.cov), doc="(..., N) standard deviations (mV).")


class MomentTrajectory(NamedTuple):
    """Time-resolved moments of u.

    t: (T,) times (ms); mean: (..., T, N); cov: (..., T, N, N);
    cross_cov: (..., T, N, N) the u-eta cross-covariance Cov(u_i, eta_j), or None.
    diverged_at: (...) the first time (ms) at which the moments are not finite, +inf
        where they stay finite (``propagate_moments`` fills it; inside ``jit`` it is
        how divergence is reported), or None.
    """

    t: jax.Array
    mean: jax.Array
    cov: jax.Array
    cross_cov: Optional[jax.Array] = None
    diverged_at: Optional[jax.Array] = None

    var = property(lambda self: variance(self.cov), doc="(..., T, N) variances (mV^2).")
    std = property(lambda self: std(self.cov), doc="(..., T, N) standard deviations (mV).")

    def at(self, i: int) -> Moments:
        """Moments at time index ``i``."""
        return Moments(self.mean[..., i, :], self.cov[..., i, :, :])


def variance(cov: jax.Array) -> jax.Array:
    """Variances from a covariance (..., N, N) -> (..., N)."""
    return jnp.diagonal(cov, axis1=-2, axis2=-1)


def std(cov: jax.Array) -> jax.Array:
    """Standard deviations from a covariance (..., N, N) -> (..., N)."""
    return jnp.sqrt(jnp.maximum(variance(cov), 0.0))


def correlation(cov: jax.Array) -> jax.Array:
    """Correlation matrix from a covariance (..., N, N); zero-variance rows give 0."""
    s = std(cov)
    d = s[..., :, None] * s[..., None, :]
    return jnp.where(d > 0, cov / jnp.where(d > 0, d, 1.0), 0.0)
