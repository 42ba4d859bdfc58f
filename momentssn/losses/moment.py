"""Moment-matching losses (Echeveste et al. 2020, eq. 7).

For one stimulus, over the M cells that have targets (the first M cells of the
network: its E cells), with mu, var = diag Sigma and Sigma the model's moments
restricted to those cells and starred quantities the targets:

    L = c_mean / M   sum_i (mu_i - mu*_i)^2
      + c_var  / M   sum_i (var_i - var*_i)^2
      + c_cov  / M^2 sum_ij (Sigma_ij - Sigma*_ij)^2          (mV^2, mV^4, mV^4 terms)

with c_mean = 0.01, c_var = 0.02, c_cov = 0.01 by default (``LossWeights``).  The
training loss is the mean of L over the S stimuli.

Two ways to get the model's moments from a parameterization
(``momentssn.parameterizations``) and an unconstrained theta:

* :func:`stationary_loss` -- the stationary moments of the Gaussian closure
  (``momentssn.stationary_solve``, gradients by implicit differentiation);
* :func:`transient_loss` -- the moments propagated from rest for ``t_max`` ms
  (``momentssn.propagate_moments``, gradients through the RK4 steps), averaged over
  the last ``t_avg`` ms.

Both return ``(loss, aux)`` and are safe for line searches: a stimulus without a
stable fixed point (stationary) or with a diverging / non-finite trajectory
(transient) gets L = +inf, and then the whole gradient is exactly 0 (finite, never
NaN) -- the cotangents are gated inside a ``jax.custom_vjp``, because a masked
``jnp.where`` alone would still let NaN from the solver's backward pass leak in.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ..moments import Moments
from ..closure.transient import propagate_moments
from ..closure.stationary import SolveInfo, stationary_solve

__all__ = [
    "LossWeights",
    "LossAux",
    "loss_per_stimulus",
    "moment_loss",
    "stationary_loss",
    "transient_loss",
    "time_averaged_moments",
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
    info: the solver's ``SolveInfo`` (stationary) or ``None`` (transient).
    """

    per_stimulus: jax.Array
    moments: Moments
    stable: jax.Array
    stable_per_stimulus: jax.Array
    info: Optional[SolveInfo] = None


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


# --------------------------------------------------------------------------- NaN-safe gate


def _gated(fun: Callable):
    """Make fun(*args) -> (per, ok, aux) safe for line searches.

    Returns g(*args) -> (where(ok, per, inf), ok, aux) whose VJP is that of ``per``
    when every entry of ``ok`` is True and exactly 0 (for every argument) otherwise.
    The gate acts on the *results* of fun's backward pass, so NaN produced inside it
    (e.g. by a solver's adjoint at a diverged state) cannot leak out.  ``ok`` and the
    leaves of ``aux`` come back as floats (bool/int outputs of a ``custom_vjp`` would
    be differentiated) under ``stop_gradient``: they carry no gradient.
    """

    def split(*args):
        per, ok, aux = fun(*args)
        return per, (ok, aux)

    def fwd(*args):
        per, vjp_fn, (ok, aux) = jax.vjp(split, *args, has_aux=True)
        all_ok = jnp.all(ok)
        as_float = lambda x: jnp.asarray(x).astype(per.dtype)  # noqa: E731
        out = (jnp.where(ok, per, jnp.inf), as_float(ok), jax.tree_util.tree_map(as_float, aux))
        return out, (vjp_fn, all_ok)

    def bwd(res, cts):
        vjp_fn, all_ok = res
        ct_per = jnp.where(all_ok, cts[0], 0.0)
        grads = vjp_fn(ct_per)
        return jax.tree_util.tree_map(lambda g: jnp.where(all_ok, g, jnp.zeros_like(g)), grads)

    @jax.custom_vjp
    def gated(*args):
        return fwd(*args)[0]

    gated.defvjp(fwd, bwd)

    def call(*args):
        per, ok, aux = gated(*args)
        ok = jax.lax.stop_gradient(ok) > 0.5
        return per, ok, jax.tree_util.tree_map(jax.lax.stop_gradient, aux)

    return call


def _as_arrays(task_inputs, target_mean, target_cov, weights):
    dt = jnp.result_type(float)
    return (
        jnp.asarray(task_inputs, dt),
        jnp.asarray(target_mean, dt),
        jnp.asarray(target_cov, dt),
        LossWeights(*(jnp.asarray(w, dt) for w in weights)),
    )


def _finish(per, ok, moments, info):
    stable = jnp.all(ok)
    loss = jnp.where(stable, jnp.mean(jnp.where(ok, per, 0.0)), jnp.inf)
    return loss, LossAux(per, moments, stable, ok, info)


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
        param: a parameterization (``momentssn.parameterizations``).
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
    args = _as_arrays(task_inputs, target_mean, target_cov, weights)

    def compute(theta, h_raw, t_mean, t_cov, w, init):
        net = param.network(theta)
        init = None if init is None else jax.lax.stop_gradient(init)
        moments, info = stationary_solve(net, param.inputs(theta, h_raw), init)
        per = loss_per_stimulus(moments, t_mean, t_cov, w)
        ok = info.stable & jnp.isfinite(per)
        return per, ok, (moments, info)

    per, ok, (moments, info) = _gated(compute)(theta, *args, init)
    info = SolveInfo(
        info.converged > 0.5, info.iterations.astype(jnp.int32), info.residual, info.max_real_eig,
        info.warm_start,
    )
    return _finish(per, ok, moments, info)


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
    args = _as_arrays(task_inputs, target_mean, target_cov, weights)

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

    per, ok, moments = _gated(compute)(theta, *args)
    return _finish(per, ok, moments, None)
