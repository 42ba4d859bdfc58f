"""Transient moment propagation: the mean and augmented-covariance ODEs in time.

Integrates (``momentssn.closure.equations``)

    tau dmu/dt = -mu + h + W nu(mu, diag S)
    dS/dt      = J S + S J^T + T^-1 X^T + X T^-1
    dX/dt      = J X - X / tau_eta + T^-1 Sigma_eta          (X = Cov(u, eta))

with the classical fourth-order Runge-Kutta method at a fixed step dt (ms), from
u = 0 (mu = 0, S = 0, X = 0) with eta in its stationary law by default.  The eta
block of the augmented covariance stays at Sigma_eta throughout.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import equations as closure
from .._util import is_traced
from ..errors import MomentsDivergedError
from ..model import SSN, check_finite
from ..moments import MomentTrajectory, symmetrize
from .arguments import check_scalar, check_stimulus

__all__ = ["propagate_moments", "relax_from_rest", "divergence_time"]

_MAX_STEPS = 10**8  # more RK4 steps than this is a mistaken dt (hours of computing)


def _velocity(net: SSN, h, state):
    mu, S, X = state
    nu, gamma = closure.expectations(net, mu, jnp.diagonal(S))
    J = closure.effective_jacobian(net, gamma)
    dS, dX = closure.covariance_velocity(net, J, S, X)
    return closure.mean_velocity(net, h, mu, nu), dS, dX


def _rk4_step(net: SSN, h, state, dt):
    f = lambda s: _velocity(net, h, s)  # noqa: E731
    add = lambda s, k, c: jax.tree_util.tree_map(lambda a, b: a + c * b, s, k)  # noqa: E731
    k1 = f(state)
    k2 = f(add(state, k1, 0.5 * dt))
    k3 = f(add(state, k2, 0.5 * dt))
    k4 = f(add(state, k3, dt))
    new = jax.tree_util.tree_map(
        lambda s, a, b, c, d: s + (dt / 6.0) * (a + 2 * b + 2 * c + d), state, k1, k2, k3, k4
    )
    mu, S, X = new
    return mu, symmetrize(S), X


def relax_from_rest(net: SSN, h, n_steps: int, dt):
    """The closure state (mu (N,), S (N, N), X (N, N)) after ``n_steps`` RK4 steps of
    size dt (ms) from rest (mu = 0, S = 0, X = 0), for one stimulus h (N,).

    No trajectory is kept; traceable (dt may be traced).  Used to bring a stationary
    solve into the basin of the fixed point that the dynamics actually reach.
    """
    dtype = net.W.dtype
    N = net.N
    zero = jnp.zeros((N, N), dtype)
    init = (jnp.zeros((N,), dtype), zero, zero)
    return lax.fori_loop(0, n_steps, lambda _, s: _rk4_step(net, h, s, dt), init)


@functools.partial(jax.jit, static_argnames=("n_saves", "save_every"))
def _propagate_one(net: SSN, h, dt, mu0, S0, X0, n_saves: int, save_every: int):
    step = jax.checkpoint(lambda s: _rk4_step(net, h, s, dt))

    def inner(state, _):
        return step(state), None

    def outer(state, _):
        state, _ = lax.scan(inner, state, None, length=save_every)
        return state, state

    init = (mu0, S0, X0)
    _, (mu, S, X) = lax.scan(outer, init, None, length=n_saves)
    return (
        jnp.concatenate([mu0[None], mu]),
        jnp.concatenate([S0[None], S]),
        jnp.concatenate([X0[None], X]),
    )


def _initial_state(net: SSN, batch: tuple, x, shape: tuple, name: str) -> jax.Array:
    """An initial moment (default 0) broadcast to ``batch + shape``, checked."""
    dtype = net.W.dtype
    if x is None:
        return jnp.zeros(batch + shape, dtype)
    x = jnp.asarray(x, dtype)
    if x.ndim == len(shape) and x.shape == shape:
        x = jnp.broadcast_to(x, batch + shape)
    if x.shape != batch + shape:
        raise ValueError(f"{name} must have shape {shape} or {batch + shape}, got {x.shape}")
    check_finite(name, x)
    return x


def _steps(t_max, dt, save_every) -> tuple:
    """Checked (dt, n_saves, save_every): ``round(t_max / dt)`` steps, every
    ``save_every``-th saved."""
    dt = check_scalar("dt", dt, positive=True, unit="ms")
    t_max = check_scalar("t_max", t_max, positive=True, unit="ms")
    integral = isinstance(save_every, (int, float, np.integer, np.floating)) and not isinstance(
        save_every, bool) and float(save_every).is_integer()
    if not integral or save_every < 1:
        raise ValueError(f"save_every must be a positive integer, got {save_every!r}")
    save_every = int(save_every)
    n_steps = int(round(t_max / dt))
    if n_steps < 1:
        raise ValueError(f"t_max must be at least one step dt = {dt} ms, got {t_max} ms")
    if save_every > n_steps:
        raise ValueError(f"save_every must be <= the number of steps ({n_steps}), got {save_every}")
    if n_steps > _MAX_STEPS:
        raise ValueError(f"t_max / dt = {n_steps} steps is more than {_MAX_STEPS:.0e}: raise dt")
    return dt, n_steps // save_every, save_every


def divergence_time(t: jax.Array, mean: jax.Array, cov: jax.Array) -> jax.Array:
    """(..) first time t (ms) at which mean (.., T, N) or cov (.., T, N, N) is not
    finite; +inf where they stay finite (traceable)."""
    bad = ~(jnp.all(jnp.isfinite(mean), axis=-1) & jnp.all(jnp.isfinite(cov), axis=(-2, -1)))
    first = jnp.argmax(bad, axis=-1)
    return jnp.where(jnp.any(bad, axis=-1), t[first], jnp.inf)


def _raise_if_diverged(net: SSN, tr: MomentTrajectory, dt: float) -> None:
    """``MomentsDivergedError`` for the first stimulus whose moments are not finite,
    with the largest real part of J's eigenvalues at the last finite saved state."""
    when = np.atleast_1d(np.asarray(tr.diverged_at))
    bad = np.flatnonzero(np.isfinite(when))
    if bad.size == 0:
        return
    b = int(bad[0])
    i = int(np.searchsorted(np.asarray(tr.t), when[b]))  # >= 1: the start is finite
    mean = tr.mean.reshape((-1,) + tr.mean.shape[-2:])[b, i - 1]
    cov = tr.cov.reshape((-1,) + tr.cov.shape[-3:])[b, i - 1]
    J = np.asarray(closure.jacobian_at(net, mean, jnp.diagonal(cov)))
    eig = float(np.max(np.real(np.linalg.eigvals(J)))) if np.all(np.isfinite(J)) else np.inf
    if eig >= 0:
        cause = (f"the moments ran away: the network is unstable for this input (largest "
                 f"real part of the eigenvalues of J = {eig:+.4g} /ms at t = "
                 f"{float(tr.t[i - 1]):.6g} ms)")
    else:
        cause = f"dt = {dt} ms is too large for RK4 (J was stable at the last finite state)"
    raise MomentsDivergedError(
        f"the closure moments diverged for stimulus {b}: not finite from t = {when[b]:.6g} ms "
        f"on; {cause}",
        stimulus=b, time_ms=float(when[b]), max_real_eig=eig,
    )


def propagate_moments(
    net: SSN,
    h,
    t_max: float,
    dt: float,
    mean0=None,
    cov0=None,
    cross_cov0=None,
    save_every: int = 1,
) -> MomentTrajectory:
    """Propagate the closure's mean and covariance from an initial state.

    Args:
        net: the network.
        h: (N,) or (B, N) constant feedforward input (mV), finite.
        t_max: duration (ms), > 0; ``round(t_max / dt)`` >= 1 RK4 steps are taken.
        dt: integration step (ms), > 0.
        mean0: (N,) or (B, N) initial mean of u (default 0: rest).
        cov0: (N, N) or (B, N, N) initial covariance of u (default 0: a fixed start).
        cross_cov0: initial Cov(u, eta) (default 0: u independent of the noise).
        save_every: keep every ``save_every``-th step (memory: T/save_every x N^2),
            a positive integer <= the number of steps.

    Returns:
        ``MomentTrajectory(t (T,), mean (.., T, N), cov (.., T, N, N),
        cross_cov (.., T, N, N), diverged_at (..))`` including t = 0.
        Differentiable (reverse mode through the RK4 steps, checkpointed per step)
        and jit-compiled.  ``diverged_at`` is +inf unless the moments stopped being
        finite (then the first saved time at which they are not, ms).

    Raises:
        ValueError: a bad argument (named in the message).
        MomentsDivergedError: (an ``UnstableNetworkError``) the moments of a stimulus
            stopped being finite, with the stimulus, the time and the cause.  Only
            when called eagerly; inside ``jit``/``grad`` check ``diverged_at``.
    """
    N = net.N
    h = check_stimulus(net, h)
    dt, n_saves, save_every = _steps(t_max, dt, save_every)
    batch = h.shape[:-1]
    mu0 = _initial_state(net, batch, mean0, (N,), "mean0")
    S0 = _initial_state(net, batch, cov0, (N, N), "cov0")
    X0 = _initial_state(net, batch, cross_cov0, (N, N), "cross_cov0")
    fn = lambda hh, m, S, X: _propagate_one(net, hh, dt, m, S, X, n_saves, save_every)  # noqa
    if batch:
        fn = jax.vmap(fn)
    mu, S, X = fn(h, mu0, S0, X0)
    t = jnp.asarray(np.arange(n_saves + 1) * save_every * dt, net.W.dtype)
    tr = MomentTrajectory(t, mu, S, X, divergence_time(t, mu, S))
    if not is_traced(tr):
        _raise_if_diverged(net, tr, dt)
    return tr
