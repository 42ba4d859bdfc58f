"""The step error of a simulation, measured by step doubling with common random numbers.

Two runs see the *same* noise path (``simulate(..., noise_substeps=2)`` at dt and a plain
run at dt / 2, see ``noise``), so their difference is the integrator's discretization
error alone, with little Monte Carlo noise.  For an integrator of order p, Richardson's
estimate of the error of the run at dt is::

    err(dt) ~ (m_dt - m_{dt/2}) 2^p / (2^p - 1)         (and err(dt/2) ~ err(dt) / 2^p)

for every pooled moment m (mean, cov and std).  Its own uncertainty comes from the spread
of the same difference over independent trial groups.  A step is adequate when |err| is
below the Monte Carlo standard error of the moments (``StepError.adequate``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import jax.numpy as jnp

from ..moments import Moments
from .integrators.base import Integrator
from .integrators.registry import get_integrator
from .result import SimulationResult, group_standard_error
from .simulate import simulate

__all__ = ["StepError", "step_error"]


def _std(cov):
    return jnp.sqrt(jnp.maximum(jnp.diagonal(cov, axis1=-2, axis2=-1), 0.0))


class StepError(NamedTuple):
    """Output of :func:`step_error` (shapes as in ``SimulationResult.moments``: (B?, N) and
    (B?, N, N); std (B?, N); units mV, mV^2).

    Attributes:
        dt: the step judged (ms); order: the integrator's order p.
        error: Moments, estimated discretization error of the run at dt (signed,
            simulated minus dt -> 0 limit).
        std_error: (B?, N) the same for the standard deviations sqrt(diag cov).
        error_se: Moments, standard error of ``error`` itself (trial groups).
        mc_se: Moments, Monte Carlo standard error of the moments of the run at dt.
        std_mc_se: (B?, N) Monte Carlo standard error of the std (delta method: se(var) / 2 std).
        coarse: SimulationResult at dt (noise aggregated from dt / 2 steps).
        fine: SimulationResult at dt / 2 (same noise path); its error is ``error / 2^p``.
    """

    dt: float
    order: int
    error: Moments
    std_error: jnp.ndarray
    error_se: Moments
    mc_se: Moments
    std_mc_se: jnp.ndarray
    coarse: SimulationResult
    fine: SimulationResult

    def adequate(self, factor: float = 1.0) -> jnp.ndarray:
        """(B?,) bool: |error| <= factor * MC SE for every mean and std entry of a stimulus."""
        ok_m = jnp.abs(self.error.mean) <= factor * self.mc_se.mean
        ok_s = jnp.abs(self.std_error) <= factor * self.std_mc_se
        return jnp.all(ok_m & ok_s, axis=-1)

    def ratio(self) -> jnp.ndarray:
        """(B?,) largest |error| / MC SE over the means and stds of a stimulus."""
        r_m = jnp.abs(self.error.mean) / self.mc_se.mean
        r_s = jnp.abs(self.std_error) / self.std_mc_se
        return jnp.maximum(jnp.max(r_m, axis=-1), jnp.max(r_s, axis=-1))


def step_error(net, h, t_max: float, dt: float, n_trials: int, seed=0, burn_in: Optional[float] = None, *,
               integrator: Union[str, Integrator, None] = None, **simulate_kw) -> StepError:
    """Measure the step error of ``simulate(net, h, t_max, dt, n_trials, seed, burn_in, ...)``.

    Runs the simulation at dt (``noise_substeps=2``) and at dt / 2 on the same noise path
    (about 3x the cost of the run at dt) and returns Richardson's estimate of the error at dt
    beside the Monte Carlo standard error (see the module docstring).  ``simulate_kw`` go to
    both runs (``dtype``, ``n_groups``, ``progress``, ...; not ``record_stride`` or
    ``return_trajectories``); ``noise_substeps=R`` puts both on the noise path of a dt / (2R)
    grid (the coarse run takes 2R substeps, the fine one R), e.g. to compare with a run
    at a much smaller step on the same path.  t_max and burn_in are rounded to the
    grid of dt so both runs pool the same window.
    """
    R = int(simulate_kw.pop("noise_substeps", 1))
    for bad in ("record_stride", "return_trajectories"):
        if bad in simulate_kw:
            raise ValueError(f"step_error does not take {bad}")
    integ = get_integrator(integrator)
    dt = float(dt)
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    n_steps = int(round(float(t_max) / dt))
    t_max = n_steps * dt
    burn_in = 0.25 * t_max if burn_in is None else int(round(float(burn_in) / dt)) * dt
    kw = dict(simulate_kw, integrator=integ)
    coarse = simulate(net, h, t_max, dt, n_trials, seed, burn_in, noise_substeps=2 * R, **kw)
    fine = simulate(net, h, t_max, dt / 2, n_trials, seed, burn_in, noise_substeps=R, **kw)
    p = integ.order
    fac = 2.0**p / (2.0**p - 1.0)
    err = Moments(fac * (coarse.moments.mean - fine.moments.mean), fac * (coarse.moments.cov - fine.moments.cov))
    g_err = Moments(fac * (coarse.group_moments.mean - fine.group_moments.mean),
                    fac * (coarse.group_moments.cov - fine.group_moments.cov))
    n_g = coarse.group_n_samples
    mc_se = coarse.standard_error()
    std_c = _std(coarse.moments.cov)
    std_err = fac * (std_c - _std(fine.moments.cov))
    var_se = jnp.diagonal(mc_se.cov, axis1=-2, axis2=-1)
    return StepError(dt=dt, order=p, error=err, std_error=std_err,
                     error_se=group_standard_error(err, g_err, n_g), mc_se=mc_se,
                     std_mc_se=var_se / (2.0 * jnp.maximum(std_c, 1e-30)), coarse=coarse, fine=fine)
