"""L-BFGS behind one small interface.

    result = minimize_lbfgs(value_and_grad, x0, method="jaxopt", max_iter=200)

``value_and_grad(x) -> (value, grad)`` is any callable (usually jitted) on a flat float
vector; it may return ``value = +inf`` (e.g. the network became unstable): every
backend then backtracks, and the fit continues from the last finite point.

Backends (``method``):
  * ``"jaxopt"`` (default): ``jaxopt.LBFGS`` with a backtracking (Armijo) line search,
    stepped from Python (``jit=False``: the objective is compiled once by the caller,
    and may keep Python-side state such as solver warm starts).  jaxopt is unmaintained upstream, which is why it lives
    behind this function only.
  * ``"optax"``: ``optax.lbfgs`` with its zoom (strong Wolfe) line search.
  * ``"scipy"``: ``scipy.optimize.minimize(method="L-BFGS-B")`` in float64 numpy.

Each backend reports through the same ``callback(it, x, value)`` after every accepted
iteration and stops on the same rule: ``max_iter`` iterations, or ``|grad|_inf <= gtol``,
or a relative decrease below ``ftol`` over ``patience`` consecutive iterations, or the
``max_time`` budget (seconds), or the callback returning True.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["LBFGSResult", "minimize_lbfgs", "METHODS"]

METHODS = ("jaxopt", "optax", "scipy")


class LBFGSResult(NamedTuple):
    x: np.ndarray  # best point found
    value: float  # objective at x
    iterations: int
    n_evals: int  # objective evaluations (line-search trials included)
    history: list  # objective after each iteration (index 0: at x0)
    converged: bool  # stopped by gtol/ftol (not by max_iter / max_time / callback)
    message: str


class _Stopper:
    """The shared stopping rule and bookkeeping."""

    def __init__(self, max_iter, gtol, ftol, patience, max_time, callback):
        self.max_iter, self.gtol, self.ftol, self.patience = max_iter, gtol, ftol, patience
        self.max_time, self.callback = max_time, callback
        self.t0 = time.perf_counter()
        self.history: list = []
        self.best_x, self.best_f = None, np.inf
        self.flat = 0
        self.message = "max_iter reached"
        self.converged = False

    def record(self, x, f, g) -> bool:
        """Record an accepted iterate; return True to stop."""
        x = np.asarray(x, dtype=np.float64).copy()
        f = float(f)
        if f < self.best_f:
            self.best_x, self.best_f = x, f
        prev = self.history[-1] if self.history else None
        self.history.append(f)
        it = len(self.history) - 1
        if self.callback is not None and self.callback(it, x, f):
            self.message = "stopped by callback"
            return True
        if it == 0:
            return False
        if g is not None and np.isfinite(f) and float(np.max(np.abs(g))) <= self.gtol:
            self.message, self.converged = "gradient below gtol", True
            return True
        if prev is not None and np.isfinite(prev) and prev - f <= self.ftol * max(abs(prev), 1e-300):
            self.flat += 1
            if self.flat >= self.patience:
                self.message, self.converged = "relative decrease below ftol", True
                return True
        else:
            self.flat = 0
        if it >= self.max_iter:
            self.message = "max_iter reached"
            return True
        if self.max_time is not None and time.perf_counter() - self.t0 > self.max_time:
            self.message = "max_time reached"
            return True
        return False


def _counting(fun):
    count = [0]

    def wrapped(x):
        count[0] += 1
        # one dtype, never weakly typed: backends pass x in varying forms, and each new
        # form would re-trace (and re-compile) a jitted objective
        v, g = fun(lax.convert_element_type(jnp.asarray(x), jnp.result_type(float)))
        v = jnp.asarray(v)
        bad = ~jnp.isfinite(v)
        # A non-finite value means "no stable network here": +inf with a zero gradient,
        # so line searches backtrack instead of propagating NaN.
        return jnp.where(bad, jnp.inf, v), jnp.where(bad, 0.0, jnp.nan_to_num(g))

    return wrapped, count


def _run_jaxopt(fun, x0, stop: _Stopper, history_size):
    import jaxopt

    # Armijo backtracking (halving): jaxopt's default backtracking condition is strong
    # Wolfe, whose curvature test can never be met by shrinking a step that is already
    # too short, so it stalled in endless tiny steps.  The first trial of every line
    # search is the full L-BFGS step (linesearch_init="max", max_stepsize 1).
    linesearch = jaxopt.BacktrackingLineSearch(
        fun=fun, value_and_grad=True, maxiter=40, condition="armijo", decrease_factor=0.5,
        max_stepsize=1.0, jit=False,
    )
    solver = jaxopt.LBFGS(
        fun=fun,
        value_and_grad=True,
        maxiter=stop.max_iter + 1,
        tol=0.0,
        linesearch=linesearch,
        linesearch_init="max",
        history_size=history_size,
        jit=False,  # stepped from Python: the objective is compiled once on its own
        implicit_diff=False,
    )
    x = jnp.asarray(x0)
    state = solver.init_state(x)
    f0, g0 = fun(x)
    if stop.record(x, f0, g0):
        return
    while True:
        x_new, state = solver.update(x, state)
        f, g = state.value, state.grad
        if not np.isfinite(float(f)):
            stop.message = "line search found no finite point"
            return
        x = x_new
        if stop.record(x, f, g):
            return


def _run_optax(fun, x0, stop: _Stopper, history_size):
    import optax

    value_only = lambda x: fun(x)[0]  # noqa: E731
    opt = optax.lbfgs(memory_size=history_size)

    @jax.jit
    def step(x, state, f, g):
        updates, state = opt.update(g, state, x, value=f, grad=g, value_fn=value_only)
        return optax.apply_updates(x, updates), state

    x = jnp.asarray(x0)
    state = opt.init(x)
    f, g = fun(x)
    if stop.record(x, f, g):
        return
    while True:
        x_new, state = step(x, state, f, g)
        f_new, g_new = fun(x_new)
        if not np.isfinite(float(f_new)):
            stop.message = "line search found no finite point"
            return
        x, f, g = x_new, f_new, g_new
        if stop.record(x, f, g):
            return


def _run_scipy(fun, x0, stop: _Stopper, history_size):
    from scipy.optimize import minimize

    class _Stop(Exception):
        pass

    last = {}

    def f_np(x):
        x = np.asarray(x, dtype=np.float64)
        if "x" in last and np.array_equal(last["x"], x):
            return last["v"], last["g"]
        v, g = fun(jnp.asarray(x))
        # L-BFGS-B cannot take inf: a huge finite value makes its line search backtrack.
        v = float(v) if np.isfinite(float(v)) else 1e300
        last.update(x=x.copy(), v=v, g=np.asarray(g, dtype=np.float64))
        return v, last["g"]

    def cb(xk):
        v, g = f_np(xk)
        if stop.record(xk, v, g):
            raise _Stop

    v0, g0 = f_np(np.asarray(x0, dtype=np.float64))
    if stop.record(x0, v0, g0):
        return
    try:
        res = minimize(
            f_np, np.asarray(x0, dtype=np.float64), jac=True, method="L-BFGS-B", callback=cb,
            options=dict(maxiter=stop.max_iter + 1, maxcor=history_size, gtol=0.0, ftol=0.0),
        )
        stop.message = f"scipy: {res.message}"
    except _Stop:
        pass


def minimize_lbfgs(
    value_and_grad: Callable,
    x0,
    *,
    method: str = "jaxopt",
    max_iter: int = 200,
    gtol: float = 1e-8,
    ftol: float = 1e-9,
    patience: int = 3,
    max_time: Optional[float] = None,
    history_size: int = 10,
    callback: Optional[Callable] = None,
) -> LBFGSResult:
    """Minimize with L-BFGS (see the module docstring for backends and the stopping rule).

    Args:
        value_and_grad: x (D,) -> (value, grad (D,)); may return +inf / NaN (treated as +inf).
        x0: (D,) starting point.
        method: "jaxopt" | "optax" | "scipy".
        callback: ``callback(it, x, value) -> bool | None``; True stops.

    Returns:
        ``LBFGSResult`` with the best point seen.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x0 = jnp.asarray(x0)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a flat vector, got shape {x0.shape}")
    fun, count = _counting(value_and_grad)
    stop = _Stopper(max_iter, gtol, ftol, patience, max_time, callback)
    {"jaxopt": _run_jaxopt, "optax": _run_optax, "scipy": _run_scipy}[method](
        fun, x0, stop, history_size
    )
    if stop.best_x is None:
        stop.best_x, stop.best_f = np.asarray(x0, np.float64), float("inf")
    return LBFGSResult(
        x=stop.best_x,
        value=stop.best_f,
        iterations=max(len(stop.history) - 1, 0),
        n_evals=count[0],  # Python-level calls (jit-traced line searches count once)
        history=stop.history,
        converged=stop.converged,
        message=stop.message,
    )
