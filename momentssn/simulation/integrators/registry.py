"""Integrator names and the default, chosen by measurement.

Published 15-parameter network, contrast 0, 64 trials x 2.5 s, same noise path (float32):
relative error of the pooled E mean / E std against the dt -> 0 limit (3.2909 / 2.1764 mV)

    dt (ms)      1.0            0.5            0.25           0.125
    heun      -0.53 / +0.30%  -0.00 / -0.10%  -0.04 / +0.00%  -0.02 / +0.01%
    etd2      -3.5  / +3.4 %  -0.65 / +0.61%  -0.14 / +0.11%  -0.05 / +0.05%
    exp_ab2   -4.3  / +4.4 %  -0.60 / +0.58%  -0.17 / +0.15%
    exp_euler -50   / +35  %  -25   / +21  %  -12   / +12  %  -5.3  / +5.6 %

The cost of a step hardly depends on the scheme (the noise dominates), so Heun reaches 1%
with the largest step and is the default.  On a 2-cell network near threshold its moment
error is also about half that of etd2 (tests/simulation/test_integrators.py).
"""

from __future__ import annotations

from typing import Dict, Union

from .base import Integrator
from .etd2 import ExponentialTrapezoid
from .exp_ab2 import ExponentialAB2
from .exp_euler import ExponentialEuler
from .heun import Heun

__all__ = ["INTEGRATORS", "DEFAULT", "get_integrator"]

INTEGRATORS: Dict[str, Integrator] = {
    i.name: i for i in (Heun(), ExponentialTrapezoid(), ExponentialAB2(), ExponentialEuler())
}

DEFAULT: Integrator = Heun()


def get_integrator(integrator: Union[str, Integrator, None]) -> Integrator:
    """An integrator object from itself, its name (see ``INTEGRATORS``) or ``None`` (the
    default).  Raises ``ValueError`` naming the known names for an unknown one."""
    if integrator is None:
        return DEFAULT
    if isinstance(integrator, str):
        try:
            return INTEGRATORS[integrator]
        except KeyError:
            raise ValueError(f"integrator must be one of {sorted(INTEGRATORS)} or an Integrator object, "
                             f"got {integrator!r}") from None
    if not isinstance(integrator, Integrator):
        raise ValueError(f"integrator must have name, order, init and step (momentssn.simulation."
                         f"integrators.base.Integrator), got {type(integrator).__name__}")
    return integrator
