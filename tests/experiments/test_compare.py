"""Training methods side by side (momentssn.experiments.compare) and the train / compare verbs.

One tiny task (Baseline15 with m = 2, N = 4, 3 stimuli) and small budgets: these
tests check the plumbing and the scoring, not which method wins.
"""

import dataclasses
import functools
import json

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.cli import main
from momentssn.experiments.compare import doubling_sizes, train_run
from momentssn.experiments.compare_score import Reference, published_reference, score_run
from momentssn.growth.trainers import ClosureStage
from reference import PUBLISHED_BASELINE15
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


# moments-adam runs in test_train_verb_writes_result_and_resumes
ALL_RUNS = [("moments-lbfgs", "baseline15"), ("bptt", "baseline15"), ("growth", "general"),
            ("corrected", "baseline15"), ("hybrid", "baseline15")]
# the correction's simulations of the tiny runs (the default is 64 trials x 2.5 s)
CORRECTION = ms.SimulationSettings(n_trials=16, t_max=400.0, burn_in=100.0, dt=0.5)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Every method on the tiny task, a few steps each, against a reference network (the
    one whose closure moments are the targets), scored with the tiny settings."""
    out = tmp_path_factory.mktemp("compare")
    task = tiny_task()
    param = ms.get_parameterization("baseline15", m=2)
    true = param.random_theta(5, scale=0.2)
    ref_score = ms.simulated_score(param.network(true), param.inputs(true, jnp.asarray(task.inputs)),
                                   task.target_mean, task.target_cov, **SCORE)
    ref = Reference("true", ref_score.loss, ref_score.loss_se, 0.0)
    # steps, not the budget, end the runs; snapshots from 120 s / 2^9 = 0.23 s on
    s = ms.compare_methods(task, runs=ALL_RUNS, seeds=(0,), budget_s=120.0, steps=4, out=out, sim=SIM,
                           score=SCORE, progress=False, reference=ref,
                           run_options=dict(correction=CORRECTION, n_snapshots=10))
    return s, out, ref


def test_compare_every_method_end_to_end(compared):
    s, out, _ = compared
    assert {"summary.json", "report.md", "simulated_loss_vs_time.png", "training_loss.png",
            "simulated_vs_targets.png"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "summary.json").read_text())
    assert saved["winner"] == s["winner"]
    assert len(s["rows"]) == len(ALL_RUNS)
    rows = {row["method"]: row for row in s["rows"]}
    for row in s["rows"]:
        assert not row["failed"], row["failure"]
        assert row["iterations"] >= 2 and len(row["trace"]["loss"]) == len(row["trace"]["wall_time_s"])
        assert np.isfinite(row["simulated_loss"]) and np.isfinite(row["closure_loss"])
        assert row["simulated_loss_se"] > 0
    assert all(v["failed_fraction"] == 0.0 for v in s["per_method"].values())
    # training moved L-BFGS (its own loss went down)
    assert rows["moments-lbfgs"]["trace"]["loss"][-1] < rows["moments-lbfgs"]["trace"]["loss"][0]
    # corrected and hybrid: 5 L-BFGS iterates (start + 4 steps), then the correction rounds' simulated
    # losses (at least one) or 4 Adam steps
    assert "correction round" in rows["corrected"]["loss_kind"] and "BPTT" in rows["hybrid"]["loss_kind"]
    assert rows["corrected"]["iterations"] >= 6 and rows["hybrid"]["iterations"] == 9
    for m in ("corrected", "hybrid"):
        tr = rows[m]["trace"]
        assert np.all(np.diff(tr["iteration"]) > 0) and np.all(np.diff(tr["wall_time_s"]) >= 0)


def test_compare_ranks_by_simulated_loss_with_the_gap(compared):
    s, out, ref = compared
    losses = [row["simulated_loss"] for row in s["rows"]]
    assert losses == sorted(losses) and s["ranking"] == [row["tag"] for row in s["rows"]]
    best = s["rows"][0]
    assert s["winner"]["run"] == f"{best['method']}:{best['net']}"
    nxt = s["per_method"][s["winner"]["runner_up"]]["median_simulated_loss"]
    assert s["winner"]["runner_up_ratio"] == pytest.approx(nxt / best["simulated_loss"])
    report = (out / "report.md").read_text()
    assert s["winner"]["run"] in report and "gap ratio" in report and "gap difference" in report
    for i, row in enumerate(s["rows"], 1):
        assert row["gap_ratio"] == pytest.approx(row["simulated_loss"] / row["closure_loss"])
        assert row["gap_difference"] == pytest.approx(row["simulated_loss"] - row["closure_loss"])
        assert row["ratio_to_reference"] == pytest.approx(row["simulated_loss"] / ref.loss)
        # the report's ranked table lists the run at its rank with its gap
        assert f"| {i} | {row['tag']} | {row['simulated_loss']:.4g} +- " in report
        assert f"| {row['gap_ratio']:.4g} | {row['gap_difference']:.4g} |" in report
    assert s["reference"]["loss"] == ref.loss


def test_compare_snapshots_are_scored_in_wall_time_order(compared):
    s, _, _ = compared
    for row in s["rows"]:
        snaps = row["snapshots"]
        t = [p["wall_time_s"] for p in snaps]
        assert np.all(np.diff(t) > 0), (row["tag"], t)
        assert snaps[-1]["final"] and snaps[-1]["loss"] == row["simulated_loss"]
        assert snaps[-1]["wall_time_s"] == pytest.approx(row["wall_time_s"])
        assert all(np.isfinite(p["loss"]) and p["loss_se"] > 0 for p in snaps)
    # every run passes scheduled times (0.23 s, 0.47 s, ...) before it stops (final network
    # included: >= 2 points); corrected keeps each correction round's network
    rows = {row["method"]: row for row in s["rows"]}
    # (growth keeps snapshots in its last stage only, which may end before the next
    # scheduled time: on a loaded machine it can have the final network alone)
    # (a run reusing compiled code can end before the first scheduled time, 0.23 s: only
    # runs that outlast the second one, 0.47 s, must have passed the first)
    short = [(row["tag"], len(row["snapshots"]), row["wall_time_s"]) for row in s["rows"]
             if len(row["snapshots"]) < 2 and row["wall_time_s"] > 2 * 120.0 / 2**9]
    assert all(tag.startswith("growth") for tag, _, _ in short), short
    n_rounds = rows["corrected"]["iterations"] - 5
    assert len(rows["corrected"]["snapshots"]) >= n_rounds + 1


def test_compare_resume_keeps_finished_runs_and_redoes_the_others(compared, tmp_path, monkeypatch):
    """A resumed comparison reads back every finished run exactly (same rows), trains
    only the runs without a finished record, and refuses finished runs made with other
    settings."""
    import shutil

    from momentssn.experiments import compare as cmp
    from momentssn.experiments import compare_store

    s, out, ref = compared
    new = tmp_path / "cmp"
    shutil.copytree(out / "runs", new / "runs")
    redo = "hybrid_baseline15_seed0"
    (new / "runs" / redo / compare_store.FILE).unlink()  # interrupted: trained anew
    trained = []

    def fake_train_run(method, net_kind, task, **kw):  # a run that fails at once (no network)
        trained.append((method, net_kind, kw["seed"]))
        return cmp.TrainingRun(method, net_kind, kw["seed"], dict(iteration=[], wall_time_s=[], loss=[]), "none",
                               None, None, np.asarray(task.target_mean), np.asarray(task.target_cov), None, 0.0,
                               True, "interrupted on purpose")

    monkeypatch.setattr(cmp, "train_run", fake_train_run)
    kw = dict(runs=ALL_RUNS, seeds=(0,), budget_s=120.0, steps=4, sim=SIM, score=SCORE, progress=False,
              reference=ref, run_options=dict(correction=CORRECTION, n_snapshots=10))
    s2 = ms.compare_methods(tiny_task(), out=new, resume=True, **kw)
    assert trained == [("hybrid", "baseline15", 0)]
    rows = {row["tag"]: row for row in s["rows"]}
    for row in s2["rows"]:
        if row["tag"] == redo:
            assert row["failed"] and row["failure"] == "interrupted on purpose"
        else:  # read back exactly: losses, SEs, traces, snapshots, parameters
            assert row == rows[row["tag"]]
    assert compare_store.exists(new / "runs" / redo)  # the redone run is finished now
    # finished runs made with other settings are not mixed in
    with pytest.raises(ValueError, match=r"other settings \(budget_s: 120.0 then, 60.0 now\)"):
        ms.compare_methods(tiny_task(), out=new, resume=True, **dict(kw, budget_s=60.0))
    with pytest.raises(ValueError, match="task_fingerprint"):
        ms.compare_methods(dataclasses.replace(tiny_task(), target_mean=tiny_task().target_mean * 1.01), out=new,
                           resume=True, **kw)
    with pytest.raises(FileNotFoundError, match="no finished run to resume"):
        ms.compare_methods(tiny_task(), out=tmp_path / "empty", resume=True, **kw)


def test_snapshot_of_a_run_scores_its_network():
    """A snapshot's score is simulated_score of the network the run had then."""
    task = tiny_task()
    run = train_run("moments-lbfgs", "baseline15", task, budget_s=40.0, n_snapshots=10, progress=None)
    assert run.snapshots, "scheduled from 40 s / 2^9 = 0.08 s on"
    snap = run.snapshots[-1]
    assert snap.wall_time_s < run.wall_time_s + 1e-9
    a = ms.simulated_score(snap.net, snap.inputs, task.target_mean, task.target_cov, **SCORE).loss
    scored = score_run(run, "x", SCORE, SCORE).snapshots
    assert len(scored) == len(run.snapshots) + 1 and scored[-1].final
    assert scored[-2].loss == a and scored[-2].wall_time_s == snap.wall_time_s


def test_growth_with_a_stage_trainer_keeps_snapshots_of_its_last_stage():
    task = tiny_task()
    run = train_run("growth", "general", task, budget_s=40.0, steps=3, n_snapshots=10, stage_train=ClosureStage(),
                    progress=None)
    assert not run.failed, run.failure
    assert run.snapshots, "scheduled from 40 s / 2^9 = 0.08 s on"
    assert all(s.net.N == run.net.N for s in run.snapshots)  # the last stage: full size

    def older(param, sub, theta, n_steps, seed, *, max_time, sim, checkpoint_dir, resume):  # no callback keyword
        return ClosureStage()(param, sub, theta, n_steps, seed, max_time=max_time)

    run = train_run("growth", "general", task, budget_s=40.0, steps=3, n_snapshots=10, stage_train=older,
                    progress=None)
    assert not run.failed and run.snapshots == (), run.failure


def test_published_reference_is_the_published_network_scored_the_same_way():
    """On the published task (here every 5th cell of it: a ring of 10 E + 10 I, for speed)
    the reference is the published network's simulated_score with the same settings."""
    quick = dict(n_trials=8, t_max=300.0, burn_in=100.0, dt=0.5)
    full = ms.get_task("echeveste2020")
    e = np.arange(0, full.n_exc, 5)
    cells = np.concatenate([e, full.n_exc + e])
    task = Task(inputs=np.asarray(full.inputs)[:, cells], target_mean=np.asarray(full.target_mean)[:, e],
                target_cov=np.asarray(full.target_cov)[:, e][:, :, e], n_exc=len(e), name="echeveste2020")
    ref = published_reference(task, quick)
    param = ms.get_parameterization("baseline15", m=len(e))
    theta = param.to_theta(dict(PUBLISHED_BASELINE15))
    net, h = param.network(theta), param.inputs(theta, jnp.asarray(task.inputs))
    sc = ms.simulated_score(net, h, task.target_mean, task.target_cov, **quick)
    assert ref.loss == sc.loss and ref.loss_se == sc.loss_se and sc.loss_se > 0
    assert ref.closure == pytest.approx(float(ms.network_closure_loss(net, h, task.target_mean, task.target_cov).loss))
    assert published_reference(tiny_task(), quick) is None


def test_two_phase_methods_refuse_bad_arguments():
    task = tiny_task()
    with pytest.raises(ValueError, match="lbfgs_fraction"):
        train_run("hybrid", "baseline15", task, lbfgs_fraction=1.0)
    with pytest.raises(ValueError, match="n_snapshots"):
        train_run("corrected", "baseline15", task, n_snapshots=-1)


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


def test_compare_verb_prints_the_ranking(tmp_path, capsys):
    path = tiny_task().save(tmp_path / "tiny.npz")
    out = tmp_path / "cmp"
    bptt = ["--n-trials", "16", "--t-max", "60", "--t-avg", "20", "--dt", "0.5"]  # SIM: compiled already
    args = ["compare", "--task", path, "--out", str(out), "--runs", "hybrid:baseline15", "--budget", "5",
            "--score-trials", "16", "--snapshots", "4"] + bptt
    assert main(args + ["--score-time", "400"]) == 1  # not past the score's 500 ms burn-in
    assert "--score-time must exceed the 500 ms burn-in" in capsys.readouterr().err
    assert main(args + ["--score-time", "700"]) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    row = s["rows"][0]
    assert f"hybrid_baseline15_seed0: simulated loss {row['simulated_loss']:.4g} +- " in printed
    assert s["score_settings"] == dict(n_trials=16, t_max=700.0) and s["run_options"]["lbfgs_fraction"] == 0.4
    assert row["wall_time_s"] < 5.0 + 60.0 and len(row["snapshots"]) >= 2
    # --resume keeps the finished run (no training: the same row), and says so
    assert main(args + ["--score-time", "700", "--resume"]) == 0
    assert "finished earlier, kept" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["rows"] == s["rows"]
