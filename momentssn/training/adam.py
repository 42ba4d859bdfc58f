"""Training by simulation: Adam on moments estimated from simulated trials (BPTT).

    result = ms.train_bptt(param, task, steps=200, n_trials=100, checkpoint_dir="ckpt")

Three layers, each usable on its own:

* :func:`adam_train` -- a generic, restartable Adam loop on any
  ``value_and_grad(theta, key) -> ((loss, aux), grad)``: gradient clipping, one PRNG
  key per step, rejection of non-finite steps, atomic checkpoints, bit-identical resume,
  a wall-time budget;
* :func:`simulated_loss` -- the moment-matching loss of ``momentssn.losses`` (eq. 7 of
  Echeveste et al. 2020) on moments *estimated from simulated trials* (``ms.simulate``),
  differentiable by backpropagation through time;
* :func:`train_bptt` (Adam on :func:`simulated_loss`) and :func:`train_moments_adam`
  (Adam on the closure's ``momentssn.losses.stationary_loss``), which compile the
  value-and-gradient once and hand it to :func:`adam_train`.

The optimizer (one step t = 0, 1, ..., steps - 1; g_t the gradient at theta_t)::

    g'_t      = g_t min(1, clip_norm / |g_t|)                  (optax.clip_by_global_norm)
    theta_t+1 = theta_t - Adam_lr(g'_0 .. g'_t)               (optax.adam, b1 0.9, b2 0.999)
    key_t     = fold_in(key(seed), t)                          (the noise of step t)

A step whose loss or gradient is not finite (a diverged simulation scores +inf) is
*rejected*: theta and the Adam moments stay as they were, the step is recorded with
``accepted = False``, and the next step draws a new key.  Because key_t depends only on
(seed, t) and the checkpoint holds the exact float state, a run resumed from a
checkpoint reproduces the uninterrupted run bit for bit (on the same machine and
backend).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..losses.closure import stationary_loss
from ..losses.moment import LossWeights
from ..losses.simulated import SimulatedLossAux, _sim_config, _simulated_loss, _task_arrays, simulated_loss

__all__ = [
    "TrainResult",
    "SimulatedLossAux",
    "adam_train",
    "simulated_loss",
    "train_bptt",
    "train_moments_adam",
    "load_checkpoint",
    "CHECKPOINT_FILE",
]

#: File name of the checkpoint inside ``checkpoint_dir`` (one file, replaced atomically).
CHECKPOINT_FILE = "train_checkpoint.npz"
_FORMAT = 1
_HISTORY_KEYS = ("step", "loss", "wall_time_s", "accepted", "grad_norm")


# --------------------------------------------------------------------------- results


class TrainResult(NamedTuple):
    """What :func:`adam_train` returns.

    theta: final parameters (numpy, same shape and dtype as theta0).  Rejected steps
        never change theta, so it is the result of the last accepted step.
    history: dict of equal-length lists, one entry per step done (resumed ones included):
        ``step`` (int t, 0-based; the key of the step is fold_in(key(seed), t)),
        ``loss`` (float, the loss at theta_t, i.e. *before* the update of step t),
        ``wall_time_s`` (float, training time elapsed at the end of the step, counted
        across resumes), ``accepted`` (bool), ``grad_norm`` (float, global 2-norm of
        the raw gradient before clipping; NaN/inf when rejected for that reason).
    n_rejected: number of rejected steps.
    rejected_steps: their indices t.
    steps: number of steps done, including the ones done before a resume.
    wall_time_s: total training time (s), including the time before a resume
        (compilation included; checkpoint writing included).
    """

    theta: Any
    history: Dict[str, list]
    n_rejected: int
    rejected_steps: List[int]
    steps: int
    wall_time_s: float


# --------------------------------------------------------------------------- argument checks


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


# --------------------------------------------------------------------------- checkpoints


def _atomic_savez(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write an .npz next to ``path`` and move it into place with ``os.replace`` (atomic
    on POSIX: a reader sees the old file or the new one, never a partial one)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _save_checkpoint(path, config, theta_leaves, opt_leaves, step, history, elapsed) -> None:
    arrays = {f"theta_{i}": np.asarray(x) for i, x in enumerate(theta_leaves)}
    arrays.update({f"opt_{i}": np.asarray(x) for i, x in enumerate(opt_leaves)})
    arrays["meta"] = np.asarray(
        json.dumps(
            dict(
                format=_FORMAT,
                config=config,
                step=int(step),
                elapsed=float(elapsed),
                n_theta=len(theta_leaves),
                n_opt=len(opt_leaves),
                history=history,
            )
        )
    )
    _atomic_savez(path, arrays)


def load_checkpoint(checkpoint_dir) -> Dict[str, Any]:
    """Read the checkpoint written by :func:`adam_train` into ``checkpoint_dir``.

    Returns a dict with ``theta_leaves`` and ``opt_leaves`` (lists of numpy arrays, in
    ``jax.tree_util`` leaf order), ``step`` (steps done), ``elapsed`` (s), ``history``
    (as in ``TrainResult.history``) and ``config`` (seed, learning_rate, clip_norm and
    the shapes/dtypes of theta).  Raises ``FileNotFoundError`` if there is none.
    """
    path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_FILE)
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
        theta = [f[f"theta_{i}"] for i in range(meta["n_theta"])]
        opt = [f[f"opt_{i}"] for i in range(meta["n_opt"])]
    return dict(
        theta_leaves=theta,
        opt_leaves=opt,
        step=meta["step"],
        elapsed=meta["elapsed"],
        history=meta["history"],
        config=meta["config"],
    )


# --------------------------------------------------------------------------- the Adam loop


def _optimizer(learning_rate: float, clip_norm: Optional[float]) -> optax.GradientTransformation:
    """clip_by_global_norm(clip_norm) then adam(learning_rate) (clipping acts on the raw
    gradient, before Adam's moment estimates)."""
    adam = optax.adam(learning_rate)
    return adam if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adam)


@functools.lru_cache(maxsize=16)
def _make_update(learning_rate: float, clip_norm: Optional[float]):
    """Jitted (theta, opt_state, loss, grad) -> (theta', opt_state', accepted, |grad|)
    for ``_optimizer(learning_rate, clip_norm)`` (cached: compiled once per setting).

    accepted = loss and every gradient entry finite.  When not accepted, theta and
    opt_state are returned unchanged (the update runs on a zeroed gradient and is
    discarded with ``where``, so no NaN can reach the state)."""
    opt = _optimizer(learning_rate, clip_norm)

    @jax.jit
    def update(theta, opt_state, loss, grad):
        leaves = jax.tree_util.tree_leaves(grad)
        ok = jnp.isfinite(loss)
        for g in leaves:
            ok = ok & jnp.all(jnp.isfinite(g))
        gnorm = optax.tree.norm(grad)
        safe = jax.tree_util.tree_map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)), grad)
        updates, new_state = opt.update(safe, opt_state, theta)
        new_theta = optax.apply_updates(theta, updates)
        keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
        return (
            jax.tree_util.tree_map(keep, new_theta, theta),
            jax.tree_util.tree_map(keep, new_state, opt_state),
            ok,
            gnorm,
        )

    return update


def _leaf_signature(tree) -> list:
    return [[list(np.shape(x)), str(np.asarray(x).dtype)] for x in jax.tree_util.tree_leaves(tree)]


def adam_train(
    value_and_grad: Callable,
    theta0,
    *,
    steps: int,
    learning_rate: float = 1e-2,
    clip_norm: Optional[float] = 1.0,
    seed: int = 0,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume: bool = False,
    max_time: Optional[float] = None,
    progress: Optional[bool] = None,
    callback: Optional[Callable] = None,
) -> TrainResult:
    """Adam with gradient clipping, rejection of non-finite steps, checkpoints and resume.

    Args:
        value_and_grad: ``(theta, key) -> ((loss, aux), grad)``, e.g.
            ``jax.jit(jax.value_and_grad(f, has_aux=True))`` of ``f(theta, key) ->
            (loss, aux)``.  Called once per step with the step's key (a typed JAX PRNG
            key).  It is called as given: jit it yourself (once) for speed.
        theta0: initial parameters (an array or a pytree of arrays).
        steps: total number of steps t = 0 .. steps - 1 (resumed ones included), >= 1.
        learning_rate: Adam step size (> 0), in units of theta.
        clip_norm: the raw gradient is rescaled to global norm <= clip_norm before Adam
            (> 0); ``None`` disables clipping.
        seed: int; key_t = ``jax.random.fold_in(jax.random.key(seed), t)``.
        checkpoint_dir: directory for the checkpoint (created if needed); ``None``: no
            checkpoints.  The checkpoint (file ``CHECKPOINT_FILE``: theta, Adam state,
            step, history, elapsed time; an .npz without pickles) is replaced
            atomically (temporary file + ``os.replace``) every ``checkpoint_every``
            steps, when stopping early and at the end.
        checkpoint_every: steps between checkpoints (>= 1).
        resume: continue from the checkpoint in ``checkpoint_dir`` if there is one
            (from theta0 otherwise).  Its seed, learning rate, clip norm and theta
            shapes must match these arguments (``ValueError`` otherwise).  The
            continued run is bit-identical to an uninterrupted one.
        max_time: wall-time budget (s) of *this call*: after the first step that ends
            past it, a checkpoint is written and training stops (so every call makes
            progress).  ``None``: no budget.
        progress: print one line per step; default: only when stdout is a terminal.
        callback: ``callback(t, theta, loss, aux) -> bool | None`` after every step (theta
            after the step, loss and aux of the evaluation at the start of the step);
            True stops training (after a checkpoint).

    Returns:
        :class:`TrainResult`.  After an early stop (``max_time`` or the callback) its
        ``steps`` is below the requested number; call again with ``resume=True`` to go on.
    """
    steps = _check_int("steps", steps, 1)
    learning_rate = _check_positive("learning_rate", learning_rate)
    if clip_norm is not None:
        clip_norm = _check_positive("clip_norm", clip_norm)
    checkpoint_every = _check_int("checkpoint_every", checkpoint_every, 1)
    seed = _check_int("seed", seed, 0)
    if max_time is not None:
        max_time = float(max_time)
        if not max_time >= 0:
            raise ValueError(f"max_time must be >= 0 (s) or None, got {max_time!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    if not callable(value_and_grad):
        raise ValueError("value_and_grad must be callable (theta, key) -> ((loss, aux), grad)")
    if progress is None:
        progress = bool(getattr(sys.stdout, "isatty", lambda: False)())

    t_call = time.perf_counter()
    theta = jax.tree_util.tree_map(jnp.asarray, theta0)
    leaves0, theta_def = jax.tree_util.tree_flatten(theta)
    for x in leaves0:
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"theta0 must hold floating-point arrays, got dtype {x.dtype}")
        if not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError("theta0 contains NaN or inf")

    opt = _optimizer(learning_rate, clip_norm)
    opt_state = opt.init(theta)
    opt_def = jax.tree_util.tree_structure(opt_state)
    config = dict(
        seed=seed, learning_rate=learning_rate, clip_norm=clip_norm, theta=_leaf_signature(theta)
    )

    history: Dict[str, list] = {k: [] for k in _HISTORY_KEYS}
    start, elapsed0 = 0, 0.0
    path = None
    if checkpoint_dir is not None:
        os.makedirs(os.fspath(checkpoint_dir), exist_ok=True)
        path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_FILE)
    if resume and os.path.exists(path):
        ck = load_checkpoint(checkpoint_dir)
        theirs = ck["config"]
        for key in ("seed", "learning_rate", "clip_norm", "theta"):
            if theirs.get(key) != config[key]:
                name = "theta0" if key == "theta" else key
                raise ValueError(
                    f"cannot resume from {path}: it was written with {key}={theirs.get(key)!r}, "
                    f"this call has {name}={config[key]!r}"
                )
        if len(ck["opt_leaves"]) != opt_def.num_leaves:
            raise ValueError(f"cannot resume from {path}: its optimizer state does not match")
        theta = jax.tree_util.tree_unflatten(theta_def, [jnp.asarray(x) for x in ck["theta_leaves"]])
        opt_state = jax.tree_util.tree_unflatten(opt_def, [jnp.asarray(x) for x in ck["opt_leaves"]])
        start, elapsed0, history = int(ck["step"]), float(ck["elapsed"]), ck["history"]
        if progress:
            print(f"adam_train: resuming from {path} at step {start}", flush=True)

    update = _make_update(learning_rate, clip_norm)
    base_key = jax.random.key(seed)

    def elapsed():
        return elapsed0 + (time.perf_counter() - t_call)

    def checkpoint(t_done):
        if path is not None:
            _save_checkpoint(
                path,
                config,
                jax.tree_util.tree_leaves(theta),
                jax.tree_util.tree_leaves(opt_state),
                t_done,
                history,
                elapsed(),
            )

    done = start
    last_saved = start if start > 0 else -1
    for t in range(start, steps):
        key = jax.random.fold_in(base_key, t)
        (loss, aux), grad = value_and_grad(theta, key)
        theta, opt_state, ok, gnorm = update(theta, opt_state, loss, grad)
        ok, loss_f, gnorm_f = bool(ok), float(loss), float(gnorm)
        done = t + 1
        history["step"].append(t)
        history["loss"].append(loss_f)
        history["wall_time_s"].append(elapsed())
        history["accepted"].append(ok)
        history["grad_norm"].append(gnorm_f)
        if progress:
            flag = "" if ok else "  REJECTED (non-finite loss or gradient)"
            print(
                f"step {done}/{steps}  loss {loss_f:.6g}  |grad| {gnorm_f:.3g}  "
                f"{history['wall_time_s'][-1]:.1f} s{flag}",
                flush=True,
            )
        stop = bool(callback(t, theta, loss, aux)) if callback is not None else False
        if max_time is not None and time.perf_counter() - t_call >= max_time:
            stop = True
        if stop or done % checkpoint_every == 0 or done == steps:
            checkpoint(done)
            last_saved = done
        if stop:
            if progress and done < steps:
                print(f"adam_train: stopped after step {done}/{steps} (resume=True goes on)", flush=True)
            break
    if path is not None and last_saved != done:
        checkpoint(done)

    rejected = [s for s, a in zip(history["step"], history["accepted"]) if not a]
    return TrainResult(
        theta=jax.tree_util.tree_map(np.asarray, theta),
        history=history,
        n_rejected=len(rejected),
        rejected_steps=rejected,
        steps=done,
        wall_time_s=elapsed(),
    )


# one compiled value-and-gradient per (param, config, shapes): repeated calls of
# train_bptt (e.g. resumes, growth stages with the same size) reuse it
_sim_value_and_grad = jax.jit(
    jax.value_and_grad(_simulated_loss, argnums=2, has_aux=True), static_argnums=(0, 1)
)


def _hashable(obj) -> bool:
    """Whether obj can be a static jit argument (the parameterizations are frozen dataclasses)."""
    try:
        hash(obj)
        return True
    except TypeError:
        return False


def _default_theta(param, theta0):
    return param.default_theta() if theta0 is None else jnp.asarray(theta0)


def _adam_on(param, objective, cached, theta0, **adam_options) -> TrainResult:
    """:func:`adam_train` on ``objective(theta, key) -> (loss, aux)`` for ``param``.

    ``cached(theta, key)`` is the same value-and-gradient through a module-level
    ``jax.jit`` with ``param`` static, so equal parameterizations share one
    compilation; an unhashable ``param`` gets a jit of ``objective`` for this call.
    """
    if _hashable(param):
        value_and_grad = cached
    else:  # compiled for this call only
        value_and_grad = jax.jit(jax.value_and_grad(objective, has_aux=True))
    return adam_train(value_and_grad, _default_theta(param, theta0), **adam_options)


def train_bptt(
    param,
    task,
    *,
    theta0=None,
    steps: int = 200,
    seed: int = 0,
    learning_rate: float = 1e-2,
    clip_norm: Optional[float] = 1.0,
    n_trials: int = 100,
    t_max: float = 500.0,
    t_avg: float = 100.0,
    dt: float = 0.2,
    weights: LossWeights = LossWeights(),
    dtype=jnp.float32,
    record_stride: Optional[int] = None,
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume: bool = False,
    max_time: Optional[float] = None,
    progress: Optional[bool] = None,
    callback: Optional[Callable] = None,
) -> TrainResult:
    """Train ``param`` on ``task`` by Adam on :func:`simulated_loss` (BPTT).

    The value and gradient are compiled once (``jax.jit``; for a hashable ``param``,
    e.g. every parameterization of momentssn, the compiled function is reused across
    calls with an equal parameterization, the same settings and the same task shapes,
    so resumes do not recompile) and every step simulates with fresh noise,
    key_t = fold_in(key(seed), t).  theta0 defaults to ``param.default_theta()``
    (float64 when x64 is on; the simulation runs in ``dtype``, float32 by default).
    Simulation settings as in :func:`simulated_loss`, optimizer, checkpoint and
    resume settings as in :func:`adam_train`.
    """
    cfg = _sim_config(n_trials, t_max, t_avg, dt, dtype, record_stride)
    data = _task_arrays(param, task, weights)
    def objective(theta, key):
        return _simulated_loss(param, cfg, theta, key, data)

    def cached(theta, key):
        return _sim_value_and_grad(param, cfg, theta, key, data)

    return _adam_on(
        param, objective, cached, theta0, steps=steps, learning_rate=learning_rate, clip_norm=clip_norm,
        seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        max_time=max_time, progress=progress, callback=callback,
    )


# --------------------------------------------------------------------------- closure loss


def _stationary_objective(param, theta, key, data):
    del key  # deterministic
    return stationary_loss(param, theta, *data)


_stat_value_and_grad = jax.jit(
    jax.value_and_grad(_stationary_objective, argnums=1, has_aux=True), static_argnums=(0,)
)


def train_moments_adam(
    param,
    task,
    *,
    theta0=None,
    steps: int = 200,
    seed: int = 0,
    learning_rate: float = 1e-2,
    clip_norm: Optional[float] = 1.0,
    weights: LossWeights = LossWeights(),
    checkpoint_dir=None,
    checkpoint_every: int = 10,
    resume: bool = False,
    max_time: Optional[float] = None,
    progress: Optional[bool] = None,
    callback: Optional[Callable] = None,
) -> TrainResult:
    """Train ``param`` on ``task`` by Adam on the closure's stationary loss.

    The objective is ``momentssn.losses.stationary_loss`` (eq. 7 on the stationary
    moments of the Gaussian closure, gradients by implicit differentiation): the same
    loss as ``ms.fit``, optimized by the same Adam loop as :func:`train_bptt`, so the
    two routes can be compared step for step.  An unstable network scores +inf and the
    step is rejected.  Each evaluation solves from the closure's default initial
    guess (no warm start between steps, so a resumed run is bit-identical).

    Numerics: the closure is meant to run in float64: enable it yourself before
    creating arrays (``jax.config.update("jax_enable_x64", True)``); a
    ``RuntimeWarning`` is issued otherwise.  ``seed`` only labels the run (the loss is
    deterministic).  Other arguments as in :func:`train_bptt` / :func:`adam_train`.
    """
    if not jax.config.jax_enable_x64:
        warnings.warn(
            "train_moments_adam: the moment closure is meant to run in float64; call "
            "jax.config.update('jax_enable_x64', True) before creating arrays",
            RuntimeWarning,
            stacklevel=2,
        )
    data = _task_arrays(param, task, weights)
    def objective(theta, key):
        return _stationary_objective(param, theta, key, data)

    def cached(theta, key):
        return _stat_value_and_grad(param, theta, key, data)

    return _adam_on(
        param, objective, cached, theta0, steps=steps, learning_rate=learning_rate, clip_norm=clip_norm,
        seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        max_time=max_time, progress=progress, callback=callback,
    )
