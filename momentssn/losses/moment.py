"""The moment-matching loss (Echeveste et al. 2020, eq. 7).

For one stimulus, over the M cells that have targets (the first M cells of the
network: its E cells), with mu, var = diag Sigma and Sigma the model's moments
restricted to those cells and starred quantities the targets:

    L = c_mean / M   sum_i (mu_i - mu*_i)^2
      + c_var  / M   sum_i (var_i - var*_i)^2
      + c_cov  / M^2 sum_ij (Sigma_ij - Sigma*_ij)^2          (mV^2, mV^4, mV^4 terms)

with c_mean = 0.01, c_var = 0.02, c_cov = 0.01 by default (``LossWeights``).  The
training loss is the mean of L over the S stimuli.

Where the model's moments come from is another module's business:

* ``momentssn.losses.closure`` -- the Gaussian closure (stationary or transient);
* ``momentssn.losses.simulated`` -- simulated trials (BPTT), and the long-run score.

Every loss returns ``(loss, LossAux)``; :class:`LossAux` is the one record of what an
evaluation saw, whatever produced the moments.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ..closure.stationary import SolveInfo
from ..moments import Moments

__all__ = [
    "LossWeights",
    "LossAux",
    "loss_per_stimulus",
    "moment_loss",
    "loss_arrays",
]


class LossWeights(NamedTuple):
    """Coefficients of the three terms of the loss (eq. 7 of Echeveste et al. 2020).

    c_mean: weight of (1/M) |mu - mu*|^2 (1/mV^2 to make L dimensionless).
    c_var: weight of (1/M) |var - var*|^2 (1/mV^4).
    c_cov: weight of (1/M^2) |Sigma - Sigma*|_F^2 (1/mV^4).
    """

    c_mean: float = 0.01
    c_var: float = 0.02
    c_cov: float = 0.01


class LossAux(NamedTuple):
    """What a loss evaluation saw, besides the loss.

    per_stimulus: (S,) loss of each stimulus (+inf where not stable).
    moments: the model's ``Moments`` for every cell, mean (S, N), cov (S, N, N)
        (meaningless where not stable).
    stable: scalar bool, every stimulus stable and every loss finite (the loss is
        finite and its gradient meaningful iff True).
    stable_per_stimulus: (S,) bool.
    info: the solver's ``SolveInfo`` (stationary closure), else ``None``.
    n_diverged: (S,) int32 diverged trials per stimulus (simulated moments), else
        ``None``.

    The losses on simulated moments (``momentssn.losses.simulated``) fill
    ``n_diverged``, the closure losses ``info``; both are ``LossAux``.
    """

    per_stimulus: jax.Array
    moments: Moments
    stable: jax.Array
    stable_per_stimulus: jax.Array
    info: Optional[SolveInfo] = None
    n_diverged: Optional[jax.Array] = None


# --------------------------------------------------------------------------- the loss itself


def loss_per_stimulus(moments: Moments, target_mean, target_cov, weights: LossWeights = LossWeights()):
    """Eq. 7 for each stimulus.

    Args:
        moments: model ``Moments``, mean (..., N) mV, cov (..., N, N) mV^2, N >= M;
            only the first M cells are compared.
        target_mean: (..., M) target means (mV).
        target_cov: (..., M, M) target covariances (mV^2).
        weights: ``LossWeights``.

    Returns:
        (...,) the loss  c_mean/M |mu - mu*|^2 + c_var/M |var - var*|^2 + c_cov/M^2 |Sigma - Sigma*|_F^2.
    """
    target_mean = jnp.asarray(target_mean)
    target_cov = jnp.asarray(target_cov)
    M = target_mean.shape[-1]
    if target_cov.shape[-2:] != (M, M):
        raise ValueError(f"target_cov must be (..., {M}, {M}) to match target_mean, got {target_cov.shape}")
    if moments.mean.shape[-1] < M:
        raise ValueError(f"the moments cover {moments.mean.shape[-1]} cells, fewer than the M={M} targets")
    mu = moments.mean[..., :M]
    cov = moments.cov[..., :M, :M]
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)
    target_var = jnp.diagonal(target_cov, axis1=-2, axis2=-1)
    e_mean = jnp.sum((mu - target_mean) ** 2, axis=-1) / M
    e_var = jnp.sum((var - target_var) ** 2, axis=-1) / M
    e_cov = jnp.sum((cov - target_cov) ** 2, axis=(-2, -1)) / M**2
    return weights.c_mean * e_mean + weights.c_var * e_var + weights.c_cov * e_cov


def moment_loss(moments: Moments, target_mean, target_cov, weights: LossWeights = LossWeights()):
    """Eq. 7 averaged over stimuli: mean of ``loss_per_stimulus`` (a scalar)."""
    return jnp.mean(loss_per_stimulus(moments, target_mean, target_cov, weights))


def loss_arrays(task_inputs, target_mean, target_cov, weights: LossWeights = LossWeights()):
    """(h_raw (S, N), target_mean (S, M), target_cov (S, M, M), LossWeights) as arrays of
    JAX's default float dtype: the data every loss closes over."""
    dt = jnp.result_type(float)
    return (
        jnp.asarray(task_inputs, dt),
        jnp.asarray(target_mean, dt),
        jnp.asarray(target_cov, dt),
        LossWeights(*(jnp.asarray(w, dt) for w in weights)),
    )
