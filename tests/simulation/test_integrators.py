"""Integrators: empirical order of convergence with common random numbers, the step error
estimate, names and objects (float64 is enabled in conftest.py).

The network: the two-population mean field of the published 15-parameter network at
contrast 0 (E and I driven by strong correlated noise near threshold, with a slow mode
that integrates drift errors, as in the full network).  Every run sees the noise path of a
1/16 ms grid (``noise_substeps``), so differences between runs are discretization errors.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.simulation.integrators.base import Integrator
from momentssn.simulation.integrators.heun import Heun
from momentssn.simulation.integrators.registry import DEFAULT, INTEGRATORS, get_integrator
from momentssn.simulation.simulate import StepSizeWarning, _warn_step, simulate
from momentssn.simulation.step_error import step_error

NET = ms.SSN(np.array([[8.65, -2.04], [9.69, -1.85]]), np.array([20.0, 10.0]),
             np.array([[6.4, 4.72], [4.72, 3.54]]), 20.0, n_exc=1)
H = jnp.array([0.02, 0.02])
FINE = 1 / 16
KW = dict(burn_in=200.0, dtype=jnp.float64)
T_MAX, TRIALS, SEED = 4200.0, 64, 1  # run time is small next to compilation


def _run(integrator, dt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StepSizeWarning)
        r = simulate(NET, H, T_MAX, dt, TRIALS, SEED, integrator=integrator,
                     noise_substeps=int(round(dt / FINE)), **KW)
    return r


def _vec(r):
    return np.concatenate([np.asarray(r.moments.mean), np.asarray(r.moments.std)])


@pytest.fixture(scope="module")
def ref():
    return _vec(_run("etd2", FINE))


def _slope(dts, errs):
    return float(np.polyfit(np.log(dts), np.log(errs), 1)[0])


def test_default_is_second_order_and_old_scheme_first_order(ref):
    dts = np.array([2.0, 1.0, 0.5])
    err = {name: np.array([np.linalg.norm(_vec(_run(name, dt)) - ref) for dt in dts])
           for name in (DEFAULT.name, "exp_euler")}
    p_new, p_old = _slope(dts, err[DEFAULT.name]), _slope(dts, err["exp_euler"])
    # measured (seeds 1, 2, 3): heun 2.20, 2.07, 2.12; exp_euler 1.29, 1.34, 1.25
    assert p_new >= 1.8, (p_new, err)
    assert 0.8 <= p_old <= 1.5, (p_old, err)
    # and at dt = 0.5 the new default is >= 20x more accurate than the old scheme
    assert err[DEFAULT.name][-1] * 20 < err["exp_euler"][-1], err


def test_step_error_estimates_the_error_against_the_reference(ref):
    """Step doubling at dt = 1 (the same noise path as the reference) predicts the
    actual error of the run at dt = 1 (Richardson, order 2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StepSizeWarning)
        se = step_error(NET, H, T_MAX, 1.0, TRIALS, SEED, noise_substeps=8, **KW)
    actual = _vec(se.coarse) - ref
    est = np.concatenate([np.asarray(se.error.mean), np.asarray(se.std_error)])
    assert se.order == 2 and se.dt == 1.0
    # the coarse run is the run of the order test (same compiled configuration and path)
    np.testing.assert_allclose(_vec(se.coarse), _vec(_run(DEFAULT, 1.0)), rtol=1e-12)
    tol = 0.35 * np.abs(actual) + 3 * np.concatenate([np.asarray(se.error_se.mean), np.zeros(2)]) + 1e-4
    assert np.all(np.abs(est - actual) <= tol), (est, actual)
    # the error is far below the Monte Carlo error of these 64 trials: adequate
    assert bool(se.adequate()) and float(se.ratio()) < 0.5
    assert np.all(np.asarray(se.mc_se.mean) > 0) and np.all(np.asarray(se.std_mc_se) > 0)


def test_names_and_objects():
    assert isinstance(DEFAULT, Integrator) and DEFAULT == Heun()
    for name, obj in INTEGRATORS.items():
        assert get_integrator(name) is obj and obj.name == name and get_integrator(obj) is obj
    assert get_integrator(None) is DEFAULT
    with pytest.raises(ValueError, match="integrator must be one of"):
        simulate(NET, H, 10.0, 0.5, 2, integrator="rk45")
    with pytest.raises(ValueError, match="integrator must have"):
        get_integrator(object())


def test_step_size_warning_once_and_only_for_large_steps():
    net = NET.replace(tau=jnp.array([20.0, 7.0]))  # a tau of its own: the once-registry is fresh
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(2):
            simulate(net, H, 20.0, 0.5, 2, integrator="exp_euler")
        _warn_step(net, 0.25, DEFAULT)  # second order, (dt/tau)^2 = 1.3e-3: fine
        _warn_step(net, 0.6, DEFAULT)  # (dt/tau)^2 = 7.3e-3: warns
    msgs = [str(x.message) for x in w if issubclass(x.category, StepSizeWarning)]
    assert len(msgs) == 2 and "'exp_euler'" in msgs[0] and "min tau = 7 ms" in msgs[0], msgs
    assert "'heun'" in msgs[1] and "dt/tau = 0.0857" in msgs[1]


@pytest.mark.parametrize("name,kw", [("h", dict(h=jnp.array([np.nan, 0.0]))),
                                     ("u0", dict(u0=np.array([np.inf, 0.0]))),
                                     ("eta0", dict(eta0=np.array([np.nan, 0.0]))),
                                     ("dt", dict(dt=float("nan"))),
                                     ("t_max", dict(t_max=float("inf"))),
                                     ("burn_in", dict(burn_in=float("nan"))),
                                     ("bound", dict(bound=float("nan")))])
def test_nan_or_inf_arguments_raise_value_error_naming_them(name, kw):
    args = dict(h=H, t_max=10.0, dt=0.5)
    args.update({k: v for k, v in kw.items() if k in args})
    rest = {k: v for k, v in kw.items() if k not in args}
    with pytest.raises(ValueError, match=name):
        simulate(NET, args["h"], args["t_max"], args["dt"], 2, **rest)
