"""fit-baseline end to end (momentssn.experiments.baseline): the default method (closure
fit, then iterated closure correction) against the closure fit alone, judged by simulation."""

import json

import jax.numpy as jnp
import numpy as np

import momentssn as ms
from momentssn.experiments.baseline import Correction, fit_baseline

from reference import CORRECTION_SIM as SIM, teacher_task

SCORE = ms.SimulationSettings(n_trials=256, t_max=2500.0, burn_in=500.0, dt=0.5)


def test_default_method_beats_the_closure_fit_in_simulation_and_resumes(tmp_path):
    task = teacher_task()
    events = []
    kw = dict(max_iter=150, correction=Correction(rounds=3, refit_time=None, sim=SIM, rtol=0.0), score=SCORE,
              progress=events.append)
    run = fit_baseline(task, tmp_path, **kw)
    nets = run.scores["networks"]
    fitted, closure_only = nets["fitted"], nets["closure-only fit"]
    # the default method's network is better *in simulation* by more than 3 Monte Carlo SE
    gap = closure_only["simulated_loss"] - fitted["simulated_loss"]
    se = np.hypot(closure_only["simulated_loss_se"], fitted["simulated_loss_se"])
    assert gap > 3 * se, (closure_only, fitted)
    # ... while the closure alone ranks them the other way (the closure fit is its optimum)
    assert closure_only["closure_loss"] < fitted["closure_loss"]
    # the correction kept its best simulated round, and that is the network scored and saved
    cor = run.correction
    best = min(cor.rounds, key=lambda r: r.simulated_loss)
    assert cor.best_round == best.round > 0 and np.array_equal(run.theta, best.theta)
    doc = json.loads((tmp_path / "result.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert doc["theta"] == [float(v) for v in run.theta]
    assert [r["round"] for r in doc["stages"]["correction"]["rounds"]] == [r.round for r in cor.rounds]
    assert doc["stages"]["closure_fit"]["stopped"].startswith(("converged", "NOT converged"))
    loaded = ms.load(tmp_path / "result.json")
    np.testing.assert_allclose(np.asarray(loaded.theta), run.theta, rtol=1e-9, atol=1e-12)
    # the score is the simulated_score of the saved network at the stated seed
    th = jnp.asarray(run.theta)
    sc = ms.simulated_score(loaded.net, loaded.param.inputs(th, jnp.asarray(task.inputs)), task.target_mean,
                            task.target_cov, n_trials=SCORE.n_trials, t_max=SCORE.t_max, burn_in=SCORE.burn_in,
                            dt=SCORE.dt, seed=run.scores["seed"])
    np.testing.assert_allclose(sc.loss, fitted["simulated_loss"], rtol=1e-6)
    for name in ("loss_curve.png", "fit_moments.png", "fit_covariances.png", "simulation_check.png", "scores.json"):
        assert (tmp_path / name).stat().st_size > 500, name
    assert any(e.task == "correction" for e in events)
    # resuming a finished run redoes no fitting and returns the same network
    again = fit_baseline(task, tmp_path, resume=True, check=False, **kw)
    assert again.fit.iterations == run.fit.iterations and not again.correction.fits
    np.testing.assert_array_equal(again.theta, run.theta)
