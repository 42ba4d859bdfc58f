"""Integrator names and the default (chosen by measurement, see ``DEFAULT``)."""

from __future__ import annotations

from typing import Dict, Union

from .base import Integrator
from .etd2 import ExponentialTrapezoid
from .exp_ab2 import ExponentialAB2
from .exp_euler import ExponentialEuler
from .heun import Heun

__all__ = ["INTEGRATORS", "DEFAULT", "get_integrator"]

INTEGRATORS: Dict[str, Integrator] = {
    i.name: i for i in (ExponentialTrapezoid(), ExponentialAB2(), Heun(), ExponentialEuler())
}

DEFAULT: Integrator = ExponentialTrapezoid()


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
