"""The step-size warning: min tau, and the closure Jacobian's fastest rate when the caller
passes it (``timescale_ms``); float64 is enabled in conftest.py."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.closure.equations import jacobian_at
from momentssn.closure.stationary import stationary_solve
from momentssn.simulation.integrators.registry import DEFAULT
from momentssn.simulation.simulate import simulate
from momentssn.simulation.step_size import StepSizeWarning, jacobian_timescale, warn_step_size

# strongly coupled E/I pair: closure eigenvalues -0.21 and -1.51 /ms, 15x faster than 1/tau_min
# (measured: Heun's I std is 0.37% off at dt |lambda| = 1.13 and 12% at 1.89)
STRONG = ms.SSN(np.array([[5.0, -12.0], [10.0, -12.0]]), np.array([20.0, 10.0]),
                np.array([[1.0, 0.5], [0.5, 1.0]]), 20.0, n_exc=1)
H_STRONG = jnp.array([20.0, 20.0])
# (dt / tau_min)^2 = 4.2e-3 < 5e-3: the leak alone accepts dt = 0.65 ms; crosscheck's own
# simulate call has these settings (one compilation for both tests)
RUN = dict(t_max=8.0, dt=0.65, n_trials=2, burn_in=2.0)


def _caught(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn()
    return [str(x.message) for x in w if issubclass(x.category, StepSizeWarning)]


_jacobian = jax.jit(jacobian_at)


def _closure_jacobian(net, h):
    m, info = stationary_solve(net, h)  # as crosscheck solves it (one compilation)
    assert bool(info.converged) and float(info.max_real_eig) < 0
    return np.asarray(_jacobian(net, m.mean, jnp.diagonal(m.cov)))


def test_jacobian_timescale_against_closed_forms():
    tau = np.array([20.0, 7.0, 10.0])
    assert jacobian_timescale(-np.diag(1.0 / tau)) == pytest.approx(7.0)  # W = 0: J = -T^-1
    J = np.array([[[-0.3, 0.8], [-0.9, -0.1]], [[np.nan, 0.0], [0.0, 1.0]]])  # the NaN one is skipped
    tr, det = np.trace(J[0]), np.linalg.det(J[0])
    lam = (tr + np.sqrt(complex(tr * tr - 4 * det))) / 2  # a complex pair: |lambda| = sqrt(det)
    assert jacobian_timescale(J) == pytest.approx(1.0 / abs(lam)) == pytest.approx(1.0 / np.sqrt(det))
    assert jacobian_timescale(np.full((2, 2), np.nan)) == np.inf
    with pytest.raises(ValueError, match="J must have shape"):
        jacobian_timescale(np.zeros(3))
    for bad in (0.0, -1.0, float("nan"), "fast"):
        with pytest.raises(ValueError, match="timescale_ms"):
            warn_step_size(STRONG, 0.1, DEFAULT, bad)


def test_fast_jacobian_mode_warns_where_tau_alone_accepts_once_per_setting():
    J = _closure_jacobian(STRONG, H_STRONG)
    ts = jacobian_timescale(J)
    tr, det = np.trace(J), np.linalg.det(J)  # two real eigenvalues: the fastest by the closed form
    assert ts == pytest.approx(1.0 / abs((tr - np.sqrt(tr * tr - 4 * det)) / 2), rel=1e-10)
    assert 0.6 < ts < 0.7  # max |lambda| ~ 1.5 /ms against 1/tau_min = 0.1 /ms
    h = H_STRONG[None]
    assert _caught(lambda: simulate(STRONG, h, **RUN)) == []
    msgs = _caught(lambda: [simulate(STRONG, h, **RUN, timescale_ms=ts) for _ in range(2)])
    assert len(msgs) == 1 and "closure Jacobian" in msgs[0] and "'heun'" in msgs[0], msgs  # once
    # (dt max|lambda|)^2 = 0.14 at dt = 0.25: below the level 0.25, no warning
    assert _caught(lambda: warn_step_size(STRONG, 0.25, DEFAULT, ts)) == []
    # a new setting (another dt) warns again, once
    assert len(_caught(lambda: [warn_step_size(STRONG, 0.7, DEFAULT, ts) for _ in range(2)])) == 1


def test_crosscheck_and_simulated_score_pass_the_closure_timescale():
    net = STRONG.replace(tau=jnp.array([20.0, 9.99]))  # a time scale of its own: a fresh once-registry
    msgs = _caught(lambda: ms.crosscheck(net, H_STRONG, **RUN))
    assert len(msgs) == 1 and "closure Jacobian" in msgs[0], msgs
    ts = jacobian_timescale(_closure_jacobian(net, H_STRONG))
    tm, tc = np.zeros((1, 2)), np.eye(2)[None]
    score = dict(n_trials=2, t_max=8.0, burn_in=2.0, dt=0.55)
    assert _caught(lambda: ms.simulated_score(net, H_STRONG[None], tm, tc, **score)) == []
    msgs = _caught(lambda: ms.simulated_score(net, H_STRONG[None], tm, tc, **score, timescale_ms=ts))
    assert len(msgs) == 1 and "closure Jacobian" in msgs[0], msgs


def test_no_warning_at_the_defaults_on_the_published_network(echeveste_task_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from reference import PUBLISHED_BASELINE15

    from momentssn.params.base import get_parameterization
    from momentssn.tasks import load_task

    tk = load_task(echeveste_task_path)
    param = get_parameterization("baseline15", m=tk.n_net // 2)
    theta = param.to_theta(dict(PUBLISHED_BASELINE15))
    net, H = param.network(theta), np.asarray(param.inputs(theta, jnp.asarray(tk.inputs)))
    # contrast 1, the fastest (measured: max |lambda| = 0.185 /ms at contrast 0, 0.359 /ms at 1)
    ts = jacobian_timescale(_closure_jacobian(net, jnp.asarray(H[-1])))
    assert 2.7 < ts < 2.9 and ts < float(np.min(net.tau)) / 3
    for dt in (0.5, 0.2):  # crosscheck / simulated_score / suites, and BPTT training
        assert _caught(lambda: warn_step_size(net, dt, DEFAULT, ts)) == []
    assert len(_caught(lambda: warn_step_size(net, 1.5, DEFAULT, ts))) >= 1
