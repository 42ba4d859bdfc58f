"""Eq. 7 on moments of simulated trials: the BPTT training loss and the long-run score.

* :func:`simulated_loss` -- ``f(theta, key) -> (loss, LossAux)``: the moments of
  ``n_trials`` simulated trials per stimulus (``ms.simulate``), across trials and
  averaged over the last ``t_avg`` ms, differentiable by backpropagation through time
  (the training loss of ``ms.train_bptt``);
* :func:`simulated_score` -- eq. 7 on the moments of a *long* simulation of a
  finished network (pooled over trials and time after a burn-in): the ground truth
  every training method is judged by (``momentssn.experiments.compare``).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .._util import require_x64
from ..moments import Moments
from ..simulation.integrators.registry import get_integrator
from ..simulation.noise import base_key
from ..simulation.simulate import simulate
from ..simulation.step_size import warn_step_size
from ._args import check_int, check_positive
from .closure import time_averaged_moments
from .gate import finish, gated
from .moment import LossAux, LossWeights, loss_arrays, loss_per_stimulus

__all__ = ["SimulatedLossAux", "simulated_loss", "SimulatedScore", "simulated_score"]

#: What :func:`simulated_loss` returns beside the loss: a ``LossAux`` whose
#: ``n_diverged`` (S,) counts the diverged trials per stimulus (``info`` is None).
SimulatedLossAux = LossAux


# --------------------------------------------------------------------------- BPTT loss


class _SimConfig(NamedTuple):
    """Static settings of :func:`simulated_loss` (hashable: a jit static argument)."""

    n_trials: int
    t_max: float
    dt: float
    n_steps: int  # round(t_max / dt)
    n_avg: int  # round(t_avg / dt), steps in the averaging window
    stride: int  # record every `stride` steps; divides n_steps and n_avg
    dtype: str
    remat: bool  # jax.checkpoint on the simulation's chunks (rematerialization)


def _sim_config(n_trials, t_max, t_avg, dt, dtype, record_stride, remat=True) -> _SimConfig:
    n_trials = check_int("n_trials", n_trials, 2)
    t_max = check_positive("t_max", t_max)
    dt = check_positive("dt", dt)
    t_avg = check_positive("t_avg", t_avg)
    if t_avg > t_max:
        raise ValueError(f"t_avg must be <= t_max, got t_avg={t_avg}, t_max={t_max}")
    n_steps = int(round(t_max / dt))
    n_avg = int(round(t_avg / dt))
    if n_avg < 1:
        raise ValueError(f"t_avg={t_avg} ms is shorter than one step dt={dt} ms")
    if abs(n_steps * dt - t_max) > 1e-9 * t_max or abs(n_avg * dt - t_avg) > 1e-9 * t_max:
        raise ValueError(f"dt={dt} must divide t_max={t_max} and t_avg={t_avg}")
    if record_stride is None:  # records about every 1 ms (as transient_loss's sample_every)
        stride = max(1, int(round(1.0 / dt)))
        while n_avg % stride or n_steps % stride:
            stride -= 1
    else:
        stride = check_int("record_stride", record_stride, 1)
        if n_avg % stride or n_steps % stride:
            raise ValueError(
                f"record_stride={stride} must divide the {n_steps} steps of t_max and the "
                f"{n_avg} steps of t_avg (dt={dt} ms)"
            )
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == jnp.float64:
        require_x64("dtype=float64")
    return _SimConfig(n_trials, t_max, dt, n_steps, n_avg, stride, dtype.name, bool(remat))


def _task_arrays(param, task, weights):
    """``loss_arrays`` of ``task`` after checking that it fits the parameterization."""
    N = getattr(param, "N", None)
    if N is not None and task.n_net != N:
        raise ValueError(f"task has inputs for {task.n_net} cells but the network has N={N}")
    return loss_arrays(task.inputs, task.target_mean, task.target_cov, weights)


def _simulated_loss(param, cfg: _SimConfig, theta, key, data):
    """The loss of :func:`simulated_loss` (pure; param and cfg static)."""
    h_raw, t_mean, t_cov, weights = data
    dtype = jnp.dtype(cfg.dtype)
    n_pre = cfg.n_steps - cfg.n_avg
    j0 = n_pre // cfg.stride  # first record in the window [t_max - t_avg, t_max]
    sim_kw = {} if cfg.remat else {"checkpoint": False}  # ms.simulate's name for remat

    def compute(theta, h_raw, t_mean, t_cov, w):
        # parameters -> network in theta's precision; simulate casts it to `dtype`
        net = param.network(theta).astype(dtype)
        h = param.inputs(theta, h_raw).astype(dtype)
        sim = simulate(
            net,
            h,
            cfg.t_max,
            cfg.dt,
            cfg.n_trials,
            seed=key,
            burn_in=n_pre * cfg.dt,
            dtype=dtype,
            record_stride=cfg.stride,
            **sim_kw,
        )
        tr = sim.time_resolved  # mean (S, R, N), cov (S, R, N, N): across trials, 1/(n-1)
        moments = time_averaged_moments(tr.mean[:, j0:], tr.cov[:, j0:])
        per = loss_per_stimulus(moments, t_mean, t_cov, w)
        ok = (sim.n_diverged == 0) & jnp.isfinite(per)
        return per, ok, (moments, sim.n_diverged)

    per, ok, (moments, n_div) = gated(compute)(theta, h_raw, t_mean, t_cov, weights)
    return finish(per, ok, moments, n_diverged=n_div.astype(jnp.int32))


def simulated_loss(
    param,
    task,
    *,
    n_trials: int = 100,
    t_max: float = 500.0,
    t_avg: float = 100.0,
    dt: float = 0.2,
    weights: LossWeights = LossWeights(),
    dtype=jnp.float32,
    record_stride: Optional[int] = None,
    remat: bool = True,
    checkpoint: Optional[bool] = None,
) -> Callable:
    """The moment-matching loss (eq. 7) on moments estimated from simulated trials.

    Returns ``f(theta, key) -> (loss, aux)``, pure and traceable (use it under
    ``jax.jit(jax.value_and_grad(f, has_aux=True))``).  For one evaluation:

    1. ``net = param.network(theta)``, ``h = param.inputs(theta, task.inputs)`` (S, N),
       computed in theta's precision and cast to ``dtype`` for the simulation;
    2. all S stimuli are simulated at once by ``ms.simulate``: ``n_trials`` trials per
       stimulus from rest (u = 0, eta drawn from its stationary law), noise from
       ``key`` (common to the stimuli), ``t_max`` ms at step ``dt``;
    3. the across-trial moments mu(t) (S, N), Sigma(t) (S, N, N) (unbiased, 1/(n - 1))
       recorded every ``record_stride`` steps are averaged over the window
       [t_max - t_avg, t_max] (trapezoidal rule, ``losses.time_averaged_moments``:
       Sigma_bar = <Sigma(t)>_t, as in ``losses.closure.transient_loss``);
    4. eq. 7 (``losses.loss_per_stimulus``) on the first M = task.n_targets cells,
       averaged over the stimuli.

    Gradients are by backpropagation through time through ``ms.simulate`` (its chunks
    are rematerialized in the backward pass, ``jax.checkpoint``; ``remat=False`` turns
    that off, for benchmarks).  With the key fixed the noise is fixed, so the loss is a smooth
    function of theta (a sample-path estimate; its gradient is that of the loss of the
    estimated moments).  If any trial of any stimulus diverges (``ms.simulate``'s
    ``bound``), loss = +inf and the gradient is 0 (never NaN): ``ms.adam_train``
    then rejects the step.

    Args:
        param: a parameterization (``.network(theta) -> SSN``, ``.inputs(theta, h_raw)
            -> (S, N)``; see ``momentssn.params``).
        task: a ``Task`` (inputs (S, N), target_mean (S, M), target_cov (S, M, M)).
        n_trials: trials per stimulus (>= 2).
        t_max: simulated time per trial (ms, > 0); t_avg: averaging window (ms),
            0 < t_avg <= t_max; dt: step (ms), dividing both.
        weights: ``LossWeights``.
        dtype: simulation precision, ``jnp.float32`` (default) or ``jnp.float64``.
        record_stride: steps between recorded moments; must divide the steps of t_max
            and of t_avg.  Default: the largest such stride <= 1 ms / dt.  Memory of the
            records: S (t_max / (stride dt) + 1) N^2 numbers (and as much for their
            cotangents).
        remat: True (default) rematerializes the simulation's chunks in the backward
            pass (``jax.checkpoint``); False (for benchmarks) stores them, so
            reverse-mode memory grows with the number of steps (see
            ``benchmarks/train.py``).
        checkpoint: the former name of ``remat`` (still accepted; nothing to do with
            checkpoint files).

    Returns:
        ``f(theta, key) -> (loss, LossAux)`` (``aux.n_diverged`` filled, ``aux.info``
        None); loss is a scalar of theta's dtype (float64 targets promote it).
    """
    if checkpoint is not None:
        remat = bool(checkpoint)
    cfg = _sim_config(n_trials, t_max, t_avg, dt, dtype, record_stride, remat)
    data = _task_arrays(param, task, weights)

    def loss_fn(theta, key):
        return _simulated_loss(param, cfg, theta, key, data)

    return loss_fn


# --------------------------------------------------------------------------- long-run score


class SimulatedScore(NamedTuple):
    """Loss of a network's *simulated* moments against targets (eq. 7), with both error bars.

    loss: mean over stimuli (inf if some stimulus has no surviving trial);
    loss_per_stimulus: (S,); moments: simulated Moments of the target cells (S, M..);
    n_diverged: (S,) diverged trials;
    loss_se: Monte Carlo standard error of ``loss`` (jackknife over independent trial
        groups; NaN if fewer than 2 groups survive);
    step_error: the time step's bias of ``loss`` (Richardson estimate from a run at dt/2
        on the same noise path: loss(dt) - loss(dt -> 0)), ``None`` unless asked for;
    dt: the step (ms).
    """

    loss: float
    loss_per_stimulus: np.ndarray
    moments: Moments
    n_diverged: np.ndarray
    loss_se: float = float("nan")
    step_error: Optional[float] = None
    dt: float = float("nan")


@functools.partial(jax.jit, static_argnames=("t_max", "dt", "n_trials", "burn_in", "substeps"))
def _long_run(net, h, key, *, t_max, dt, n_trials, burn_in, substeps=1):
    """(pooled Moments, group Moments, group sample counts, n_diverged) of ``ms.simulate``
    with the typed PRNG key ``key`` (an argument, not a constant: a new seed reuses the
    compiled run); under ``jit`` a simulation in which every trial of a stimulus diverged
    reports it in ``n_diverged`` instead of raising."""
    sim = simulate(net, h, t_max, dt, n_trials, key, burn_in=burn_in, noise_substeps=substeps)
    return sim.moments, sim.group_moments, sim.group_n_samples, sim.n_diverged


def _target_moments(mean, cov, M):
    return np.asarray(mean, np.float64)[..., :M], np.asarray(cov, np.float64)[..., :M, :M]


def _losses(mean, cov, target_mean, target_cov, weights) -> np.ndarray:
    """eq. 7 per stimulus (leading axes kept), +inf where not finite."""
    per = np.asarray(loss_per_stimulus(Moments(jnp.asarray(mean), jnp.asarray(cov)), jnp.asarray(target_mean),
                                       jnp.asarray(target_cov), weights), np.float64)
    return np.where(np.isfinite(per), per, np.inf)


def jackknife_loss_se(group_mean, group_cov, group_n, target_mean, target_cov,
                      weights: LossWeights = LossWeights()) -> float:
    """Monte Carlo standard error of the stimulus-averaged loss of pooled moments.

    group_mean (S, G, M), group_cov (S, G, M, M), group_n (S, G) samples per group: the
    moments of G independent trial groups.  Leave-one-group-out pooled moments
    (pooled second moments, so the covariances combine exactly) give losses L_-g and
    se = sqrt((G - 1)/G sum_g (L_-g - mean L_-.)^2).  NaN with fewer than 2 groups.
    """
    gm, gc = np.asarray(group_mean, np.float64), np.asarray(group_cov, np.float64)
    n = np.asarray(group_n, np.float64)
    G = gm.shape[1]
    if G < 2 or np.any(np.sum(n > 0, axis=1) < 2):
        return float("nan")
    ok = n > 0
    gm = np.where(ok[..., None], gm, 0.0)
    second = np.where(ok[..., None, None], gc + gm[..., :, None] * gm[..., None, :], 0.0)
    S1 = np.sum(n[..., None] * gm, axis=1)
    S2 = np.sum(n[..., None, None] * second, axis=1)
    loo = []
    for g in range(G):
        nn = np.sum(n, axis=1) - n[:, g]
        m = (S1 - n[:, g, None] * gm[:, g]) / nn[:, None]
        c = (S2 - n[:, g, None, None] * second[:, g]) / nn[:, None, None] - m[:, :, None] * m[:, None, :]
        loo.append(np.mean(_losses(m, c, target_mean, target_cov, weights)))
    loo = np.asarray(loo)
    if not np.all(np.isfinite(loo)):
        return float("nan")
    return float(np.sqrt((G - 1) / G * np.sum((loo - loo.mean()) ** 2)))


def simulated_score(
    net,
    inputs,
    target_mean,
    target_cov,
    *,
    n_trials: int = 64,
    t_max: float = 2000.0,
    burn_in: float = 500.0,
    dt: float = 0.5,
    seed: int = 12345,
    weights: LossWeights = LossWeights(),
    step_check: bool = False,
    timescale_ms: Optional[float] = None,
) -> SimulatedScore:
    """Eq. 7 on moments of a long simulation (pooled over trials and the time after
    ``burn_in``): the ground truth every training method is judged by.

    net: SSN (N cells); inputs: (S, N) mV; target_mean (S, M), target_cov (S, M, M)
    for the first M cells.  float32 simulation with the simulator's default (second
    order) integrator.  ``loss_se`` is always computed; ``step_check=True`` also runs
    dt/2 on the same noise path (about 3x the cost) and reports the step's bias of the
    loss in ``step_error``.  A stimulus whose every trial diverges scores +inf (its
    moments are NaN): a score, not an error, so that a comparison of training methods
    can rank a failed network.  ``timescale_ms``: the fastest time scale of the closure
    Jacobian (ms, ``simulation.step_size.jacobian_timescale``) when the caller has the
    closure: the step-size warning then checks dt against it as well as against min tau.
    """
    warn_step_size(net, float(dt), get_integrator(None), timescale_ms)  # eagerly: the run is jitted
    target_mean = np.asarray(target_mean, np.float64)
    M = target_mean.shape[1]
    kw = dict(t_max=float(t_max), n_trials=int(n_trials), burn_in=float(burn_in))
    h, key = jnp.asarray(inputs), base_key(int(seed))  # the key simulate makes of the int seed
    moments, groups, group_n, n_div = _long_run(net, h, key, dt=float(dt), substeps=2 if step_check else 1, **kw)
    mean, cov = _target_moments(moments.mean, moments.cov, M)
    per = _losses(mean, cov, target_mean, target_cov, weights)
    loss = float(np.mean(per))
    gm, gc = _target_moments(groups.mean, groups.cov, M)
    se = jackknife_loss_se(gm, gc, group_n, target_mean, target_cov, weights) if np.isfinite(loss) else float("nan")
    step = None
    if step_check:
        fine = _long_run(net, h, key, dt=float(dt) / 2, substeps=1, **kw)[0]
        loss_fine = float(np.mean(_losses(*_target_moments(fine.mean, fine.cov, M), target_mean, target_cov,
                                          weights)))
        p = get_integrator(None).order
        step = (loss - loss_fine) * 2.0**p / (2.0**p - 1.0) if np.isfinite(loss - loss_fine) else float("inf")
    return SimulatedScore(loss, per, Moments(mean, cov), np.asarray(n_div).reshape(-1), se, step, float(dt))
