"""Training methods side by side (momentssn.experiments.compare) and the train / compare verbs.

One tiny task (Baseline15 with m = 2, N = 4, 3 stimuli) and small budgets: these
tests check the plumbing and the scoring, not which method wins.
"""

import functools
import json

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.cli import main
from momentssn.experiments.compare import doubling_sizes, train_run
from momentssn.tasks import Task

SIM = dict(n_trials=16, t_max=60.0, t_avg=20.0, dt=0.5)  # BPTT settings of the tiny runs
SCORE = dict(n_trials=16, t_max=400.0, burn_in=100.0, dt=0.5)


@functools.lru_cache(maxsize=None)
def tiny_task() -> Task:
    """Targets: stationary closure moments of a perturbed Baseline15 (m = 2)."""
    param = ms.get_parameterization("baseline15", m=2)
    true = param.random_theta(5, scale=0.2)
    raw = np.repeat(np.random.default_rng(1).uniform(0.0, 1.0, size=(3, 2)), 2, axis=1)
    m = ms.stationary_moments(param.network(true), param.inputs(true, jnp.asarray(raw)))
    return Task(inputs=raw, target_mean=np.asarray(m.mean[:, :2]), target_cov=np.asarray(m.cov[:, :2, :2]),
                n_exc=2, name="tiny")


def test_doubling_sizes():
    assert doubling_sizes(50, 50) == [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16), (32, 32), (50, 50)]
    assert doubling_sizes(2, 2) == [(1, 1), (2, 2)]
    assert doubling_sizes(4, 2) == [(1, 1), (2, 1), (4, 2)]


def test_train_run_arguments_are_checked():
    task = tiny_task()
    with pytest.raises(ValueError, match="method must be one of"):
        train_run("sgd", "ring", task)
    with pytest.raises(ValueError, match="net must be one of"):
        train_run("bptt", "mlp", task)
    with pytest.raises(ValueError, match="growth grows a general network"):
        train_run("growth", "ring", task)
    with pytest.raises(ValueError, match="budget_s"):
        train_run("bptt", "ring", task, budget_s=-1.0)


def test_compare_every_method_end_to_end(tmp_path):
    task = tiny_task()
    runs = [("moments-lbfgs", "baseline15"), ("moments-adam", "baseline15"), ("bptt", "baseline15"),
            ("growth", "general")]
    s = ms.compare_methods(task, runs=runs, seeds=(0,), budget_s=120.0, steps=4, out=tmp_path, sim=SIM, score=SCORE,
                           progress=False)
    assert {"summary.json", "report.md", "loss_curves.png", "simulated_vs_targets.png"} <= {
        p.name for p in tmp_path.iterdir()}
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["winner"] == s["winner"]
    assert len(s["rows"]) == 4
    for row in s["rows"]:
        assert not row["failed"], row["failure"]
        assert row["iterations"] >= 2 and len(row["trace"]["loss"]) == len(row["trace"]["wall_time_s"])
        assert np.isfinite(row["simulated_loss"]) and np.isfinite(row["closure_loss"])
    # the winner is the run with the lowest simulated loss
    best = min(s["rows"], key=lambda r: r["simulated_loss"])
    assert s["winner"]["run"] == f"{best['method']}:{best['net']}"
    assert s["winner"]["run"] in (tmp_path / "report.md").read_text()
    assert all(v["failed_fraction"] == 0.0 for v in s["per_method"].values())
    # training moved the moment-based methods (their own loss went down)
    for row in s["rows"][:2]:
        assert row["trace"]["loss"][-1] < row["trace"]["loss"][0]


def test_train_verb_writes_result_and_resumes(tmp_path):
    path = tiny_task().save(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    args = ["train", "--method", "moments-adam", "--net", "baseline15", "--task", path, "--out", str(out),
            "--steps", "3", "--max-time", "60"]
    assert main(args) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["trace"]["iteration"] == [0, 1, 2] and np.isfinite(res["simulated_loss"])
    # the simulated loss with both error bars: Monte Carlo and time step
    assert res["simulated_loss_se"] > 0 and abs(res["simulated_loss_step_error"]) < res["simulated_loss"]
    # the parameters load back as a network
    assert ms.load(out).net.N == ms.load(out / "params.json").net.N
    assert (out / "params.json").exists() and (out / "loss.png").exists()
    # resume to 5 steps: the first 3 losses are those of the first run
    assert main(args[:-4] + ["--steps", "5", "--max-time", "60", "--resume", "--no-check"]) == 0
    res2 = json.loads((out / "result.json").read_text())
    assert res2["trace"]["loss"][:3] == res["trace"]["loss"] and len(res2["trace"]["loss"]) == 5
