"""The step-size warning: dt against the network's fastest time scales.

Two time scales are checked (units: ms):

* the leak, tau_min = min_i tau_i (always, for a concrete network):
      warn when (dt / tau_min)^order > TAU_LEVEL = 5e-3;
* the linearized dynamics, when the caller has the closure: the fastest rate of the
  closure Jacobian J = T^-1 (-I + W Gamma) at the stationary point, max |lambda| (1/ms),
  passed to ``simulate`` as ``timescale_ms = 1 / max |lambda|`` (:func:`jacobian_timescale`):
      warn when (dt max |lambda|)^order > JACOBIAN_LEVEL = 0.25.

With W = 0 the Jacobian is -T^-1 and max |lambda| = 1 / tau_min.  Both levels were set by
measurement (64 trials, the same noise path as dt = 1/16 ms, Heun):

* tau: on the published 15-parameter network (tau_min = 10 ms) the pooled E mean is within
  1% of the dt -> 0 limit up to dt = 1 ms (dt/tau = 0.1), etd2 is ~14 (dt/tau)^2 off and
  exp_euler ~5 (dt/tau); 5e-3 flags steps that may be several percent off (second order
  above dt/tau = 0.07, first order above 0.005).
* Jacobian: on the published network max |lambda| is 0.185 /ms at contrast 0 and 0.359 /ms
  at contrast 1 (an oscillatory mode, -0.075 +- 0.351i): 1.9-3.6x faster than 1/tau_min,
  yet its step error follows tau and the slow mode (within 1% at dt = 1 ms).  A fast mode
  driven by the slow OU input follows it adiabatically and costs little until dt nears the
  scheme's stability limit (dt |lambda| = 2 for Heun and a real mode): on a strongly
  coupled two-cell network (max |lambda| = 1.51 /ms, tau = 20/10 ms) the I-cell std is
  0.37% off at dt |lambda| = 1.13, 0.13% at 1.51 and 12% at 1.89.  The level 0.25 flags
  dt |lambda| > 0.5 for Heun: a quarter of that limit, leaving room for trials whose
  local rate exceeds the closure's average one.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

from .._util import is_traced
from ..model import SSN

__all__ = ["StepSizeWarning", "TAU_LEVEL", "JACOBIAN_LEVEL", "step_size_ratio", "jacobian_timescale",
           "warn_step_size"]

TAU_LEVEL = 5e-3
JACOBIAN_LEVEL = 0.25
_WARNED = set()


class StepSizeWarning(UserWarning):
    """dt is large against the network's fastest time scale (see ``simulation.step_size``)."""


def step_size_ratio(net: SSN, dt: float) -> float:
    """dt / min(tau): the step against the fastest time constant of the leak (concrete net)."""
    return float(dt) / float(np.min(np.asarray(net.tau)))


def jacobian_timescale(J) -> float:
    """1 / max |lambda| (ms) over the eigenvalues lambda (1/ms) of the Jacobian(s) J
    (N, N) or (B, N, N), e.g. ``closure.equations.jacobian_at`` at the stationary moments
    of each stimulus; Jacobians that are not finite (an unstable closure reported as NaN)
    are skipped.  ``inf`` when none is left (or every eigenvalue is 0)."""
    J = np.asarray(J, np.float64)
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise ValueError(f"J must have shape (N, N) or (B, N, N), got {J.shape}")
    J = J.reshape((-1,) + J.shape[-2:])
    J = J[np.all(np.isfinite(J), axis=(-2, -1))]
    if J.shape[0] == 0:
        return math.inf
    rate = float(np.max(np.abs(np.linalg.eigvals(J))))
    return 1.0 / rate if rate > 0 else math.inf


def _once(key, message: str, stacklevel: int) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, StepSizeWarning, stacklevel=stacklevel + 1)


def warn_step_size(net: SSN, dt: float, integrator, timescale_ms: Optional[float] = None,
                   stacklevel: int = 2) -> None:
    """Warn (``StepSizeWarning``, once per setting) when dt is large against min tau or
    against ``timescale_ms`` (the fastest time scale of the closure Jacobian, ms; see the
    module docstring for both levels).  ``integrator``: an object with ``name`` and ``order``.
    Nothing is checked for a traced ``net.tau`` (inside ``jit``), and no Jacobian check
    without ``timescale_ms``."""
    p, name = int(integrator.order), integrator.name
    if not is_traced(net.tau):
        x = step_size_ratio(net, dt)
        if x**p > TAU_LEVEL:
            _once(("tau", round(dt, 12), round(x, 12), name),
                  f"simulate: dt = {dt:g} ms is large against the fastest time constant "
                  f"(min tau = {dt / x:g} ms, dt/tau = {x:.3g}) for the order-{p} integrator "
                  f"{name!r}: expect a step error of order (dt/tau)^{p} = {x**p:.2g} "
                  "or more in the moments; measure it with momentssn.simulation.step_error.step_error",
                  stacklevel)
    if timescale_ms is None:
        return
    try:
        ts = float(timescale_ms)
    except (TypeError, ValueError):
        ts = math.nan
    if math.isnan(ts) or ts <= 0:
        raise ValueError(f"timescale_ms must be a number > 0 (ms), got {timescale_ms!r}")
    y = dt / ts
    if y**p > JACOBIAN_LEVEL:
        _once(("jacobian", round(dt, 12), round(ts, 12), name),
              f"simulate: dt = {dt:g} ms is large against the fastest time scale of the closure "
              f"Jacobian (1/max|lambda| = {ts:.3g} ms, dt max|lambda| = {y:.3g}) for the order-{p} "
              f"integrator {name!r}: (dt max|lambda|)^{p} = {y**p:.2g} > {JACOBIAN_LEVEL:g}; a fast "
              "mode may be resolved too coarsely; measure the step error with "
              "momentssn.simulation.step_error.step_error",
              stacklevel)
