"""The files of a baseline fit (momentssn.experiments.report): strict JSON summaries,
arrays in .npz, figures; checked against the moments they summarize."""

import json

import jax.numpy as jnp
import numpy as np

import momentssn as ms
from momentssn.experiments.report import baseline_report

from test_compare import tiny_task  # noqa: E402 - tests/experiments is on sys.path (pytest rootdir-less import)


def test_baseline_report_files_are_compact_strict_and_consistent(tmp_path):
    task = tiny_task()
    param = ms.get_parameterization("baseline15", m=2)
    theta = np.asarray(param.default_theta())
    summary = baseline_report(param, task, theta, tmp_path, history=[[0.03, 0.02]], n_trials=8, t_max=600.0)
    for name in ("loss_curve.png", "fit_moments.png", "fit_covariances.png", "emergent.png",
                 "simulation_check.png"):
        assert (tmp_path / name).stat().st_size > 5_000, name

    def strict(name):  # a standard parser that refuses NaN / Infinity
        return json.loads((tmp_path / name).read_text(), parse_constant=lambda c: 1 / 0)

    check = strict("simulation_check.json")
    emergent = strict("emergent.json")
    assert len(emergent["rate_e_hz"]) == 3 and emergent["stimulus"] == [0, 1, 2]
    assert emergent["contrast"] == [None] * 3  # unknown contrasts: null, not NaN
    # summaries in JSON, moment arrays in the .npz
    assert "sim" not in check["closure_vs_simulation"] and (tmp_path / "simulation_check.json").stat().st_size < 20_000
    arrays = np.load(tmp_path / "simulation_check.npz")
    assert arrays["sim_mean"].shape == (3, 4) and arrays["sim_cov"].shape == (3, 4, 4)
    # the closure arrays are the stationary moments, and the losses those of the saved moments
    net = param.network(jnp.asarray(theta))
    h = param.inputs(jnp.asarray(theta), jnp.asarray(task.inputs))
    m = ms.stationary_moments(net, h)
    np.testing.assert_allclose(arrays["closure_mean"], m.mean, rtol=1e-8, atol=1e-10)
    sim = ms.Moments(jnp.asarray(arrays["sim_mean"]), jnp.asarray(arrays["sim_cov"]))
    per = np.asarray(ms.loss_per_stimulus(sim, task.target_mean, task.target_cov))
    np.testing.assert_allclose(check["simulated_loss_per_stimulus"], per, rtol=1e-10)
    assert summary["simulation_check"]["simulated_loss"] == check["simulated_loss"]
