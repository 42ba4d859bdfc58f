"""Transient moment propagation: the mean and augmented-covariance ODEs in time.

Integrates (``momentssn.closure``)

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
from ..model import SSN, check_finite
from ..moments import MomentTrajectory, symmetrize

__all__ = ["propagate_moments", "relax_from_rest"]


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
        h: (N,) or (B, N) constant feedforward input (mV).
        t_max: duration (ms); ``round(t_max / dt)`` RK4 steps are taken.
        dt: integration step (ms), > 0.
        mean0: (N,) or (B, N) initial mean of u (default 0: rest).
        cov0: (N, N) or (B, N, N) initial covariance of u (default 0: a fixed start).
        cross_cov0: initial Cov(u, eta) (default 0: u independent of the noise).
        save_every: keep every ``save_every``-th step (memory: T/save_every x N^2).

    Returns:
        ``MomentTrajectory(t (T,), mean (.., T, N), cov (.., T, N, N),
        cross_cov (.., T, N, N))`` including t = 0.  Differentiable (reverse mode
        through the RK4 steps, checkpointed per step) and jit-compiled.
    """
    dtype = net.W.dtype
    N = net.N
    if not dt > 0:
        raise ValueError(f"dt must be > 0 (ms), got {dt}")
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0 (ms), got {t_max}")
    if int(save_every) < 1:
        raise ValueError(f"save_every must be a positive integer, got {save_every}")
    h = jnp.asarray(h, dtype)
    if h.ndim not in (1, 2) or h.shape[-1] != N:
        raise ValueError(f"h must have shape ({N},) or (B, {N}), got {h.shape}")
    check_finite("h", h)
    batch = h.shape[:-1]

    def init(x, shape, name):
        if x is None:
            return jnp.zeros(batch + shape, dtype)
        x = jnp.broadcast_to(jnp.asarray(x, dtype), batch + shape) if jnp.ndim(x) == len(
            shape
        ) else jnp.asarray(x, dtype)
        if x.shape != batch + shape:
            raise ValueError(f"{name} must have shape {shape} or {batch + shape}, got {x.shape}")
        check_finite(name, x)
        return x

    mu0 = init(mean0, (N,), "mean0")
    S0 = init(cov0, (N, N), "cov0")
    X0 = init(cross_cov0, (N, N), "cross_cov0")
    save_every = int(save_every)
    n_steps = int(round(t_max / dt))
    n_saves = max(1, n_steps // save_every)
    fn = lambda hh, m, S, X: _propagate_one(net, hh, dt, m, S, X, n_saves, save_every)  # noqa
    if batch:
        fn = jax.vmap(fn)
    mu, S, X = fn(h, mu0, S0, X0)
    t = jnp.asarray(np.arange(n_saves + 1) * save_every * dt, dtype)
    return MomentTrajectory(t, mu, S, X)
