"""The long-run score (momentssn.losses.simulated.simulated_score): a stimulus whose every
trial diverges scores +inf (never an exception, never NaN), the others are scored as usual.

(The BPTT loss ``simulated_loss`` is tested with the Adam loop that compiles it once, in
tests/training/test_adam.py.)"""

import warnings

import numpy as np

import momentssn as ms
from momentssn.losses.simulated import simulated_score


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
