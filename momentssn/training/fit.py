"""Semi-analytic fitting: L-BFGS on the closure moments (Echeveste et al. 2020).

    result = ms.fit(param, task, method="jaxopt", restarts=2, max_time=110)

The objective is the moment-matching loss of ``momentssn.losses`` on the stationary
closure moments (default) or the transient moments, in float64 (enable
``jax_enable_x64`` first).  A network that becomes unstable during a line search
scores +inf with a zero gradient: the line search backtracks and the fit goes on.
Restarts start from random perturbations of the first start
(``param.random_theta``); the best point over all restarts is returned.  Each
stationary solve is warm-started from the solution at the last accepted iterate (an
``optim`` context): that changes the cost of an evaluation, not its value.
``momentssn fit-baseline`` starts from ``echeveste_start`` (the published optimizer's
start), other fits from ``param.default_theta()`` unless ``theta0`` is given.  Progress is
printed every iteration and, with ``checkpoint=PATH``, the best parameters so far are
written there (JSON) after every iteration, so ``theta0=param.load_json(PATH)``
resumes an interrupted fit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..losses.closure import stationary_loss, transient_loss
from ..losses.moment import LossWeights
from .lbfgs import minimize_lbfgs
from ..closure.stationary import WarmStart

__all__ = ["FitResult", "fit", "loss_function"]


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
    args = (jnp.asarray(task.inputs), jnp.asarray(task.target_mean), jnp.asarray(task.target_cov))
    if loss == "stationary":
        return lambda th, init: stationary_loss(param, th, *args, weights, init=init)
    if loss == "transient":
        return lambda th, init: transient_loss(param, th, *args, weights)
    raise ValueError(f"loss must be 'stationary' or 'transient', got {loss!r}")


def fit(
    param,
    task,
    *,
    method: str = "jaxopt",
    restarts: int = 0,
    seed: int = 0,
    max_iter: int = 300,
    max_time: Optional[float] = None,
    loss: str = "stationary",
    weights: LossWeights = LossWeights(),
    theta0=None,
    restart_scale: float = 0.1,
    checkpoint=None,
    progress: bool = True,
) -> FitResult:
    """Fit ``param`` to ``task`` by L-BFGS with restarts (see the module docstring).

    Args:
        param: a parameterization (``momentssn.parameterizations``).
        task: a ``Task`` (inputs (S, N), target_mean (S, M), target_cov (S, M, M)).
        method: L-BFGS backend, "jaxopt" | "optax" | "scipy".
        restarts: random restarts in addition to the first start.
        seed: seed of the restart perturbations.
        max_iter: iterations per start.
        max_time: wall-time budget (s) for all starts together, compilation included;
            it is checked after every iteration, so a cold start (first iterations
            compile for ~40 s on 2 cores; less with the command line's compilation
            cache) can overshoot a small budget by that much.
        loss: "stationary" or "transient".
        theta0: first start (default: ``param.default_theta()``).
        checkpoint: path of a JSON file updated with the best theta after every iteration.
    """
    t_start = time.perf_counter()
    fun = loss_function(param, task, loss, weights)

    # Warm starts: each stationary solve starts from the solution at the last accepted
    # iterate, with its Newton sensitivity K (NaN rows: the solver's default start).
    # They change the cost of an evaluation, not its value (the solver converges to
    # round-off either way).
    def objective(theta, init):
        value, aux = fun(theta, init)
        warm = aux.info.warm_start if loss == "stationary" else init
        return value, (warm, aux.per_stimulus)

    def next_ctx(aux, init):
        warm = aux[0]
        ok = jnp.all(jnp.isfinite(warm.z), axis=-1) & jnp.all(jnp.isfinite(warm.sensitivity), axis=(-2, -1))
        return jax.tree_util.tree_map(
            lambda new, old: jnp.where(ok.reshape(ok.shape + (1,) * (new.ndim - 1)), new, old), warm, init
        )

    S, N = np.shape(task.inputs)[0], param.N
    ctx0 = WarmStart(jnp.full((S, 2 * N), jnp.nan), jnp.full((S, N, N), jnp.nan))
    starts = [jnp.asarray(param.default_theta() if theta0 is None else theta0)]
    base = starts[0]
    for r in range(restarts):
        starts.append(jnp.asarray(param.random_theta(seed + r, scale=restart_scale, theta=base)))

    best = dict(theta=np.asarray(starts[0]), loss=np.inf)
    histories, times, iterations, messages = [], [], 0, []

    for i, th0 in enumerate(starts):
        elapsed = time.perf_counter() - t_start
        budget = None if max_time is None else max_time - elapsed
        if budget is not None and budget <= 0:
            break

        stamps = []

        def callback(it, x, f, i=i, stamps=stamps):
            stamps.append(time.perf_counter() - t_start)
            if f < best["loss"]:
                best.update(theta=np.asarray(x), loss=float(f))
                if checkpoint is not None:
                    param.save_json(best["theta"], checkpoint)
            if progress:
                print(f"  start {i + 1}/{len(starts)}  iter {it:4d}  loss {f:.6g}  "
                      f"best {best['loss']:.6g}  {time.perf_counter() - t_start:6.1f} s", flush=True)

        # stop when 3 iterations in a row gain less than 1e-6 (relative): past that the
        # line searches of a flat minimum cost many evaluations for nothing
        res = minimize_lbfgs(objective, th0, method=method, max_iter=max_iter, ftol=1e-6,
                             max_time=budget, callback=callback, context=(ctx0, next_ctx))
        if res.value <= best["loss"] and res.aux is not None:
            best["per_stimulus"] = np.asarray(res.aux[1])
        histories.append([float(v) for v in res.history])
        times.append(stamps)
        iterations += res.iterations
        messages.append(res.message)

    theta = jnp.asarray(best["theta"])
    params = param.params_to_python(param.from_theta(theta))
    per = best.get("per_stimulus", np.full(np.shape(task.inputs)[0], np.inf))
    return FitResult(
        theta=np.asarray(theta),
        params=params,
        loss=float(best["loss"]),
        loss_per_stimulus=[float(v) for v in per],
        iterations=iterations,
        restarts=len(histories),
        history=histories,
        times=times,
        wall_time_s=time.perf_counter() - t_start,
        method=method,
        message="; ".join(messages),
    )


def fit_baseline_cli(args) -> int:
    """``momentssn fit-baseline``: fit Baseline15, write result.json and figures."""
    from ..params.base import echeveste_theta, get_parameterization
    from ..tasks import get_task
    from ..experiments.report import baseline_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(args.task)
    param = get_parameterization("baseline15", m=int(task.n_exc))
    ckpt = out / "checkpoint.json"
    if args.resume and ckpt.exists():
        theta0 = param.load_json(ckpt)
        print(f"resuming from {ckpt}", flush=True)
    else:  # the published optimizer's start (a weak, nearly linear network)
        theta0 = echeveste_theta(param, task.inputs)
    print(f"fitting Baseline15 to task '{task.name}' ({task.inputs.shape[0]} stimuli) "
          f"with L-BFGS ({args.method}), {args.restarts} restarts, budget {args.max_time:.0f} s",
          flush=True)
    res = fit(param, task, method=args.method, restarts=args.restarts, seed=args.seed,
              max_iter=args.max_iter, max_time=args.max_time, loss=args.loss, theta0=theta0,
              checkpoint=ckpt)
    print(f"final loss {res.loss:.6g} after {res.iterations} iterations in {res.wall_time_s:.1f} s",
          flush=True)
    result = dict(
        task=str(args.task), loss=res.loss, params=res.params,
        loss_per_stimulus=res.loss_per_stimulus, iterations=res.iterations,
        restarts=res.restarts, wall_time_s=res.wall_time_s, method=res.method,
        loss_kind=args.loss, message=res.message, history=res.history,
        theta=[float(v) for v in res.theta],
    )
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'result.json'}", flush=True)
    baseline_report(param, task, res, out, simulate_check=not args.no_check)
    return 0
