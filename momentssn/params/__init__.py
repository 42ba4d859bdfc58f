"""Parameterizations: an unconstrained vector theta <-> an SSN and its input map.

Modules:
    base     Field, the Parameterization interface (input map, JSON), DaleMixing, the registry
    ring     Baseline15, Ring, General: the ring SSNs of Echeveste et al. (2020)
    growing  Growing: the size-varying parameterization of dynamics-neutral growth
"""
