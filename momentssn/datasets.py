"""Data that ships with momentssn (see momentssn/data/README.md for provenance).

    ms.datasets.echeveste2020_path()   # path of the published 15-parameter task (.npz)
    ms.datasets.ECHEVESTE2020_PARAMS   # the published Baseline15 parameters (physical, dict)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUILTIN_TASKS", "ECHEVESTE2020_PARAMS", "echeveste2020_path"]


def echeveste2020_path() -> Path:
    """Path of the published task of Echeveste et al. (2020), shipped as package data."""
    return Path(str(resources.files("momentssn") / "data" / "echeveste2020.npz"))


BUILTIN_TASKS = {"echeveste2020": echeveste2020_path}


#: The published Baseline15 parameters of Echeveste et al. (2020) (physical units: a_XY
#: mV/Hz, var_X mV^2; ``Baseline15.to_theta`` takes this dict), from the authors'
#: released parameter files (SSN/parameter_files/*_learn): the reference network of
#: the published task.
ECHEVESTE2020_PARAMS = dict(
    a_ee=0.331089168896709307, d_ee=0.802756367925039016, a_ei=0.081307171738997791,
    d_ei=0.568730595704363684, a_ie=0.363214560956081789, d_ie=0.859828425651255390,
    a_ii=0.073595337344484008, d_ii=0.629804883130465232, var_e=6.399186720550809504,
    var_i=3.533514014946008697, ell_eta=0.477952645032425183, rho=0.992852418877574472,
    in_a=1.955517265245506842, in_b=0.103232893380230673, in_p=2.034269617565710231,
)
