"""Eq. 7 (momentssn.losses.moment): hand-checked values and zeros at the targets."""

import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn.losses.moment import LossWeights, loss_per_stimulus, moment_loss


def test_loss_per_stimulus_by_hand():
    # N = 3 cells, M = 2 targets, S = 2 stimuli
    mean = jnp.array([[1.0, 2.0, 9.0], [0.0, 0.0, 0.0]])
    cov = jnp.array([[[2.0, 0.5, 7.0], [0.5, 1.0, 7.0], [7.0, 7.0, 7.0]], np.eye(3)])
    t_mean = jnp.array([[0.0, 4.0], [0.0, 0.0]])
    t_cov = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    w = LossWeights(c_mean=1.0, c_var=10.0, c_cov=100.0)
    # stimulus 0: |dmu|^2 = 1 + 4 = 5 -> 5/2; |dvar|^2 = 1 + 0 = 1 -> 1/2;
    #             |dSigma|_F^2 = 1 + 0.25 + 0.25 + 0 = 1.5 -> 1.5/4
    expected0 = 1.0 * 5 / 2 + 10.0 * 1 / 2 + 100.0 * 1.5 / 4
    per = loss_per_stimulus(ms.Moments(mean, cov), t_mean, t_cov, w)
    np.testing.assert_allclose(per, [expected0, 0.0], rtol=1e-15)
    assert float(moment_loss(ms.Moments(mean, cov), t_mean, t_cov, w)) == pytest.approx(expected0 / 2)
    # default weights c_mean = 0.01, c_var = 0.02, c_cov = 0.01
    per_d = loss_per_stimulus(ms.Moments(mean, cov), t_mean, t_cov)
    assert float(per_d[0]) == pytest.approx(0.01 * 5 / 2 + 0.02 * 1 / 2 + 0.01 * 1.5 / 4, rel=1e-14)
    # unbatched
    one = loss_per_stimulus(ms.Moments(mean[0], cov[0]), t_mean[0], t_cov[0], w)
    assert one.shape == () and float(one) == pytest.approx(expected0)
    with pytest.raises(ValueError, match="target_cov"):
        loss_per_stimulus(ms.Moments(mean, cov), t_mean, t_cov[:, :1, :1])


def test_loss_zero_on_own_moments():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 6, 6))
    mom = ms.Moments(jnp.asarray(rng.normal(size=(3, 6))), jnp.asarray(A @ np.swapaxes(A, 1, 2)))
    assert float(moment_loss(mom, mom.mean[:, :4], mom.cov[:, :4, :4])) == 0.0
