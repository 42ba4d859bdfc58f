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


def test_a_step_without_a_stable_closure_is_not_taken(monkeypatch):
    """Each route is replaced by a function of the one parameter x: the full step (x = 1)
    simulates best but has no stable closure fixed point (no moments to shift the next
    targets by), so the round takes the half step; the next round finds no better step
    and the correction stops, converged, without an error."""
    from types import SimpleNamespace

    import momentssn.training.corrected as corrected

    S, M = 2, 1
    task = Task(inputs=np.zeros((S, 2 * M)), target_mean=np.ones((S, M)), target_cov=np.ones((S, M, M)),
                n_exc=M, name="t")
    sim_loss = {0.0: 1.0, 1.0: 0.1, 0.5: 0.5, 0.75: 0.6, 0.625: 0.55}
    calls = []

    def fake_score_both(param, theta, task, sim, seed, weights):
        x = float(theta[0])
        calls.append(x)
        stable = x != 1.0
        mom = SimpleNamespace(mean=np.zeros((S, 2 * M)), cov=np.ones((S, 2 * M, 2 * M))) if stable else None
        clos = SimpleNamespace(loss=0.2 if stable else np.inf, stable=stable, moments=mom)
        simd = SimpleNamespace(loss=sim_loss[x], moments=SimpleNamespace(mean=np.zeros((S, M)), cov=np.ones((S, M, M))))
        return clos, simd

    monkeypatch.setattr(corrected, "score_both", fake_score_both)
    monkeypatch.setattr(corrected, "fit", lambda *a, **k: SimpleNamespace(theta=np.array([1.0])))
    res = ms.fit_corrected(None, task, np.array([0.0]), rounds=3)
    assert calls == [0.0, 1.0, 0.5, 1.0, 0.75, 0.625]
    assert [float(r.theta[0]) for r in res.rounds] == [0.0, 0.5] and res.stopped.startswith("converged")
