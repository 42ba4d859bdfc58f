"""The whole natural-image path at small size: patches -> learned filters -> ML GSM -> task
-> growth and direct training from the paper's start (a few steps) -> simulated scores."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.experiments.natural_images import run_gsm
from momentssn.experiments.natural_training import run_natural_training
from momentssn.growth.trainers import BPTTStage
from momentssn.params.growing import Growing
from momentssn.params.init import stable_paper_theta
from momentssn.tasks import latents_rescaled, load_task, natural_image_task

SIM = dict(n_trials=8, t_max=60.0, t_avg=20.0, dt=0.5)  # BPTT of the tiny runs
SCORE = dict(n_trials=16, t_max=400.0, burn_in=100.0, dt=0.5)
STEPS, LR = 2, 1e-2


def test_natural_image_path_growth_and_direct_training(tmp_path):
    # the settings of tests/gsm/conftest.py (8 x 8 patches, M = 4): shared compilations
    run_gsm(tmp_path / "gsm", size=8, n_filters=4, n_per_image=150, filter_iters=40, ml_iters=40, n_fit=300,
            n_eval=200, contrasts=(0.0, 1.0, 2.0))
    task = load_task(tmp_path / "gsm" / "task.npz")
    assert (task.n_net, task.n_exc, task.n_stimuli) == (8, 4, 15)
    out = tmp_path / "natural"
    # growth by BPTT stages and direct BPTT (the closure-then-BPTT stages are tested in
    # tests/growth/test_trainers.py, direct L-BFGS in tests/experiments/test_compare.py)
    nat = run_natural_training(task, out, seeds=(0,), budget_s=600.0, steps=STEPS, stage_train=BPTTStage(),
                               direct=("bptt",), sim=SIM, score=SCORE, n_snapshots=0, progress=False)
    assert {"natural.json", "natural.md", "summary.json", "report.md"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "natural.json").read_text())["methods"].keys() == {"growth", "bptt"}
    param = ms.get_parameterization("general", m=4)
    theta0, draws = stable_paper_theta(param, task.inputs, 0)
    assert nat["initial_draws"] == {"0": draws}
    for method, m in nat["methods"].items():
        assert m["failed_fraction"] == 0.0, m["failures"]
        (sim,), (se,), (closure,) = m["simulated_loss"], m["simulated_loss_se"], m["closure_loss"]
        assert np.isfinite(sim) and 0 < se < 0.5 * sim and np.isfinite(closure)
        # closure and simulation of the same network agree to within a factor of 3 here
        assert 1 / 3 < sim / closure < 3, (method, sim, closure)
        assert method in (out / "natural.md").read_text()
    # the direct runs started from the paper's stable draw: STEPS Adam steps of size LR
    # move each unconstrained parameter by at most ~STEPS * LR
    theta = param.load_json(out / "runs" / "bptt_general_seed0" / "params.json")
    assert 0 < float(jnp.max(jnp.abs(jnp.asarray(theta) - theta0))) <= STEPS * LR * 1.01
    # growth trained every stage of its doubling schedule and wrote its full-size network
    row = next(r for r in json.loads((out / "summary.json").read_text())["rows"] if r["method"] == "growth")
    assert row["iterations"] == 3 * STEPS  # stages (1, 1), (2, 2), (4, 4)
    grown = np.load(out / "runs" / "growth_general_seed0" / "theta.npy")
    assert grown.shape == (Growing(n_e=4, n_i=4, d_noise=8).size,) and np.all(np.isfinite(grown))


def test_rescaled_latents_are_the_same_gsm_in_other_units():
    """latents_rescaled(task) has the targets of the GSM (A / s, s^2 C): the posterior of
    y' = s y (an independent computation by the GSM's quadrature)."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(9, 3))
    B = rng.normal(size=(3, 3))
    C = 20.0 * (B @ B.T + np.eye(3))
    gsm = ms.GSM(A, C, sigma_x=0.5, alpha=2.0, beta=2.0)
    patches = rng.normal(size=(2, 9))
    task = natural_image_task(gsm, patches, contrasts=(0.0, 1.0, 2.0))
    scaled = latents_rescaled(task, 2.0)
    zero = task.contrasts == 0
    assert np.median(np.diagonal(scaled.target_cov[zero], axis1=1, axis2=2)) == pytest.approx(2.0, rel=1e-12)
    s = np.sqrt(scaled.target_cov[0, 0, 0] / task.target_cov[0, 0, 0])
    other = natural_image_task(ms.GSM(A / s, s**2 * C, sigma_x=0.5, alpha=2.0, beta=2.0), patches,
                               contrasts=(0.0, 1.0, 2.0))
    np.testing.assert_allclose(scaled.target_mean, other.target_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scaled.target_cov, other.target_cov, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(scaled.inputs, task.inputs)  # kept: the input map absorbs 1 / s
    with pytest.raises(ValueError, match="variance"):
        latents_rescaled(task, 0.0)
