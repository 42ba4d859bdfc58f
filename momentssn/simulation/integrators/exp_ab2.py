"""Exponential Adams-Bashforth 2 (second order, one drive evaluation per step): the leak
exactly, the noise by the linear interpolation of eta between both ends of the step, and
the recurrent input R = W r(u) extrapolated linearly from the last two steps::

    u_{s+1} = e u_s + b h + c0 eta_s + c1 eta_{s+1} + b R_s + c1 (R_s - R_{s-1})

with e = exp(-dt/tau), b = 1 - e, c1 = 1 - b tau/dt, c0 = b - c1 (``phi_weights``).
The solver state is R_{s-1} (B, T, N); the first step takes R_{-1} = R_0 (one first-order
step, a local error O(dt^2)).  Fixed points are those of the ODE.  Stable while dt times
the largest rate of the linearized recurrence (W Gamma / tau) is below about 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Drift, phi_weights

__all__ = ["ExponentialAB2"]


@dataclass(frozen=True)
class ExponentialAB2:
    name: ClassVar[str] = "exp_ab2"
    order: ClassVar[int] = 2

    def init(self, drift: Drift, u):
        return drift.recurrent(u)

    def step(self, drift: Drift, u, eta, eta_next, state):
        e, b, c0, c1 = phi_weights(drift.dt / drift.tau)
        r = drift.recurrent(u)
        u1 = e * u + b * drift.h + c0 * eta + c1 * eta_next + b * r + c1 * (r - state)
        return u1, r
