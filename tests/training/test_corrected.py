"""Iterated closure correction (momentssn.training.corrected)."""

import jax.numpy as jnp
import numpy as np

import momentssn as ms
from momentssn.tasks import Task
from momentssn.training.corrected import shifted_task


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
    param = ms.get_parameterization("baseline15", m=2)
    teacher = param.random_theta(5, scale=0.2)
    raw = jnp.asarray(np.repeat(np.random.default_rng(1).uniform(0.5, 1.0, size=(2, 2)), 2, axis=1))
    sim = ms.SimulationSettings(n_trials=16, t_max=1000.0, burn_in=200.0, dt=0.5)
    h = param.inputs(teacher, raw)
    target = ms.simulate(param.network(teacher), h, sim.t_max, sim.dt, sim.n_trials, seed=99, burn_in=sim.burn_in)
    task = Task(inputs=np.asarray(raw), target_mean=np.asarray(target.moments.mean[:, :2]),
                target_cov=np.asarray(target.moments.cov[:, :2, :2]), n_exc=2, name="teacher")
    events = []
    res = ms.fit_corrected(param, task, teacher, rounds=1, refit_time=60.0, sim=sim, seed=7,
                           fit_options=dict(max_iter=20), progress=events.append)
    assert [r.round for r in res.rounds] in ([0], [0, 1]) and len(res.fits) == 1
    assert all(np.isfinite(r.closure_loss) and np.isfinite(r.simulated_loss) for r in res.rounds)
    best = min(res.rounds, key=lambda r: r.simulated_loss)
    assert res.best_round == best.round and np.array_equal(res.theta, best.theta)
    assert [e.step for e in events] == [r.round for r in res.rounds] and res.stopped
    # round 0 is the teacher itself: simulated at another seed, it matches its own targets closely
    assert res.rounds[0].simulated_loss < 1e-2
