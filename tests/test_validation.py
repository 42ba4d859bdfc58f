"""Tests of the validation suites (validation.suites), in quick mode."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from validation.plans import load_baseline_theta, random_ei_network
from validation.suites import SUITES, run_suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_suites_listed():
    assert set(SUITES) == {"two_population", "ou", "random100", "echeveste2020"}
    with pytest.raises(ValueError, match="unknown suite"):
        run_suite("nope", "/tmp/unused", progress=False)


def test_ou_quick_suite_passes(tmp_path, capsys):
    res = run_suite("ou", tmp_path, quick=True, progress=True)
    assert res.passed, [c for c in res.checks if not c.passed]
    text = (tmp_path / "report.md").read_text()
    assert "PASS" in text and "| # | stimulus |" in text and "max |z|" in text
    assert "## Time step" in text and "step doubling" in text  # the step error, beside the MC error
    assert res.report.step is not None and res.report.step["ratio_to_mc"].shape == (res.report.n_stimuli,)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] is True and summary["suite"] == "ou"
    for key in ("scatter", "transient"):
        assert os.path.getsize(res.files[key]) > 10_000
    assert "[validate ou]" in capsys.readouterr().out  # progress printed


def test_two_population_quick_suite_threshold(tmp_path):
    res = run_suite("two_population", tmp_path, quick=True, progress=False)
    assert res.passed, [c for c in res.checks if not c.passed]
    r = res.report
    h = r.h[:, 0]
    near, above = np.isclose(h, 1.0), h >= 3
    # the closure is visibly off near threshold and within ~1% (+ noise) above
    assert r.err["std"][near].max() > 3 * r.err["std"][above].max()
    assert r.err["mean"][near].max() > r.err["mean"][above].max()
    assert np.all(r.err["mean"][above] < 0.01)
    assert os.path.exists(tmp_path / "sweep.png") and os.path.exists(tmp_path / "report.md")
    assert res.stimulus_pass[0] is None and all(res.stimulus_pass[b] for b in np.flatnonzero(above))


def test_random_network_is_seeded_and_dale():
    a, b = random_ei_network(20, seed=3), random_ei_network(20, seed=3)
    np.testing.assert_array_equal(np.asarray(a.W), np.asarray(b.W))
    assert a.satisfies_dale() and a.n_exc == 10


def test_baseline_params_loading(tmp_path):
    pz = pytest.importorskip("momentssn.params.base")
    param = pz.get_parameterization("baseline15", m=4)
    theta0 = param.default_theta()
    np.testing.assert_allclose(load_baseline_theta(param, None), theta0)
    doc = json.loads(param.to_json(theta0))
    for content in (doc, {"result": doc}, {"params": doc["params"]}, doc["params"],
                    {"theta": np.asarray(theta0).tolist()}):
        path = tmp_path / "p.json"
        path.write_text(json.dumps(content))
        np.testing.assert_allclose(load_baseline_theta(param, path), theta0, rtol=1e-12)
    path.write_text(json.dumps({"something": 1}))
    with pytest.raises(ValueError, match="no baseline15 parameters"):
        load_baseline_theta(param, path)


def test_echeveste_suite_runs_on_the_shipped_task_by_default():
    from validation.plans import PLANS

    plan = PLANS["echeveste2020"](quick=True, seed=0)
    assert plan.net.N == 100 and plan.h.shape == (5, 100) and plan.extra["task"] == "echeveste2020"


def test_echeveste_suite_needs_task(tmp_path):
    with pytest.raises(FileNotFoundError, match="published task"):
        run_suite("echeveste2020", tmp_path, quick=True, progress=False, task=tmp_path / "missing.npz")


def test_run_script_help():
    out = subprocess.run([sys.executable, os.path.join(REPO, "validation", "run.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--suite" in out.stdout
