"""Losses (eq. 7, ``momentssn.losses.moment``) of the Gaussian closure's moments.

Two ways to get the model's moments from a parameterization (``momentssn.params``)
and an unconstrained theta, both differentiable and safe for line searches
(``momentssn.losses.gate``: a stimulus without a stable fixed point or with a
non-finite trajectory scores +inf and the whole gradient is exactly 0):

* :func:`stationary_loss` -- the stationary moments (``stationary_solve``, gradients
  by implicit differentiation);
* :func:`transient_loss` -- the moments propagated from rest for ``t_max`` ms
  (``propagate_moments``, gradients through the RK4 steps), averaged over the last
  ``t_avg`` ms (:func:`time_averaged_moments`).

And one forward-only score of a finished network (concrete values, for growth and the
comparison of training methods): :func:`network_closure_loss`.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..closure.stationary import SolveInfo, stationary_solve
from ..closure.transient import propagate_moments
from ..moments import Moments
from .gate import finish, gated
from .moment import LossWeights, loss_arrays, loss_per_stimulus

__all__ = [
    "stationary_loss",
    "transient_loss",
    "time_averaged_moments",
    "ClosureScore",
    "network_closure_loss",
]


# --------------------------------------------------------------------------- stationary


def stationary_loss(
    param,
    theta,
    task_inputs,
    target_mean,
    target_cov,
    weights: LossWeights = LossWeights(),
    init=None,
):
    """Loss (eq. 7) of the stationary closure moments of ``param.network(theta)``.

    The network input is ``param.inputs(theta, task_inputs)`` and the moments come
    from ``momentssn.stationary_solve`` (gradients by implicit differentiation).

    Args:
        param: a parameterization (``momentssn.params``).
        theta: (param.size,) unconstrained parameters.
        task_inputs: (S, N) or (N,) raw inputs h~ of the task.
        target_mean: (S, M) target means (mV), M <= N (the first M cells).
        target_cov: (S, M, M) target covariances (mV^2).
        weights: ``LossWeights``.
        init: optional warm start of the stationary solver (anything
            ``stationary_solve`` accepts, e.g. ``aux.info.warm_start`` of the previous
            evaluation in a fit); no gradient.

    Returns:
        (loss, aux): the mean over stimuli (scalar), and a ``LossAux``.  If any
        stimulus has no stable converged fixed point, loss = +inf and the gradient
        w.r.t. theta is 0.  Traceable: use under ``jax.jit`` / ``jax.value_and_grad``
        (``has_aux=True``).
    """
    args = loss_arrays(task_inputs, target_mean, target_cov, weights)

    def compute(theta, h_raw, t_mean, t_cov, w, init):
        net = param.network(theta)
        init = None if init is None else jax.lax.stop_gradient(init)
        moments, info = stationary_solve(net, param.inputs(theta, h_raw), init)
        per = loss_per_stimulus(moments, t_mean, t_cov, w)
        ok = info.stable & jnp.isfinite(per)
        return per, ok, (moments, info)

    per, ok, (moments, info) = gated(compute)(theta, *args, init)
    info = SolveInfo(
        info.converged > 0.5, info.iterations.astype(jnp.int32), info.residual, info.max_real_eig,
        info.warm_start,
    )
    return finish(per, ok, moments, info=info)


# --------------------------------------------------------------------------- transient


def time_averaged_moments(traj_mean, traj_cov, pooled: bool = False) -> Moments:
    """Time average (trapezoidal rule, equally spaced samples) of moment trajectories.

    Args:
        traj_mean: (..., T, N) means mu(t) (mV).
        traj_cov: (..., T, N, N) instantaneous covariances Sigma(t) (mV^2).
        pooled: False (default): Sigma_bar = <Sigma(t)>_t, the average of the
            instantaneous (across-trial) covariances.  True: the covariance of samples
            pooled over trials and the time window,
            <Sigma(t)>_t + <(mu(t) - mu_bar)(mu(t) - mu_bar)^T>_t  (adds the temporal
            spread of the mean; equal when mu(t) is constant over the window).

    Returns:
        ``Moments(mu_bar (..., N), Sigma_bar (..., N, N))``, mu_bar = <mu(t)>_t.
    """
    T = traj_mean.shape[-2]
    if T == 1:
        w = jnp.ones((1,), traj_mean.dtype)
    else:
        w = jnp.ones((T,), traj_mean.dtype).at[0].set(0.5).at[-1].set(0.5) / (T - 1)
    mean = jnp.einsum("t,...tn->...n", w, traj_mean)
    cov = jnp.einsum("t,...tnm->...nm", w, traj_cov)
    if pooled:
        dev = traj_mean - mean[..., None, :]
        cov = cov + jnp.einsum("t,...tn,...tm->...nm", w, dev, dev)
    return Moments(mean, cov)


def transient_loss(
    param,
    theta,
    task_inputs,
    target_mean,
    target_cov,
    weights: LossWeights = LossWeights(),
    t_max: float = 500.0,
    dt: float = 0.5,
    t_avg: float = 100.0,
    sample_every: float = 1.0,
    pooled: bool = False,
):
    """Loss (eq. 7) of the closure moments propagated from rest, time-averaged.

    The mean and covariance are integrated by ``momentssn.propagate_moments`` (RK4,
    step ``dt`` ms) from u = 0 (mu = 0, Sigma = 0, Cov(u, eta) = 0) for ``t_max`` ms,
    and averaged over the window [t_max - t_avg, t_max] (trapezoidal rule on samples
    every ``sample_every`` ms).  By default the averaged covariance is the average of
    the *instantaneous* covariances <Sigma(t)>_t, not the covariance of samples pooled
    over time (``pooled=True`` adds <(mu(t) - mu_bar)(mu(t) - mu_bar)^T>_t, see
    :func:`time_averaged_moments`).  Only the window is stored (the first
    t_max - t_avg ms are integrated without saving).

    Args:
        param, theta, task_inputs, target_mean, target_cov, weights: as in
            :func:`stationary_loss`.
        t_max: total duration (ms); t_avg: length of the averaging window (ms),
            0 < t_avg <= t_max; dt: RK4 step (ms); sample_every: spacing of the samples
            in the window (ms), rounded to a multiple of dt that divides the window.
        pooled: see above.

    Returns:
        (loss, aux) as in :func:`stationary_loss` (``aux.info`` is None).  A stimulus
        whose trajectory is not finite gets +inf and then the gradient is 0.
        Gradients by reverse mode through the RK4 steps.
    """
    if not (0 < t_avg <= t_max):
        raise ValueError(f"need 0 < t_avg <= t_max, got t_avg={t_avg}, t_max={t_max}")
    if not dt > 0:
        raise ValueError(f"dt must be > 0 (ms), got {dt}")
    n_pre = int(round((t_max - t_avg) / dt))
    n_win = max(1, int(round(t_avg / dt)))
    every = max(1, min(n_win, int(round(sample_every / dt))))
    while n_win % every:  # a sample spacing that divides the window exactly
        every -= 1
    args = loss_arrays(task_inputs, target_mean, target_cov, weights)

    def compute(theta, h_raw, t_mean, t_cov, w):
        net = param.network(theta)
        h = param.inputs(theta, h_raw)
        init = {}
        if n_pre > 0:
            pre = propagate_moments(net, h, n_pre * dt, dt, save_every=n_pre)
            init = dict(
                mean0=pre.mean[..., -1, :],
                cov0=pre.cov[..., -1, :, :],
                cross_cov0=pre.cross_cov[..., -1, :, :],
            )
        win = propagate_moments(net, h, n_win * dt, dt, save_every=every, **init)
        moments = time_averaged_moments(win.mean, win.cov, pooled=pooled)
        per = loss_per_stimulus(moments, t_mean, t_cov, w)
        finite = jnp.all(jnp.isfinite(win.mean), axis=(-2, -1)) & jnp.all(
            jnp.isfinite(win.cov), axis=(-3, -2, -1)
        )
        ok = finite & jnp.isfinite(per)
        return per, ok, moments

    per, ok, moments = gated(compute)(theta, *args)
    return finish(per, ok, moments)


# --------------------------------------------------------------------------- score of a network


class ClosureScore(NamedTuple):
    """The stationary closure's verdict on a network (:func:`network_closure_loss`).

    loss: eq. 7 averaged over stimuli; ``inf`` unless every stimulus is stable.
    per_stimulus: (S,) eq. 7 per stimulus (``inf`` where that stimulus is not stable).
    stable: every stimulus has a converged fixed point with Re eig J < 0 (and a finite loss).
    converged: Newton converged for every stimulus.
    max_real_eig: largest real part of the eigenvalues of J over the stimuli (1/ms).
    moments: the stationary ``Moments`` of every cell, mean (S, N), cov (S, N, N),
        when stable; ``None`` otherwise.
    """

    loss: float
    per_stimulus: np.ndarray
    stable: bool
    converged: bool
    max_real_eig: float
    moments: Optional[Moments]


_loss_per_stimulus_jit = jax.jit(loss_per_stimulus)


def network_closure_loss(net, inputs, target_mean, target_cov,
                         weights: LossWeights = LossWeights()) -> ClosureScore:
    """Eq. 7 on the stationary closure moments of ``net`` (forward only, concrete).

    The same loss as :func:`stationary_loss`, for a network already built (no
    parameterization, no gradient): what growth checks between stages and what the
    comparison of training methods reports beside the simulated score.

    Args:
        net: an ``SSN`` with N cells.
        inputs: (S, N) or (N,) its inputs h (mV), in cell order.
        target_mean: (S, M) or (M,) targets of the first M cells (mV), M <= N.
        target_cov: (S, M, M) or (M, M) (mV^2).
        weights: ``LossWeights``.

    Returns:
        :class:`ClosureScore` (python floats and numpy arrays; never NaN: an unstable
        stimulus scores ``inf``).
    """
    h = jnp.asarray(inputs, net.W.dtype)
    moments, info = stationary_solve(net, h)
    ok = np.atleast_1d(np.asarray(info.stable))
    converged = bool(np.all(np.asarray(info.converged)))
    eig = float(np.max(np.asarray(info.max_real_eig)))
    per = np.atleast_1d(np.asarray(_loss_per_stimulus_jit(
        moments, jnp.asarray(target_mean, h.dtype), jnp.asarray(target_cov, h.dtype),
        LossWeights(*(float(w) for w in weights))), np.float64))
    ok = ok & np.isfinite(per)
    per = np.where(ok, per, np.inf)
    stable = bool(np.all(ok))
    loss = float(np.mean(per)) if stable else float("inf")
    return ClosureScore(loss, per, stable, converged, eig, moments if stable else None)
