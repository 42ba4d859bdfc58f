"""Stochastic simulation of the SSN: many trials in parallel, moments streamed.

Modules:
    simulate     argument checks and the entry point ``simulate`` (``ms.simulate``)
    noise        counter-based normals for the exact OU input (refinement: common random numbers across dt)
    integrators  one scheme per module (``heun``, the default; ``etd2``, ``exp_ab2``, ``exp_euler``)
    kernel       the jitted scan: chunks, checkpoints, sharding, divergence masking
    result       ``SimulationResult`` and the Monte Carlo standard errors
    step_error   the step error measured by step doubling with the same noise (``step_error``)
"""
