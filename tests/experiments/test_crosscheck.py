"""Tests of momentssn.experiments.crosscheck (float64 is enabled in conftest.py).

Compilation dominates: every network here has N = 2 and n_exc = 1 and every call
uses one stimulus in a (1, 2) batch, so the stationary solver compiles once; the
simulations share t_max/dt/n_trials.
"""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.experiments.crosscheck import crosscheck
from momentssn.experiments.crosscheck_report import CrosscheckReport
from momentssn.experiments.crosscheck_stats import compare_moments, relative_error
from momentssn.experiments.plotting import write_crosscheck_figures

SIM = dict(t_max=6000.0, dt=0.5, n_trials=128, burn_in=1000.0)


def ou_net():
    """W = 0, correlated noise: the closure is exact."""
    return ms.SSN(np.zeros((2, 2)), [20.0, 10.0], [[1.0, 0.4], [0.4, 0.6]], 20.0, n_exc=1)


@pytest.fixture(scope="module")
def ou_report():
    return crosscheck(ou_net(), jnp.array([[2.0, -1.0]]), seed=1, **SIM)


@pytest.fixture(scope="module")
def twopop_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("crosscheck") / "twopop.png"
    report = crosscheck(ms.SSN.two_population(), jnp.array([[15.0, 15.0]]), seed=3, transient=True,
                        transient_t_max=100.0, transient_trials=128, step_check=True, **SIM)
    return write_crosscheck_figures(report, out)


def test_ou_consistent_within_4_se(ou_report):
    r = ou_report
    assert isinstance(r, CrosscheckReport) and r.n_stimuli == 1 and r.N == 2
    assert r.status == ("ok",) and r.closure_stable.all() and r.n_diverged[0] == 0
    assert r.consistent(n_se=4.0, moments=("mean", "std", "cov", "corr"))
    for m in ("mean", "cov"):
        assert r.z_max[m][0] < 4.0 and 0.1 < r.z_rms[m][0] < 2.5, (m, r.z_max, r.z_rms)
    # errors of the size of their noise floor, not much larger
    for m in ("mean", "std", "cov"):
        assert r.err[m][0] < 4.0 * r.err_se[m][0], (m, r.err, r.err_se)
    # the closure is exact here: mean = h, covariance = filtered OU covariance
    np.testing.assert_allclose(r.theory.mean[0], [2.0, -1.0], atol=1e-10)


def test_two_population_h15_within_2_percent(twopop_report):
    r = twopop_report
    assert r.status == ("ok",)
    assert r.err["mean"][0] < 0.02 and r.err["std"][0] < 0.02, r.summary()
    assert r.within(0.02, ("mean", "std"))
    per_neuron = np.abs(np.sqrt(np.diag(r.theory.cov[0])) / np.sqrt(np.diag(r.sim.cov[0])) - 1)
    assert np.all(per_neuron < 0.02), per_neuron
    assert r.z["mean"].shape == (1, 2) and r.z["cov"].shape == (1, 2, 2)


def test_step_error_is_reported_beside_the_monte_carlo_error(twopop_report, ou_report):
    r = twopop_report
    assert ou_report.step is None  # only when asked for
    assert r.step["dt"] == SIM["dt"] and r.step["order"] >= 2
    # the default (second-order) scheme at dt = 0.5 ms: step error below the MC error
    assert np.all(r.step["adequate"]) and np.all(r.step["ratio_to_mc"] > 0), r.step
    assert 0 < r.step["mean_max_abs"][0] < r.sim_se.mean.max() and "time step 0.5 ms" in r.summary()
    assert json.loads(json.dumps(r.to_dict(arrays=False)))["step_error"]["adequate"] == [True]


def test_standard_errors_finite_and_positive(twopop_report, ou_report):
    for r in (twopop_report, ou_report):
        for m in ("mean", "std", "var", "cov", "corr", "mean_abs"):
            s = r.err_se[m]
            assert np.all(np.isfinite(s)) and np.all(s > 0), (m, s)
        assert np.all(np.isfinite(r.sim_se.mean)) and np.all(r.sim_se.mean > 0)
        assert np.all(np.isfinite(r.sim_se.cov)) and np.all(r.sim_se.cov > 0)
        assert np.all(np.isfinite(r.std_se)) and np.all(r.std_se > 0)
        assert r.corr_se[0, 0, 1] > 0 and r.corr_se[0, 0, 0] == 0
    # the std SE is the delta-method SE of the variance, to first order
    r = twopop_report
    sd = np.sqrt(np.diag(r.sim.cov[0]))
    np.testing.assert_allclose(r.std_se[0], np.diag(r.sim_se.cov[0]) / (2 * sd), rtol=0.05)


def test_report_is_json_serialisable(twopop_report):
    d = json.loads(json.dumps(twopop_report.to_dict()))
    assert d["status"] == ["ok"] and d["N"] == 2
    assert set(d["err"]) >= {"mean", "std", "var", "cov", "corr"}
    assert d["transient"]["n_trials"] == 128
    small = twopop_report.to_dict(arrays=False)
    assert "theory" not in small and "err_se" in small
    assert "stim" in twopop_report.summary()


def test_figures_written(twopop_report):
    figs = twopop_report.figures
    assert set(figs) == {"scatter", "transient"}
    for path in figs.values():
        assert os.path.exists(path) and os.path.getsize(path) > 10_000, path
    tr = twopop_report.transient
    assert tr.t[0] == 0 and tr.mean_th.shape == tr.mean_sim.shape == (1, tr.t.size, 2)
    # the closure transient from rest follows the simulation (mean within a few %)
    assert tr.err["mean"][0] < 0.05 and tr.err["std"][0] < 0.15, tr.err


def test_unstable_network_reported_not_raised():
    # runaway excitation: no fixed point, every trial diverges
    bad = ms.SSN.two_population(W=((3.0, -0.5), (1.2, -0.5)))
    r = crosscheck(bad, jnp.array([[15.0, 15.0]]), **SIM)
    assert not r.closure_stable[0] and "closure unstable" in r.status[0]
    assert r.closure_message[0]
    assert r.n_diverged[0] == SIM["n_trials"] and "simulation diverged" in r.status[0]
    assert not r.within(0.5) and not r.consistent()
    assert all(math.isnan(r.err[m][0]) for m in ("mean", "std", "cov"))
    json.dumps(r.to_dict())  # NaN -> null


def test_compare_moments_by_hand():
    """Error measures, noise floors and z-scores on known numbers."""
    th = ms.Moments(np.array([[1.0, 2.0]]), np.array([[[1.0, 0.5], [0.5, 4.0]]]))
    sim = ms.Moments(np.array([[1.1, 2.0]]), np.array([[[1.0, 0.0], [0.0, 4.0]]]))
    se = ms.Moments(np.array([[0.1, 0.2]]), np.full((1, 2, 2), 0.25))
    std_se = np.array([[0.1, 0.1]])
    corr_se = np.array([[[0.0, 0.05], [0.05, 0.0]]])
    err, err_se, z, z_rms, z_max = compare_moments(th, sim, se, std_se, corr_se)
    np.testing.assert_allclose(err["mean"], [0.1 / math.hypot(1.1, 2.0)])
    np.testing.assert_allclose(err_se["mean"], [math.hypot(0.1, 0.2) / math.hypot(1.1, 2.0)])
    np.testing.assert_allclose(err["cov"], [math.sqrt(2 * 0.25) / math.sqrt(17.0)])
    np.testing.assert_allclose(err["corr"], [math.sqrt(2) * 0.25])  # R_th off-diagonal = 0.25
    np.testing.assert_allclose(z["mean"], [[-1.0, 0.0]])
    np.testing.assert_allclose(z_max["cov"], [2.0])
    np.testing.assert_allclose(z_max["corr"], [5.0])
    np.testing.assert_allclose(relative_error([1.0, 2.0], [1.0, 1.0]), 1 / math.sqrt(2))


def test_argument_errors():
    with pytest.raises(ValueError, match="h must have shape"):
        crosscheck(ms.SSN.two_population(), np.zeros(3))
