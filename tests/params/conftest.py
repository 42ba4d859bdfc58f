"""Shared fixtures of the parameterization tests: the three ring parameterizations at
m = 50 and their default thetas (built once per session)."""

import pytest

from momentssn.params.base import get_parameterization

KINDS = ("baseline15", "ring", "general")


@pytest.fixture(scope="session")
def params50():
    return {kind: get_parameterization(kind, m=50) for kind in KINDS}


@pytest.fixture(scope="session")
def default_thetas(params50):
    return {kind: p.default_theta() for kind, p in params50.items()}
