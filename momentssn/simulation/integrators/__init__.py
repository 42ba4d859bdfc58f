"""Integrators of the membrane potential u over one step, given the exact OU noise at both
ends of the step (one scheme per module, diffrax-style objects with ``name``, ``order``,
``init`` and ``step``).

Modules:
    base       the ``Integrator`` protocol and ``Drift`` (the network's deterministic drive)
    exp_euler  exponential Euler, first order (the scheme used up to version 0.x)
    heun       Heun / explicit trapezoid, second order, two drive evaluations per step (default)
    etd2       exponential trapezoid (ETD2RK): leak exact, second order, two evaluations
    exp_ab2    exponential Adams-Bashforth 2: leak exact, second order, one evaluation
    registry   names -> integrator objects (``get_integrator``), the default
"""
