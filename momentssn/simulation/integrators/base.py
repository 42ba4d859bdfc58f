"""The integrator protocol and the network drive it integrates.

Model (units: ms, mV, Hz)::

    tau_i du_i/dt = -u_i + h_i + (W r(u))_i + eta_i,      r = k [u]_+^n

An integrator advances u over one step [t_s, t_s + dt] knowing eta at both ends of the
step (eta_s, eta_{s+1}: the exact OU transition, drawn beforehand by the kernel, so every
integrator sees the same noise path).  It is a small immutable object, like diffrax's
solvers::

    state       = integrator.init(drift, u0)                 # solver state (a pytree; () if none)
    u1, state   = integrator.step(drift, u, eta, eta_next, state)

``order`` is the weak order of convergence of the moments in dt (measured in
tests/simulation/test_integrators.py), ``name`` the string ``simulate`` accepts.
Shapes: u (B, T, N) (stimuli, trials, neurons), eta (T, N) (shared by the stimuli).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Optional, Protocol, Tuple, runtime_checkable

import jax
import jax.numpy as jnp

__all__ = ["Drift", "Integrator", "Stateless", "phi_weights"]


class Drift(NamedTuple):
    """The deterministic part of the drive: h + W r(u), and the time constants.

    h: (B, 1, N) mV; W: (N, N); k, n: scalars; tau: (N,) ms; dt: the step (ms, scalar);
    n_int: a static integer exponent (repeated multiplication, same values) or None.
    """

    h: jax.Array
    W: jax.Array
    k: jax.Array
    n: jax.Array
    tau: jax.Array
    dt: jax.Array
    n_int: Optional[int] = None

    def rate(self, u):
        """r = k [u]_+^n (Hz), elementwise."""
        x = jnp.maximum(u, 0.0)
        return self.k * (x**self.n_int if self.n_int is not None else x**self.n)

    def recurrent(self, u):
        """W r(u): (B, T, N) -> (B, T, N) mV (one matmul)."""
        return jnp.einsum("btj,ij->bti", self.rate(u), self.W)


def phi_weights(x):
    """Weights of the exponential integrators, x = dt / tau (elementwise)::

        e  = exp(-x),   b = 1 - e = int_0^dt (1/tau) e^{-(dt-s)/tau} ds,
        c1 = 1 - b / x  = int_0^dt (1/tau) e^{-(dt-s)/tau} (s / dt) ds,   c0 = b - c1,

    so that int_0^dt (1/tau) e^{-(dt-s)/tau} g(s) ds = c0 g(0) + c1 g(dt) for g linear.
    c1 uses its series below x = 1e-2 (1 - b/x cancels in float32).  Returns (e, b, c0, c1).
    """
    b = -jnp.expm1(-x)
    small = x < 1e-2
    xs = jnp.where(small, 1.0, x)
    series = x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0 - x / 120.0)))
    c1 = jnp.where(small, series, 1.0 - b / xs)
    return 1.0 - b, b, b - c1, c1


@runtime_checkable
class Integrator(Protocol):
    """One step of u given eta at both ends of the step (see the module docstring)."""

    name: str
    order: int

    def init(self, drift: Drift, u: jax.Array) -> Any:
        ...

    def step(self, drift: Drift, u: jax.Array, eta: jax.Array, eta_next: jax.Array,
             state: Any) -> Tuple[jax.Array, Any]:
        ...


@dataclass(frozen=True)
class Stateless:
    """Base of the integrators that carry no solver state (``init`` returns ()).  Frozen and
    field-less: instances are hashable and equal to each other (a static jit argument)."""

    name: ClassVar[str]
    order: ClassVar[int]

    def init(self, drift: Drift, u):
        return ()
