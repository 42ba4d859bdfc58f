"""Exponential trapezoid (ETD2RK, second order): the leak exactly, the rest of the drive
g(t) = h + W r(u(t)) + eta(t) linear over the step::

    u_{s+1} = e u_s + int_0^dt (1/tau) e^{-(dt-s)/tau} g(s) ds
            = e u_s + b h + c0 (W r(u_s) + eta_s) + c1 (W r(u*) + eta_{s+1})
    u*      = e u_s + b (h + W r(u_s)) + c0 eta_s + c1 eta_{s+1}        (predictor)

with e = exp(-dt/tau), b = 1 - e, c1 = 1 - b tau/dt, c0 = b - c1 (``phi_weights``).
Two drive evaluations per step; exact for W = 0 up to the linear interpolation of eta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Drift, Stateless, phi_weights

__all__ = ["ExponentialTrapezoid"]


@dataclass(frozen=True)
class ExponentialTrapezoid(Stateless):
    name: ClassVar[str] = "etd2"
    order: ClassVar[int] = 2

    def step(self, drift: Drift, u, eta, eta_next, state):
        e, b, c0, c1 = phi_weights(drift.dt / drift.tau)
        lin = e * u + b * drift.h + c0 * eta + c1 * eta_next  # leak, input and noise
        r0 = drift.recurrent(u)
        u_pred = lin + b * r0
        return lin + c0 * r0 + c1 * drift.recurrent(u_pred), state
