"""Iterated closure correction (momentssn.training.corrected)."""

import jax.numpy as jnp
import numpy as np

import momentssn as ms
from momentssn.tasks import Task
from momentssn.training.corrected import shifted_task
from reference import CORRECTION_SIM, teacher_task, teacher_theta


def test_shifted_targets_are_exactly_the_corrected_closure_loss():
    """eq. 7 of (closure + D) against the targets == eq. 7 of the closure against the
    targets - D, D = simulated - closure (the loss depends on differences only)."""
    rng = np.random.default_rng(0)
    S, M = 3, 4

    def spd():
        a = rng.normal(size=(S, M, M))
        return a @ np.swapaxes(a, 1, 2) + M * np.eye(M)

    tm, tc = rng.normal(size=(S, M)), spd()
    task = Task(inputs=np.zeros((S, 2 * M)), target_mean=tm, target_cov=tc, n_exc=M, name="t")
    cm, cc, sm, sc = rng.normal(size=(S, M)), spd(), rng.normal(size=(S, M)), spd()
    shifted = shifted_task(task, sm, sc, cm, cc)
    corrected = ms.Moments(jnp.asarray(cm + (sm - cm)), jnp.asarray(cc + (sc - cc)))
    direct = ms.loss_per_stimulus(corrected, tm, tc)
    via_shift = ms.loss_per_stimulus(ms.Moments(jnp.asarray(cm), jnp.asarray(cc)), shifted.target_mean,
                                     shifted.target_cov)
    np.testing.assert_allclose(via_shift, direct, rtol=1e-12)
    np.testing.assert_array_equal(task.target_mean, tm)  # the task itself is unchanged


def test_one_round_refits_and_keeps_the_best_simulated_network():
    """Targets are a teacher's *simulated* moments; one round of correction from the
    teacher: every round is scored by both routes, the best simulated one is returned."""
    param, teacher = teacher_theta()
    task, sim = teacher_task(), CORRECTION_SIM
    events = []
    res = ms.fit_corrected(param, task, teacher, rounds=1, refit_time=60.0, sim=sim, seed=7,
                           fit_options=dict(max_iter=20), progress=events.append)
    assert [r.round for r in res.rounds] in ([0], [0, 1]) and len(res.fits) == 1
    assert all(np.isfinite(r.closure_loss) and np.isfinite(r.simulated_loss) for r in res.rounds)
    best = min(res.rounds, key=lambda r: r.simulated_loss)
    assert res.best_round == best.round and np.array_equal(res.theta, best.theta)
    assert {r.round for r in res.rounds} <= {e.step for e in events} and res.stopped
    # every accepted round lowers the simulated loss (same noise seed: common random numbers)
    assert all(b.simulated_loss < a.simulated_loss for a, b in zip(res.rounds, res.rounds[1:]))
    # round 0 is the teacher itself: simulated at another seed, it matches its own targets closely
    assert res.rounds[0].simulated_loss < 1e-2
