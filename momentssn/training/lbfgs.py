"""L-BFGS behind one small interface.

    result = minimize_lbfgs(loss, x0, method="jaxopt", max_iter=200)
    result = minimize_lbfgs(loss, x0, method=ScipyLBFGSB(first_step=0.01))

``loss(x) -> value`` is a pure, JAX-traceable function of a flat float vector; each
backend differentiates it and compiles its own step around it, so one iteration (line
search included) is one compiled call.  It may return ``+inf`` (e.g. the network
became unstable): every backend then backtracks, and the fit continues from the last
finite point.

Backends (``method``: a backend object, or its name):
  * :class:`JaxoptLBFGS` (``"jaxopt"``, default): ``jaxopt.LBFGS`` with a backtracking
    (Armijo) line search, one jitted ``update`` per iteration.  jaxopt is unmaintained
    upstream, which is why it lives behind this interface only.
  * :class:`OptaxLBFGS` (``"optax"``): ``optax.lbfgs`` with its zoom (strong Wolfe)
    line search.
  * :class:`ScipyLBFGSB` (``"scipy"``): ``scipy.optimize.minimize(method="L-BFGS-B")``
    in float64 numpy.

A backend is any object with ``run(loss, x0, stop, history_size)`` (see
:class:`Backend`): it minimizes and reports every accepted iterate to ``stop.record``,
which applies the shared stopping rule; plug in your own the same way.

Each backend reports through the same ``callback(it, x, value)`` after every accepted
iteration and stops on the same rule: ``max_iter`` iterations, or ``|grad|_inf <= gtol``,
or a relative decrease below ``ftol`` over ``patience`` consecutive iterations, or the
``max_time`` budget (seconds), or the callback returning True.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple, Optional, Protocol, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "LBFGSResult",
    "minimize_lbfgs",
    "METHODS",
    "BACKENDS",
    "Backend",
    "JaxoptLBFGS",
    "OptaxLBFGS",
    "ScipyLBFGSB",
]


class LBFGSResult(NamedTuple):
    x: np.ndarray  # best point found
    value: float  # objective at x
    iterations: int
    n_evals: int  # objective evaluations (line-search trials included)
    history: list  # objective after each iteration (index 0: at x0)
    converged: bool  # stopped by gtol/ftol (not by max_iter / max_time / callback)
    message: str
    aux: object = None  # the loss's aux at x (with a ``context``)


class _Stopper:
    """The shared stopping rule and bookkeeping."""

    def __init__(self, max_iter, gtol, ftol, patience, max_time, callback):
        self.max_iter, self.gtol, self.ftol, self.patience = max_iter, gtol, ftol, patience
        self.max_time, self.callback = max_time, callback
        self.t0 = time.perf_counter()
        self.history: list = []
        self.best_x, self.best_f = None, np.inf
        self.flat = 0
        self.n_evals = 0
        self.message = "max_iter reached"
        self.converged = False
        self.ctx: tuple = ()  # extra arguments of the loss (see ``context``)
        self.next_ctx = None
        self.best_aux = None

    def record(self, x, f, g, aux=None) -> bool:
        """Record an accepted iterate (and the loss's aux there); return True to stop."""
        x = np.asarray(x, dtype=np.float64).copy()
        f = float(f)
        if f < self.best_f:
            self.best_x, self.best_f, self.best_aux = x, f, aux
        if self.next_ctx is not None and np.isfinite(f):
            self.ctx = (self.next_ctx(aux, *self.ctx),)
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


@functools.lru_cache(maxsize=32)
def _safe(loss: Callable, has_ctx: bool) -> Callable:
    """(f, vg): f(x, *ctx) -> (value, aux) and, jitted, vg(x, *ctx) -> ((value, aux), grad)
    of ``loss``, with NaN/inf values mapped to (+inf, zero gradient).

    A non-finite value means "no stable network here": +inf with a zero gradient makes
    every line search backtrack instead of propagating NaN.  Without a context the loss
    returns the value only and aux is None.  Cached per ``loss`` object, so the restarts
    of a fit (and a resumed fit with the same loss) reuse one compilation.
    """

    def f(x, *ctx):
        v, aux = loss(x, *ctx) if has_ctx else (loss(x), None)
        return jnp.where(jnp.isfinite(v), v, jnp.inf), aux

    def vg(x, *ctx):
        (v, aux), g = jax.value_and_grad(f, has_aux=True)(x, *ctx)
        ok = jnp.isfinite(v)
        return (v, aux), jnp.where(ok, jnp.nan_to_num(g), 0.0)

    return f, jax.jit(vg)


def _iterate(stop: _Stopper, x, vg, step) -> None:
    """The loop of the compiled backends: evaluate ``vg`` at x0, then
    ``step(x, v, g) -> (x, v, g, aux)`` (one L-BFGS iteration, line search included)
    until ``stop`` says so; x0 counts as one evaluation and each new point as one more
    (plus what ``step`` adds)."""
    (v, aux), g = vg(x, *stop.ctx)
    stop.n_evals += 1
    if stop.record(x, v, g, aux):
        return
    while True:
        x_new, v_new, g_new, aux = step(x, v, g)
        stop.n_evals += 1
        if not np.isfinite(float(v_new)):
            stop.message = "line search found no finite point"
            return
        x, v, g = x_new, v_new, g_new
        if stop.record(x, v, g, aux):
            return


class Backend(Protocol):
    """What :func:`minimize_lbfgs` needs of an optimizer backend.

    ``run(loss, x0, stop, history_size)`` minimizes ``loss`` (``loss(x) -> value``, or
    ``loss(x, ctx) -> (value, aux)`` when ``stop.ctx`` is set; see
    :func:`minimize_lbfgs`) from ``x0`` with ``history_size`` L-BFGS pairs, calls
    ``stop.record(x, value, grad, aux)`` at x0 and after every accepted iterate, stops
    as soon as it returns True, and counts objective evaluations in ``stop.n_evals``.
    ``_safe`` and ``_iterate`` do most of that for a compiled backend.
    """

    name: str

    def run(self, loss: Callable, x0: jax.Array, stop: "_Stopper", history_size: int) -> None: ...


@functools.lru_cache(maxsize=32)
def _jaxopt_solver(vg: Callable, history_size: int, max_backtrack: int):
    """(jaxopt.LBFGS on ``vg``, its jitted update), cached per ``vg`` (one compilation
    for every start of a fit).  The loop is ours (``_iterate``), so jaxopt's own
    ``maxiter`` is never reached."""
    # jaxopt is imported only here: an optional heavy dependency, unmaintained upstream
    import jaxopt

    # Armijo backtracking (halving) from the full L-BFGS step: jaxopt's default
    # backtracking condition is strong Wolfe, whose curvature test can never be met by
    # shrinking a step that is already too short (it stalled in endless tiny steps).
    linesearch = jaxopt.BacktrackingLineSearch(
        fun=vg, value_and_grad=True, has_aux=True, maxiter=max_backtrack, condition="armijo",
        decrease_factor=0.5, max_stepsize=1.0, jit=True,
    )
    solver = jaxopt.LBFGS(
        fun=vg,
        value_and_grad=True,
        has_aux=True,
        maxiter=2**31 - 1,
        tol=0.0,
        linesearch=linesearch,
        linesearch_init="max",
        history_size=history_size,
        jit=True,  # one compiled update (line search included)
        implicit_diff=False,
    )
    return solver, jax.jit(solver.update)


class JaxoptLBFGS(NamedTuple):
    """``jaxopt.LBFGS`` with Armijo backtracking (halving, at most ``max_backtrack``
    trials) from the full L-BFGS step; one jitted update per iteration."""

    max_backtrack: int = 40
    name: str = "jaxopt"

    def run(self, loss, x0, stop, history_size):
        _, vg = _safe(loss, bool(stop.ctx))
        solver, update = _jaxopt_solver(vg, history_size, self.max_backtrack)
        carry = {"state": solver.init_state(x0, *stop.ctx)}

        def step(x, v, g):
            x, st = update(x, carry["state"], *stop.ctx)
            carry["state"] = st
            stop.n_evals = int(st.num_fun_eval)  # + 1 for x0, added by _iterate
            return x, st.value, st.grad, st.aux

        _iterate(stop, x0, vg, step)


@functools.lru_cache(maxsize=32)
def _optax_step(f: Callable, history_size: int):
    """(optax.lbfgs, its jitted step (x, state, v, g, ctx) -> (x, state)), cached per ``f``."""
    opt = optax.lbfgs(memory_size=history_size)

    @jax.jit
    def step(x, state, v, g, ctx):
        value_fn = lambda y: f(y, *ctx)[0]  # noqa: E731
        updates, state = opt.update(g, state, x, value=v, grad=g, value_fn=value_fn)
        return optax.apply_updates(x, updates), state

    return opt, step


class OptaxLBFGS(NamedTuple):
    """``optax.lbfgs`` with its zoom (strong Wolfe) line search."""

    name: str = "optax"

    def run(self, loss, x0, stop, history_size):
        f, vg = _safe(loss, bool(stop.ctx))
        opt, step = _optax_step(f, history_size)
        carry = {"state": opt.init(x0)}

        def next_point(x, v, g):
            x, carry["state"] = step(x, carry["state"], v, g, stop.ctx)
            stop.n_evals += int(optax.tree_utils.tree_get(carry["state"], "num_linesearch_steps"))
            (v, aux), g = vg(x, *stop.ctx)
            return x, v, g, aux

        _iterate(stop, x0, vg, next_point)


class ScipyLBFGSB(NamedTuple):
    """``scipy.optimize.minimize(method="L-BFGS-B")`` on y with x = x0 + first_step * y.

    L-BFGS-B's first trial step has unit length; in y that is a step of ``first_step``
    in x (a unit step in log-parameters would often leave the stable region, and
    L-BFGS-B gives up when its first line search meets only infinite values).
    """

    first_step: float = 0.05
    name: str = "scipy"

    def run(self, loss, x0, stop, history_size):
        # scipy is imported only here: a heavy import that only this backend needs
        from scipy.optimize import minimize

        _, vg = _safe(loss, bool(stop.ctx))
        x0n = np.asarray(x0, dtype=np.float64)
        c = float(self.first_step)

        class _Stop(Exception):
            pass

        last = {}

        def x_of(y):
            return x0n + c * np.asarray(y, dtype=np.float64)

        def f_np(y):
            y = np.asarray(y, dtype=np.float64)
            if "y" in last and np.array_equal(last["y"], y):
                return last["v"], last["g"]
            (v, aux), g = vg(jnp.asarray(x_of(y), x0.dtype), *stop.ctx)
            stop.n_evals += 1
            # L-BFGS-B cannot take inf: a huge finite value makes its line search backtrack.
            v = float(v) if np.isfinite(float(v)) else 1e300
            last.update(y=y.copy(), v=v, g=c * np.asarray(g, dtype=np.float64), aux=aux)
            return v, last["g"]

        def cb(yk):
            v, gy = f_np(yk)
            if stop.record(x_of(yk), v, gy / c, last["aux"]):
                raise _Stop

        v0, g0 = f_np(np.zeros_like(x0n))
        if stop.record(x0n, v0, g0 / c, last["aux"]):
            return
        try:
            res = minimize(
                f_np, np.zeros_like(x0n), jac=True, method="L-BFGS-B", callback=cb,
                options=dict(maxiter=stop.max_iter + 1, maxcor=history_size, gtol=0.0, ftol=0.0),
            )
            stop.message = f"scipy: {res.message}"
        except _Stop:
            pass


#: The built-in backends by name (``method="jaxopt"`` etc.).
BACKENDS = {b.name: b for b in (JaxoptLBFGS(), OptaxLBFGS(), ScipyLBFGSB())}
METHODS = tuple(BACKENDS)


def backend_of(method: Union[str, Backend]) -> Backend:
    """The backend object for ``method`` (a name of ``BACKENDS`` or a backend object)."""
    if isinstance(method, str):
        if method not in BACKENDS:
            raise ValueError(f"method must be one of {METHODS} or a backend object, got {method!r}")
        return BACKENDS[method]
    if not callable(getattr(method, "run", None)):
        raise ValueError(f"method must be one of {METHODS} or an object with a run() method, got {method!r}")
    return method


def minimize_lbfgs(
    loss: Callable,
    x0,
    *,
    method: Union[str, Backend] = "jaxopt",
    max_iter: int = 200,
    gtol: float = 1e-8,
    ftol: float = 1e-9,
    patience: int = 3,
    max_time: Optional[float] = None,
    history_size: int = 10,
    callback: Optional[Callable] = None,
    context: Optional[tuple] = None,
) -> LBFGSResult:
    """Minimize with L-BFGS (see the module docstring for backends and the stopping rule).

    Args:
        loss: x (D,) -> scalar, a pure JAX-traceable function (differentiated with
            ``jax.value_and_grad`` and compiled inside the backend's step); it may
            return +inf / NaN (treated as +inf with a zero gradient).
        x0: (D,) starting point.
        method: a backend object (:class:`JaxoptLBFGS`, :class:`OptaxLBFGS`,
            :class:`ScipyLBFGSB` or your own :class:`Backend`) or the name of a
            built-in one, "jaxopt" | "optax" | "scipy".
        callback: ``callback(it, x, value) -> bool | None``; True stops.
        context: optional ``(ctx0, next_ctx)``.  The loss is then ``loss(x, ctx) ->
            (value, aux)``, starting with ctx = ctx0; after every accepted iterate
            ``ctx = next_ctx(aux, ctx)`` (on the host) with that iterate's aux, and
            ``result.aux`` is the aux at the best point.  For warm starts: the
            minimum must not depend on ctx, only the cost of evaluating the loss
            (e.g. a root finder's starting point).

    Returns:
        ``LBFGSResult`` with the best point seen.
    """
    backend = backend_of(method)
    x0 = jnp.asarray(x0)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a flat vector, got shape {x0.shape}")
    stop = _Stopper(max_iter, gtol, ftol, patience, max_time, callback)
    if context is not None:
        stop.ctx, stop.next_ctx = (context[0],), context[1]
    backend.run(loss, x0, stop, history_size)
    if stop.best_x is None:
        stop.best_x, stop.best_f = np.asarray(x0, np.float64), float("inf")
    return LBFGSResult(
        x=stop.best_x,
        value=stop.best_f,
        iterations=max(len(stop.history) - 1, 0),
        n_evals=stop.n_evals,  # objective evaluations, line-search trials included
        history=stop.history,
        converged=stop.converged,
        message=stop.message,
        aux=stop.best_aux,
    )
