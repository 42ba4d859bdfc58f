"""Heun's method (explicit trapezoid, second order) with eta at both ends of the step::

    f(u, eta) = (-u + h + W r(u) + eta) / tau
    u*        = u_s + dt f(u_s, eta_s)
    u_{s+1}   = u_s + dt/2 (f(u_s, eta_s) + f(u*, eta_{s+1}))

Two drive evaluations (matmuls) per step.  The noise enters through the trapezoid of
eta over the step, whose error is a mean-zero bridge term of variance O(dt^3) per step:
the moments converge at second order (u is C^1 in time since eta is continuous).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Drift, Stateless

__all__ = ["Heun"]


@dataclass(frozen=True)
class Heun(Stateless):
    name: ClassVar[str] = "heun"
    order: ClassVar[int] = 2

    def step(self, drift: Drift, u, eta, eta_next, state):
        dt, tau = drift.dt, drift.tau
        f0 = (drift.h + drift.recurrent(u) + eta - u) / tau
        u1 = u + dt * f0
        f1 = (drift.h + drift.recurrent(u1) + eta_next - u1) / tau
        return u + (0.5 * dt) * (f0 + f1), state
