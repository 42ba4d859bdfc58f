"""The long-run score (momentssn.losses.simulated.simulated_score): a stimulus whose every
trial diverges scores +inf (never an exception, never NaN), the others are scored as usual.

(The BPTT loss ``simulated_loss`` is tested with the Adam loop that compiles it once, in
tests/training/test_adam.py.)"""

import warnings

import numpy as np

import momentssn as ms
from momentssn.losses.simulated import jackknife_loss_se, simulated_score


def test_a_diverging_stimulus_scores_inf_and_the_others_are_scored():
    # E cell with strong self-excitation: runaway at h = 5 mV, quiet at rest (h = 0)
    net = ms.SSN(np.array([[5.0, -0.1], [5.0, -0.1]]), np.array([20.0, 10.0]), np.eye(2), 20.0)
    h = np.array([[5.0, 5.0], [0.0, 0.0]])
    target_mean, target_cov = np.zeros((2, 1)), np.ones((2, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the step-size warning of ms.simulate
        sc = simulated_score(net, h, target_mean, target_cov, n_trials=4, t_max=100.0, burn_in=50.0, dt=0.5)
    assert sc.loss == np.inf and list(sc.n_diverged) == [4, 0]
    assert np.isposinf(sc.loss_per_stimulus[0]) and np.isfinite(sc.loss_per_stimulus[1])
    # the quiet stimulus: eq. 7 on its simulated moments, by hand
    mean, var = float(sc.moments.mean[1, 0]), float(sc.moments.cov[1, 0, 0])
    by_hand = 0.01 * mean**2 + 0.02 * (var - 1.0) ** 2 + 0.01 * (var - 1.0) ** 2
    assert abs(sc.loss_per_stimulus[1] - by_hand) < 1e-12 * max(1.0, by_hand)


def test_simulated_score_of_an_ou_network_matches_the_closed_form_loss():
    """W = 0: u is filtered OU noise with known moments (mean h, Var = Sigma tau_eta / (tau + tau_eta)
    on the diagonal).  Targets shifted by 1 mV in the mean score c_mean * 1 = 0.01 up to
    Monte Carlo error; exact targets score ~0."""
    N = 2
    Sig = np.array([[1.0, 0.3], [0.3, 0.5]])
    tau = np.array([20.0, 10.0])
    net = ms.SSN(np.zeros((N, N)), tau, Sig, 20.0)
    h = np.array([[1.0, 2.0], [3.0, -1.0]])
    exact = ms.stationary_moments(net, h)
    tm, tc = np.asarray(exact.mean), np.asarray(exact.cov)
    sc0 = simulated_score(net, h, tm, tc, n_trials=64, t_max=3000.0, burn_in=300.0, seed=3)
    sc1 = simulated_score(net, h, tm + 1.0, tc, n_trials=64, t_max=3000.0, burn_in=300.0, seed=3)
    assert sc0.loss < 2e-4, sc0
    np.testing.assert_allclose(sc1.loss_per_stimulus, 0.01, rtol=0.1)
    assert sc1.moments.mean.shape == (2, N) and np.all(sc1.n_diverged == 0)
    # the Monte Carlo error bar covers the closed form, and the step's bias is measured
    assert 0 < sc1.loss_se < 1e-3 and abs(sc1.loss - 0.01) < 4 * sc1.loss_se, sc1
    assert sc1.step_error is None and sc1.dt == 0.5
    sc2 = simulated_score(net, h, tm + 1.0, tc, n_trials=64, t_max=3000.0, burn_in=300.0, seed=3, step_check=True)
    assert abs(sc2.step_error) < sc2.loss_se and abs(sc2.loss - 0.01) < 4 * sc2.loss_se, sc2


def test_jackknife_se_vanishes_for_identical_groups_and_scales_with_their_spread():
    rng = np.random.default_rng(0)
    S, G, M = 2, 8, 3
    mean = np.broadcast_to(rng.normal(size=(S, 1, M)), (S, G, M))
    cov = np.broadcast_to(np.eye(M), (S, G, M, M))
    n = np.full((S, G), 100)
    tm, tc = np.zeros((S, M)), 2 * np.eye(M)[None].repeat(S, 0)
    assert jackknife_loss_se(mean, cov, n, tm, tc) == 0.0
    noisy = mean + 0.01 * rng.normal(size=mean.shape)
    se1 = jackknife_loss_se(noisy, cov, n, tm, tc)
    se2 = jackknife_loss_se(mean + 2 * (noisy - mean), cov, n, tm, tc)
    assert se1 > 0 and abs(se2 / se1 - 2.0) < 0.05  # linear in small perturbations
    assert np.isnan(jackknife_loss_se(noisy[:, :1], cov[:, :1], n[:, :1], tm, tc))
