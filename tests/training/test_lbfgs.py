"""The L-BFGS interface: every backend minimizes, stops, and survives infinite values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from momentssn.training.lbfgs import METHODS, ScipyLBFGSB, minimize_lbfgs


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


ROSEN = rosenbrock


@pytest.mark.parametrize("method", METHODS)
def test_minimizes_rosenbrock(method):
    res = minimize_lbfgs(ROSEN, jnp.array([-1.2, 1.0, 0.5]), method=method, max_iter=300,
                         gtol=1e-9, ftol=0.0)
    assert np.allclose(res.x, 1.0, atol=1e-4), (method, res)
    assert res.value < 1e-8
    assert res.history[0] > res.history[-1] and len(res.history) == res.iterations + 1


@pytest.mark.parametrize("method", METHODS)
def test_infinite_region_is_backtracked_not_crashed(method):
    # Minimum at x = 2 beyond a wall: f = inf for x > 2.5 (an "unstable network").
    def f(x):
        v = jnp.sum((x - 2.0) ** 2)
        return jnp.where(jnp.all(x < 2.5), v, jnp.inf)

    res = minimize_lbfgs(f, jnp.array([-10.0, -8.0]), method=method, max_iter=100)
    assert np.isfinite(res.value)
    assert np.allclose(res.x, 2.0, atol=1e-3), (method, res)


def test_callback_and_budget_stop():
    seen = []
    res = minimize_lbfgs(ROSEN, jnp.array([-1.2, 1.0]), max_iter=1000,
                         callback=lambda it, x, f: seen.append(f) or it >= 3)
    assert res.message == "stopped by callback" and res.iterations == 3 and len(seen) == 4
    res = minimize_lbfgs(ROSEN, jnp.array([-1.2, 1.0]), max_iter=2)
    assert res.iterations == 2 and not res.converged


def test_bad_method():
    with pytest.raises(ValueError, match="method must be one of"):
        minimize_lbfgs(ROSEN, jnp.zeros(2), method="bfgs")


@pytest.mark.parametrize("method", METHODS)
def test_context_is_passed_and_refreshed_from_accepted_iterates(method):
    # loss(x, ctx) -> (value, aux): ctx must not change the value (it is a warm start);
    # here aux = x, so every refreshed ctx must be an accepted iterate.
    seen = []

    def loss(x, ctx):
        return rosenbrock(x) + 0.0 * jnp.sum(ctx), x

    def next_ctx(aux, ctx):
        seen.append(np.asarray(aux))
        return aux

    x0 = jnp.array([-1.2, 1.0, 0.5])
    res = minimize_lbfgs(loss, x0, method=method, max_iter=300, gtol=1e-9, ftol=0.0,
                         context=(jnp.zeros(3), next_ctx))
    ref = minimize_lbfgs(ROSEN, x0, method=method, max_iter=300, gtol=1e-9, ftol=0.0)
    assert np.allclose(res.x, ref.x, atol=1e-10) and res.iterations == ref.iterations
    assert len(seen) == res.iterations + 1  # x0 and every accepted iterate
    assert np.allclose(seen[0], x0)
    assert np.allclose(np.asarray(res.aux), res.x)  # aux of the best point


def test_backend_objects_plug_in():
    """A backend object goes through (scipy's L-BFGS-B with a smaller first step, and a
    user's own backend wrapping it); an object without run() is refused."""
    res = minimize_lbfgs(ROSEN, jnp.array([-1.2, 1.0]), method=ScipyLBFGSB(first_step=0.01), max_iter=500)
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)
    calls = []

    class Mine:
        name = "mine"

        def run(self, loss, x0, stop, history_size):
            calls.append(history_size)
            ScipyLBFGSB().run(loss, x0, stop, history_size)

    res = minimize_lbfgs(ROSEN, jnp.array([-1.2, 1.0]), method=Mine(), max_iter=500, history_size=7)
    assert calls == [7]
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)
    with pytest.raises(ValueError, match="method"):
        minimize_lbfgs(ROSEN, jnp.zeros(2), method=object())
