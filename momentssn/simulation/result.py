"""The result of a simulation: pooled, group, per-trial and time-resolved moments, the
divergence report, and Monte Carlo standard errors from the spread of trial groups."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ..moments import MomentTrajectory, Moments, symmetrize

__all__ = ["SimulationResult", "finalize"]


class SimulationResult(NamedTuple):
    """Output of :func:`momentssn.simulate` (a pytree; ``B?`` is absent when ``h`` is (N,)).

    The *window* is the states u(t_s), t_s = s dt, with burn_in <= t_s < t_max, i.e.
    s = n_burn .. n_steps - 1 (n_burn = round(burn_in / dt), n_steps = round(t_max / dt)),
    n_window = n_steps - n_burn samples per trial.  A trial that diverges at any time
    is excluded from *every* statistic below (whole-trial exclusion), see ``diverged``.

    Attributes:
        moments: pooled moments over the window and over the kept trials:
            mean (B?, N) mV, cov (B?, N, N) mV^2, normalized by ``n_samples``
            (maximum-likelihood 1/n; n is ~1e5 or more in practice).
        n_samples: (B?,) int, kept trials x n_window.
        group_moments: the same moments for ``G`` disjoint groups of consecutive
            trials (group g = trials g*M .. (g+1)*M - 1, M = n_trials / G):
            mean (B?, G, N), cov (B?, G, N, N).  Groups are statistically independent,
            so their spread gives a standard error (see :meth:`standard_error`).
        group_n_samples: (B?, G) int samples per group (0 if all its trials diverged).
        trial_mean: (B?, n_trials, N) time average of u over the window for each trial
            (NaN for diverged trials).  Enough for a trial bootstrap of the mean.
        trial_var: (B?, n_trials, N) time variance of u over the window for each trial
            (1/n_window normalization; NaN for diverged trials).
        time_resolved: ``MomentTrajectory`` of the across-trial moments at times
            t = 0, stride dt, 2 stride dt, ... <= t_max: mean (B?, T_rec, N),
            cov (B?, T_rec, N, N) (unbiased, 1/(n_kept - 1)); ``None`` unless
            ``record_stride`` was given (or ``return_trajectories``, stride 1).
        trajectories: (B?, n_trials, T_rec, N) u at the recorded times (NaN after a
            trial diverged), or ``None`` unless ``return_trajectories=True``.
        diverged: (B?, n_trials) bool, trial left |u| <= bound (or became non-finite).
        divergence_time: (B?, n_trials) ms, first time a trial diverged (inf if never).
        n_diverged: (B?,) int number of diverged trials per stimulus.
        first_divergence_time: (B?,) ms, earliest divergence per stimulus (inf if none).
    """

    moments: Moments
    n_samples: jax.Array
    group_moments: Moments
    group_n_samples: jax.Array
    trial_mean: jax.Array
    trial_var: jax.Array
    time_resolved: Optional[MomentTrajectory]
    trajectories: Optional[jax.Array]
    diverged: jax.Array
    divergence_time: jax.Array
    n_diverged: jax.Array
    first_divergence_time: jax.Array

    def standard_error(self) -> Moments:
        """Monte Carlo standard errors of ``moments.mean`` and ``moments.cov``.

        From the spread of the G independent trial groups (a jackknife-free
        "batch means over trials"): with group estimates x_g, weights w_g = n_g / n,
        pooled x = sum_g w_g x_g::

            SE(x)^2 = G' / (G' - 1) * sum_g w_g^2 (x_g - x)^2,    G' = groups with n_g > 0

        Valid because different trials are independent; it accounts for the time
        correlations within a trial.  Needs G' >= 2 (NaN otherwise).  Shapes as in
        ``moments``.
        """
        return group_standard_error(self.moments, self.group_moments, self.group_n_samples)


@jax.jit
def group_standard_error(moments: Moments, group_moments: Moments, n_g) -> Moments:
    """Standard error of pooled ``moments`` from the spread of independent ``group_moments``
    with ``n_g`` (.., G) samples each (see :meth:`SimulationResult.standard_error`)."""
    w = n_g / jnp.maximum(jnp.sum(n_g, axis=-1, keepdims=True), 1)
    gp = jnp.sum(n_g > 0, axis=-1)
    fac = gp / jnp.where(gp > 1, gp - 1, jnp.nan)
    gm, gc = group_moments
    mean, cov = moments
    # groups with no samples have NaN moments and weight 0
    dm = jnp.where(n_g[..., None] > 0, gm - mean[..., None, :], 0.0)
    dc = jnp.where(n_g[..., None, None] > 0, gc - cov[..., None, :, :], 0.0)
    se_m = jnp.sqrt(fac[..., None] * jnp.sum((w[..., None] * dm) ** 2, axis=-2))
    se_c = jnp.sqrt(fac[..., None, None] * jnp.sum((w[..., None, None] * dc) ** 2, axis=-3))
    return Moments(se_m, se_c)


def _moments_from(ref, n, S1, S2):
    """Shifted sums (about ``ref`` (B, N)) -> (mean, cov); NaN where n == 0."""
    N = ref.shape[-1]
    has = n > 0
    nn = jnp.where(has, n, 1.0)
    m = S1 / nn[..., None]
    cov = S2 / nn[..., None, None] - m[..., :, None] * m[..., None, :]
    mean = jnp.where(has[..., None], ref.reshape(ref.shape[:1] + (1,) * (S1.ndim - 2) + (N,)) + m, jnp.nan)
    cov = jnp.where(has[..., None, None], symmetrize(cov), jnp.nan)
    return mean, cov


def finalize(cfg, out, keep, squeeze: bool) -> SimulationResult:
    """Raw sums of the kernel (``out``: ref, tS1, tS2, gS2, div_step, records) and the
    kept trials ``keep`` (B, T) -> :class:`SimulationResult` (squeezed when h was (N,))."""
    dtype = jnp.dtype(cfg.dtype)
    T, G = cfg.n_trials, cfg.groups
    M = T // G
    n_win = cfg.n_steps - cfg.n_burn
    B = keep.shape[0]
    keepf = keep.astype(dtype)
    ref, tS1, tS2, gS2 = out["ref"], out["tS1"], out["tS2"], out["gS2"]
    N = ref.shape[-1]

    g_n = keepf.reshape(B, G, M).sum(-1) * n_win  # (B, G)
    gS1 = tS1.reshape(B, G, M, N).sum(2)
    g_mean, g_cov = _moments_from(ref, g_n, gS1, gS2)
    n_all = g_n.sum(-1)
    mean, cov = _moments_from(ref, n_all, gS1.sum(1), gS2.sum(1))
    tm = tS1 / n_win
    trial_mean = jnp.where(keep[..., None], ref[:, None, :] + tm, jnp.nan)
    trial_var = jnp.where(keep[..., None], tS2 / n_win - tm * tm, jnp.nan)

    div_step = out["div_step"]
    diverged = div_step >= 0
    div_time = jnp.where(diverged, div_step.astype(dtype) * cfg.dt, jnp.inf)

    time_resolved = None
    trajectories = None
    if cfg.stride:
        R = out["rec_mean"].shape[0]
        t = jnp.arange(R, dtype=dtype) * (cfg.stride * cfg.dt)
        time_resolved = MomentTrajectory(
            t, jnp.moveaxis(out["rec_mean"], 0, 1), jnp.moveaxis(out["rec_cov"], 0, 1)
        )
        if cfg.traj:
            trajectories = jnp.transpose(out["traj"], (1, 2, 0, 3))  # (B, T, R, N)

    small = n_win * T < 2**31
    res = SimulationResult(
        moments=Moments(mean, cov),
        n_samples=n_all.astype(jnp.int32) if small else n_all,
        group_moments=Moments(g_mean, g_cov),
        group_n_samples=g_n.astype(jnp.int32) if small else g_n,
        trial_mean=trial_mean,
        trial_var=trial_var,
        time_resolved=time_resolved,
        trajectories=trajectories,
        diverged=diverged,
        divergence_time=div_time,
        n_diverged=jnp.sum(diverged, axis=-1).astype(jnp.int32),
        first_divergence_time=jnp.min(div_time, axis=-1),
    )
    if squeeze:
        res = jax.tree_util.tree_map(lambda x: x[0], res)
        if time_resolved is not None:
            res = res._replace(time_resolved=res.time_resolved._replace(t=time_resolved.t))
    return res
