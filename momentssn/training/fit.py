"""Semi-analytic fitting: L-BFGS on the closure moments (Echeveste et al. 2020).

    result = ms.fit(param, task, method="jaxopt", restarts=2, max_time=110)

The objective is the moment-matching loss (eq. 7, ``momentssn.losses.moment``) on the
stationary closure moments (default) or the transient moments
(``momentssn.losses.closure``), in float64 (enable ``jax_enable_x64`` first).  A network
that becomes unstable during a line search scores +inf with a zero gradient: the line
search backtracks and the fit goes on.  Restarts start from random perturbations of the
first start (``param.random_theta``); the best point over all restarts is returned.
Each stationary solve is warm-started from the solution at the last accepted iterate
(a ``minimize_lbfgs`` context): that changes the cost of an evaluation, not its value.

With ``checkpoint_dir`` the state of the fit (the starts, the best point, the histories
and the last accepted iterate of the current start) is written there atomically after
every iteration (``momentssn.training.checkpoint``, kind ``"fit"``), and
``resume=True`` goes on where it stopped: finished starts are kept, the current one
continues from its last accepted iterate (with a fresh L-BFGS memory and warm start,
so the iterates that follow may differ from an uninterrupted run's in the last digits
while they converge to the same minimum), the remaining starts follow.  Progress is
reported through ``progress`` (a ``ProgressFn``), one event per iteration.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import List, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from .._util import PathLike
from ..closure.stationary import WarmStart
from ..losses._args import check_int, check_progress
from ..losses.closure import stationary_loss, transient_loss
from ..losses.moment import LossWeights
from ..progress import Progress, ProgressFn, report
from . import checkpoint as ckpt
from .lbfgs import Backend, backend_of, minimize_lbfgs

__all__ = ["FitResult", "fit", "loss_function"]

_KIND = "fit"


class FitResult(NamedTuple):
    theta: np.ndarray  # (param.size,) best unconstrained parameters
    params: dict  # physical parameters at theta (JSON-ready)
    loss: float  # mean loss over stimuli at theta
    loss_per_stimulus: list
    iterations: int  # L-BFGS iterations, all restarts
    restarts: int  # number of starts run (default start included)
    history: list  # per start: loss after each iteration
    times: list  # per start: wall time (s since the fit began) of each history entry
    wall_time_s: float
    method: str
    message: str


def loss_function(param, task, loss: str = "stationary", weights: LossWeights = LossWeights()):
    """(theta, init) -> (loss, aux) for a parameterization and a task (traceable).

    ``init`` warm-starts the stationary solver (a ``WarmStart`` with rows per
    stimulus, or anything else ``stationary_solve`` accepts); the transient loss
    ignores it.
    """
    fun = _loss_of(param, loss, weights)
    args = _task_arrays(task)
    return lambda th, init: fun(th, init, args)


def _task_arrays(task) -> tuple:
    """(inputs (S, N), target_mean (S, M), target_cov (S, M, M)) of a task, as arrays."""
    return (jnp.asarray(task.inputs), jnp.asarray(task.target_mean), jnp.asarray(task.target_cov))


def _loss_of(param, loss: str, weights: LossWeights):
    """(theta, init, (inputs, target_mean, target_cov)) -> (loss, aux): the task's arrays
    are arguments, so one compiled objective serves every task of the same shapes."""
    if loss == "stationary":
        return lambda th, init, args: stationary_loss(param, th, *args, weights, init=init)
    if loss == "transient":
        return lambda th, init, args: transient_loss(param, th, *args, weights)
    raise ValueError(f"loss must be 'stationary' or 'transient', got {loss!r}")


# --------------------------------------------------------------------------- the fit's state


class _State:
    """Everything a fit has done so far; what its checkpoint holds.

    starts: (R, D) the starting points (the first start, then its perturbations);
    start: index of the start running; x: its last accepted iterate (None: not begun);
    histories / times: per start, the loss and wall time of every accepted iterate;
    best_*: the best point over all starts; elapsed: wall time before this call (s).
    """

    def __init__(self, starts: np.ndarray, n_stimuli: int):
        self.starts = starts
        self.start, self.x = 0, None
        self.histories: List[list] = []
        self.times: List[list] = []
        self.messages: List[str] = []
        self.iterations = 0
        self.best_theta, self.best_loss = starts[0].copy(), np.inf
        self.best_per = np.full(n_stimuli, np.inf)
        self.elapsed = 0.0

    def arrays(self) -> dict:
        ragged = lambda lists: (np.asarray([v for h in lists for v in h], np.float64),  # noqa: E731
                                np.asarray([len(h) for h in lists], np.int64))
        (hv, hn), (tv, tn) = ragged(self.histories), ragged(self.times)
        out = dict(starts=self.starts, best_theta=self.best_theta, best_loss=np.float64(self.best_loss),
                   best_per=self.best_per, history_values=hv, history_lengths=hn, times_values=tv,
                   times_lengths=tn)
        if self.x is not None:
            out["x"] = self.x
        return out

    def meta(self, config: dict, elapsed: float) -> dict:
        return dict(config=config, start=self.start, iterations=self.iterations, messages=self.messages,
                    elapsed=elapsed)

    @classmethod
    def from_checkpoint(cls, ck: ckpt.Checkpoint) -> "_State":
        a, meta = ck.arrays, ck.meta
        st = cls(a["starts"], a["best_per"].shape[0])
        split = lambda v, n: [list(map(float, p)) for p in np.split(v, np.cumsum(n)[:-1])] if n.size else []  # noqa: E731
        st.histories = split(a["history_values"], a["history_lengths"])
        st.times = split(a["times_values"], a["times_lengths"])
        st.start, st.x = int(meta["start"]), a.get("x")
        st.iterations, st.messages, st.elapsed = int(meta["iterations"]), list(meta["messages"]), float(meta["elapsed"])
        st.best_theta, st.best_loss, st.best_per = a["best_theta"], float(a["best_loss"]), a["best_per"]
        return st


def _task_shapes(task) -> tuple:
    """The shapes and dtypes of the task's arrays: what the compiled objective depends on."""
    return tuple((np.shape(a), np.asarray(a).dtype.str) for a in (task.inputs, task.target_mean, task.target_cov))


def _objective(param, task, loss: str, weights: LossWeights):
    """``minimize_lbfgs`` context loss ``(theta, (warm start, task arrays)) -> (value,
    (warm start, per-stimulus losses))`` and the host-side refresh of the context from an
    accepted iterate.

    Each stationary solve starts from the solution at the last accepted iterate, with
    its Newton sensitivity K (NaN rows: the solver's default start).  That changes the
    cost of an evaluation, not its value (the solver converges to round-off either way).
    The task's inputs and targets travel in the context, not in the closure, so the pair
    is cached per (param, loss, weights, task shapes) when param is hashable: a resumed
    fit, another fit of the same problem, or a refit to shifted targets
    (``fit_corrected``) reuses the compiled L-BFGS step.
    """
    try:
        key = (param, loss, tuple(float(w) for w in weights), _task_shapes(task))
        hash(key)
    except TypeError:  # an unhashable parameterization: compiled for this call only
        return _make_objective(param, loss, weights)
    if key not in _OBJECTIVES:
        _OBJECTIVES[key] = _make_objective(param, loss, weights)
        while len(_OBJECTIVES) > 8:
            _OBJECTIVES.popitem(last=False)
    return _OBJECTIVES[key]


def _make_objective(param, loss, weights):
    fun = _loss_of(param, loss, weights)  # checks `loss`
    stationary = loss == "stationary"

    def objective(theta, ctx):
        init, args = ctx
        value, aux = fun(theta, init, args)
        warm = aux.info.warm_start if stationary else init
        return value, (warm, aux.per_stimulus)

    def next_ctx(aux, ctx):
        init, args = ctx
        warm = aux[0]
        ok = jnp.all(jnp.isfinite(warm.z), axis=-1) & jnp.all(jnp.isfinite(warm.sensitivity), axis=(-2, -1))
        warm = jax.tree_util.tree_map(
            lambda new, old: jnp.where(ok.reshape(ok.shape + (1,) * (new.ndim - 1)), new, old), warm, init
        )
        return warm, args

    return objective, next_ctx


#: (param, loss, weights, task shapes) -> (objective, next_ctx), the 8 latest
_OBJECTIVES: "OrderedDict[tuple, tuple]" = OrderedDict()


def _starts(param, theta0, restarts: int, seed: int, restart_scale: float) -> np.ndarray:
    first = jnp.asarray(param.default_theta() if theta0 is None else theta0)
    rows = [first] + [jnp.asarray(param.random_theta(seed + r, scale=restart_scale, theta=first))
                      for r in range(restarts)]
    return np.stack([np.asarray(r) for r in rows])


def _run_start(state: _State, objective, context, backend, max_iter, budget, clock, save, progress) -> bool:
    """Run (or go on with) start ``state.start`` until L-BFGS stops; True if the time
    budget stopped it (the start is then unfinished: a resume goes on with it)."""
    i, n_starts = state.start, len(state.starts)
    fresh = state.x is None
    if fresh:
        state.histories.append([])
        state.times.append([])
    done_here = 0 if fresh else len(state.histories[i]) - 1
    x0 = state.starts[i] if fresh else state.x

    def callback(it, x, f):
        if it == 0 and not fresh:  # the point it stopped at, already recorded
            return False
        state.histories[i].append(float(f))
        state.times[i].append(clock())
        state.x = np.asarray(x, np.float64)
        if f < state.best_loss:
            state.best_theta, state.best_loss = state.x.copy(), float(f)
        state.iterations += 0 if it == 0 else 1
        save()
        report(progress, Progress(f"fit start {i + 1}/{n_starts}", len(state.histories[i]) - 1, max_iter,
                                  loss=float(f), elapsed_s=clock()))
        return False

    # stop when 3 iterations in a row gain less than 1e-6 (relative): past that the
    # line searches of a flat minimum cost many evaluations for nothing
    res = minimize_lbfgs(objective, jnp.asarray(x0), method=backend, max_iter=max(max_iter - done_here, 1),
                         ftol=1e-6, max_time=budget, callback=callback, context=context)
    if res.value <= state.best_loss and res.aux is not None:
        state.best_per = np.asarray(res.aux[1], np.float64)
    state.messages.append(res.message)
    stopped = res.message == "max_time reached"
    if not stopped:
        state.start, state.x = i + 1, None
    return stopped


# --------------------------------------------------------------------------- fit


def fit(
    param,
    task,
    *,
    method: Union[str, Backend] = "jaxopt",
    restarts: int = 0,
    seed: int = 0,
    max_iter: int = 300,
    max_time: Optional[float] = None,
    loss: str = "stationary",
    weights: LossWeights = LossWeights(),
    theta0=None,
    restart_scale: float = 0.1,
    checkpoint_dir: Optional[PathLike] = None,
    resume: bool = False,
    progress: Optional[ProgressFn] = None,
) -> FitResult:
    """Fit ``param`` to ``task`` by L-BFGS with restarts (see the module docstring).

    Args:
        param: a parameterization (``momentssn.params``).
        task: a ``Task`` (inputs (S, N), target_mean (S, M), target_cov (S, M, M)).
        method: L-BFGS backend, "jaxopt" | "optax" | "scipy" or a backend object
            (``momentssn.training.lbfgs``).
        restarts: random restarts in addition to the first start.
        seed: seed of the restart perturbations.
        max_iter: iterations per start.
        max_time: wall-time budget (s) of this call, all starts together, compilation
            included; it is checked after every iteration, so a cold start (first
            iterations compile for ~40 s on 2 cores; less with the command line's
            compilation cache) can overshoot a small budget by that much.
        loss: "stationary" or "transient".
        theta0: first start (default: ``param.default_theta()``); ignored on resume.
        checkpoint_dir: folder of the fit's checkpoint (kind ``"fit"``), written
            atomically after every iteration; ``None``: none.
        resume: go on from the checkpoint in ``checkpoint_dir`` (``FileNotFoundError``
            naming the folder if there is none).
        progress: ``ProgressFn`` called after every iteration (``None``: silent).
    """
    backend = backend_of(method)
    restarts = check_int("restarts", restarts, 0)
    max_iter = check_int("max_iter", max_iter, 1)
    progress = check_progress(progress)
    objective, next_ctx = _objective(param, task, loss, weights)
    t_call = time.perf_counter()
    config = dict(method=backend.name, restarts=restarts, seed=seed, max_iter=max_iter, loss=loss,
                  restart_scale=float(restart_scale), size=int(param.size),
                  parameterization=param.kind, constants=param.constants())  # lets ms.load rebuild param
    found = ckpt.resume_from(checkpoint_dir, _KIND, resume)
    if found is not None:
        state = _State.from_checkpoint(found)
        theirs = {k: found.meta["config"].get(k) for k in config}
        if theirs != config:
            raise ValueError(f"cannot resume from {checkpoint_dir}: it was written with {theirs}, this call has {config}")
    else:
        state = _State(_starts(param, theta0, restarts, seed, restart_scale), np.shape(task.inputs)[0])

    def clock():
        return state.elapsed + time.perf_counter() - t_call

    def save():
        if checkpoint_dir is not None:
            ckpt.save(checkpoint_dir, _KIND, state.arrays(), state.meta(config, clock()))

    S, N = np.shape(task.inputs)[0], param.N
    warm0 = WarmStart(jnp.full((S, 2 * N), jnp.nan), jnp.full((S, N, N), jnp.nan))
    context = ((warm0, _task_arrays(task)), next_ctx)
    while state.start < len(state.starts):
        budget = None if max_time is None else max_time - (time.perf_counter() - t_call)
        if budget is not None and budget <= 0:
            break
        stopped = _run_start(state, objective, context, backend, max_iter, budget, clock, save, progress)
        save()
        if stopped:
            break

    theta = jnp.asarray(state.best_theta)
    return FitResult(
        theta=np.asarray(theta),
        params=param.params_to_python(param.from_theta(theta)),
        loss=float(state.best_loss),
        loss_per_stimulus=[float(v) for v in state.best_per],
        iterations=state.iterations,
        restarts=len(state.histories),
        history=state.histories,
        times=state.times,
        wall_time_s=clock(),
        method=backend.name,
        message="; ".join(state.messages),
    )
