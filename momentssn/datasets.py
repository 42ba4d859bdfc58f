"""Data that ships with momentssn (see momentssn/data/README.md for provenance).

    ms.datasets.echeveste2020_path()   # path of the published 15-parameter task (.npz)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUILTIN_TASKS", "echeveste2020_path"]


def echeveste2020_path() -> Path:
    """Path of the published task of Echeveste et al. (2020), shipped as package data."""
    return Path(str(resources.files("momentssn") / "data" / "echeveste2020.npz"))


BUILTIN_TASKS = {"echeveste2020": echeveste2020_path}
