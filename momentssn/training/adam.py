"""Training by Adam: a restartable loop, on simulated moments (BPTT) or the closure's.

    result = ms.train_bptt(param, task, steps=200, n_trials=100, checkpoint_dir="ckpt")

* :func:`adam_train` -- a generic, restartable Adam loop on any
  ``value_and_grad(theta, key) -> ((loss, aux), grad)``: gradient clipping, one PRNG
  key per step, rejection of non-finite steps, atomic checkpoints
  (``momentssn.training.checkpoint``, kind ``"adam"``), bit-identical resume, a
  wall-time budget, progress through a callback;
* :func:`train_bptt` (Adam on ``momentssn.losses.simulated.simulated_loss``) and
  :func:`train_moments_adam` (Adam on the closure's
  ``momentssn.losses.closure.stationary_loss``), which compile the value-and-gradient
  once and hand it to :func:`adam_train` with their :class:`AdamSettings`.

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
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._util import PathLike, require_x64
from ..losses._args import check_int, check_positive, check_progress
from ..losses.closure import stationary_loss
from ..losses.moment import LossWeights
from ..losses.simulated import SimulatedLossAux, _sim_config, _simulated_loss, _task_arrays, simulated_loss
from ..progress import Progress, ProgressFn, report
from . import checkpoint as ckpt

__all__ = [
    "AdamSettings",
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
CHECKPOINT_FILE = ckpt.DEFAULT_NAME
_KIND = "adam"
_HISTORY_KEYS = ("step", "loss", "wall_time_s", "accepted", "grad_norm")
_HISTORY_DTYPES = (np.int64, np.float64, np.float64, np.bool_, np.float64)


# --------------------------------------------------------------------------- settings and results


class AdamSettings(NamedTuple):
    """Optimizer, checkpoint and stopping settings of an Adam run (:func:`adam_train`).

    steps: total number of steps t = 0 .. steps - 1 (resumed ones included), >= 1.
    learning_rate: Adam step size (> 0), in units of theta.
    clip_norm: the raw gradient is rescaled to global norm <= clip_norm before Adam
        (> 0); ``None`` disables clipping.
    seed: int >= 0; key_t = ``jax.random.fold_in(jax.random.key(seed), t)``.
    checkpoint_dir: folder of the checkpoint (created if needed); ``None``: none.
        The checkpoint (file ``CHECKPOINT_FILE``, kind ``"adam"``: theta, Adam state,
        step, history, elapsed time) is replaced atomically every ``checkpoint_every``
        steps, when stopping early and at the end.
    checkpoint_every: steps between checkpoints (>= 1).
    resume: continue from the checkpoint in ``checkpoint_dir``; ``FileNotFoundError``
        naming the folder if there is none.  Its seed, learning rate, clip norm and
        theta shapes must match (``ValueError`` otherwise).  The continued run is
        bit-identical to an uninterrupted one.
    max_time: wall-time budget (s) of *this call*: after the first step that ends past
        it, a checkpoint is written and training stops (so every call makes progress).
        ``None``: no budget.
    progress: ``ProgressFn`` called after every step (``None``: silent).
    callback: ``callback(t, theta, loss, aux) -> bool | None`` after every step (theta
        after the step, loss and aux of the evaluation at the start of the step); True
        stops training (after a checkpoint).
    """

    steps: int = 200
    learning_rate: float = 1e-2
    clip_norm: Optional[float] = 1.0
    seed: int = 0
    checkpoint_dir: Optional[PathLike] = None
    checkpoint_every: int = 10
    resume: bool = False
    max_time: Optional[float] = None
    progress: Optional[ProgressFn] = None
    callback: Optional[Callable] = None

    def checked(self) -> "AdamSettings":
        """These settings validated (``ValueError`` naming the bad one) and normalized."""
        max_time = self.max_time
        if max_time is not None:
            max_time = float(max_time)
            if not max_time >= 0:
                raise ValueError(f"max_time must be >= 0 (s) or None, got {self.max_time!r}")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir to resume from")
        return self._replace(
            steps=check_int("steps", self.steps, 1),
            learning_rate=check_positive("learning_rate", self.learning_rate),
            clip_norm=None if self.clip_norm is None else check_positive("clip_norm", self.clip_norm),
            seed=check_int("seed", self.seed, 0),
            checkpoint_every=check_int("checkpoint_every", self.checkpoint_every, 1),
            max_time=max_time,
            progress=check_progress(self.progress),
        )


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


# --------------------------------------------------------------------------- checkpoints


def _save(folder, config, theta, opt_state, step, history, elapsed) -> None:
    """The loop's state as an ``"adam"`` checkpoint (history as exact arrays: a loss of
    +inf or a NaN gradient norm survives the round trip)."""
    theta_leaves, opt_leaves = jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(opt_state)
    arrays = {f"theta_{i}": np.asarray(x) for i, x in enumerate(theta_leaves)}
    arrays.update({f"opt_{i}": np.asarray(x) for i, x in enumerate(opt_leaves)})
    for k, dt in zip(_HISTORY_KEYS, _HISTORY_DTYPES):
        arrays[f"history_{k}"] = np.asarray(history[k], dt)
    meta = dict(config=config, step=int(step), elapsed=float(elapsed),
                n_theta=len(theta_leaves), n_opt=len(opt_leaves))
    ckpt.save(folder, _KIND, arrays, meta, name=CHECKPOINT_FILE)


def _unpack(ck: ckpt.Checkpoint) -> Dict[str, Any]:
    a, meta = ck.arrays, ck.meta
    return dict(
        theta_leaves=[a[f"theta_{i}"] for i in range(meta["n_theta"])],
        opt_leaves=[a[f"opt_{i}"] for i in range(meta["n_opt"])],
        step=int(meta["step"]),
        elapsed=float(meta["elapsed"]),
        history={k: a[f"history_{k}"].tolist() for k in _HISTORY_KEYS},
        config=meta["config"],
    )


def load_checkpoint(checkpoint_dir) -> Dict[str, Any]:
    """Read the checkpoint written by :func:`adam_train` into ``checkpoint_dir``.

    Returns a dict with ``theta_leaves`` and ``opt_leaves`` (lists of numpy arrays, in
    ``jax.tree_util`` leaf order), ``step`` (steps done), ``elapsed`` (s), ``history``
    (as in ``TrainResult.history``) and ``config`` (seed, learning_rate, clip_norm and
    the shapes/dtypes of theta).  Raises ``FileNotFoundError`` naming the folder if
    there is none, ``ValueError`` if the file is not an Adam checkpoint.
    """
    return _unpack(ckpt.load(checkpoint_dir, _KIND, CHECKPOINT_FILE))


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


def _initial_theta(theta0):
    theta = jax.tree_util.tree_map(jnp.asarray, theta0)
    for x in jax.tree_util.tree_leaves(theta):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"theta0 must hold floating-point arrays, got dtype {x.dtype}")
        if not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError("theta0 contains NaN or inf")
    return theta


def _resume(ck: ckpt.Checkpoint, folder, config, theta, opt_state):
    """(theta, opt_state, start, elapsed, history) from an ``"adam"`` checkpoint written
    with the same settings (``ValueError`` naming the first that differs)."""
    state = _unpack(ck)
    where = ckpt.path_of(folder, CHECKPOINT_FILE)
    for key in ("seed", "learning_rate", "clip_norm", "theta"):
        if state["config"].get(key) != config[key]:
            name = "theta0" if key == "theta" else key
            raise ValueError(f"cannot resume from {where}: it was written with {key}={state['config'].get(key)!r}, "
                             f"this call has {name}={config[key]!r}")
    theta_def = jax.tree_util.tree_structure(theta)
    opt_def = jax.tree_util.tree_structure(opt_state)
    if len(state["opt_leaves"]) != opt_def.num_leaves:
        raise ValueError(f"cannot resume from {where}: its optimizer state does not match")
    theta = jax.tree_util.tree_unflatten(theta_def, [jnp.asarray(x) for x in state["theta_leaves"]])
    opt_state = jax.tree_util.tree_unflatten(opt_def, [jnp.asarray(x) for x in state["opt_leaves"]])
    return theta, opt_state, state["step"], state["elapsed"], state["history"]


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
    progress: Optional[ProgressFn] = None,
    callback: Optional[Callable] = None,
) -> TrainResult:
    """Adam with gradient clipping, rejection of non-finite steps, checkpoints and resume.

    Args:
        value_and_grad: ``(theta, key) -> ((loss, aux), grad)``, e.g.
            ``jax.jit(jax.value_and_grad(f, has_aux=True))`` of ``f(theta, key) ->
            (loss, aux)``.  Called once per step with the step's key (a typed JAX PRNG
            key).  It is called as given: jit it yourself (once) for speed.
        theta0: initial parameters (an array or a pytree of arrays).
        steps, learning_rate, clip_norm, seed, checkpoint_dir, checkpoint_every,
            resume, max_time, progress, callback: see :class:`AdamSettings`.

    Returns:
        :class:`TrainResult`.  After an early stop (``max_time`` or the callback) its
        ``steps`` is below the requested number; call again with ``resume=True`` to go on.
    """
    settings = AdamSettings(steps, learning_rate, clip_norm, seed, checkpoint_dir, checkpoint_every,
                            resume, max_time, progress, callback)
    return _run(value_and_grad, theta0, settings, "adam")


def _run(value_and_grad: Callable, theta0, settings: AdamSettings, task: str) -> TrainResult:
    """The loop of :func:`adam_train`; ``task`` names the run in progress events."""
    s = settings.checked()
    if not callable(value_and_grad):
        raise ValueError("value_and_grad must be callable (theta, key) -> ((loss, aux), grad)")
    t_call = time.perf_counter()
    theta = _initial_theta(theta0)
    opt_state = _optimizer(s.learning_rate, s.clip_norm).init(theta)
    config = dict(seed=s.seed, learning_rate=s.learning_rate, clip_norm=s.clip_norm,
                  theta=_leaf_signature(theta))
    history: Dict[str, list] = {k: [] for k in _HISTORY_KEYS}
    start, elapsed0 = 0, 0.0
    found = ckpt.resume_from(s.checkpoint_dir, _KIND, s.resume, CHECKPOINT_FILE)
    if found is not None:
        theta, opt_state, start, elapsed0, history = _resume(found, s.checkpoint_dir, config, theta, opt_state)
        report(s.progress, Progress(task, start, s.steps, elapsed_s=elapsed0,
                                    message=f"resuming from {s.checkpoint_dir} at step {start}"))

    update = _make_update(s.learning_rate, s.clip_norm)
    base_key = jax.random.key(s.seed)

    def elapsed():
        return elapsed0 + (time.perf_counter() - t_call)

    def save(t_done):
        if s.checkpoint_dir is not None:
            _save(s.checkpoint_dir, config, theta, opt_state, t_done, history, elapsed())

    done = start
    last_saved = start if start > 0 else -1
    for t in range(start, s.steps):
        (loss, aux), grad = value_and_grad(theta, jax.random.fold_in(base_key, t))
        theta, opt_state, ok, gnorm = update(theta, opt_state, loss, grad)
        ok, loss_f, gnorm_f = bool(ok), float(loss), float(gnorm)
        done = t + 1
        for k, v in zip(_HISTORY_KEYS, (t, loss_f, elapsed(), ok, gnorm_f)):
            history[k].append(v)
        report(s.progress, Progress(task, done, s.steps, loss=loss_f, elapsed_s=history["wall_time_s"][-1],
                                    message="" if ok else f"step {done} REJECTED (non-finite loss or gradient)"))
        stop = bool(s.callback(t, theta, loss, aux)) if s.callback is not None else False
        if s.max_time is not None and time.perf_counter() - t_call >= s.max_time:
            stop = True
        if stop or done % s.checkpoint_every == 0 or done == s.steps:
            save(done)
            last_saved = done
        if stop:
            if done < s.steps:
                report(s.progress, Progress(task, done, s.steps, loss=loss_f, elapsed_s=elapsed(),
                                            message=f"stopped after step {done}/{s.steps} (resume=True goes on)"))
            break
    if last_saved != done:
        save(done)

    rejected = [t for t, a in zip(history["step"], history["accepted"]) if not a]
    return TrainResult(
        theta=jax.tree_util.tree_map(np.asarray, theta),
        history=history,
        n_rejected=len(rejected),
        rejected_steps=rejected,
        steps=done,
        wall_time_s=elapsed(),
    )


# --------------------------------------------------------------------------- drivers


def _hashable(obj) -> bool:
    """Whether obj can be a static jit argument (the parameterizations are frozen dataclasses)."""
    try:
        hash(obj)
        return True
    except TypeError:
        return False


def _settings(settings: Optional[AdamSettings], options: dict) -> AdamSettings:
    """``settings`` (default ``AdamSettings()``) with the keyword ``options`` replaced;
    an unknown keyword is a ``TypeError`` naming it, as for any function."""
    unknown = sorted(set(options) - set(AdamSettings._fields))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; Adam settings are {AdamSettings._fields}")
    return (settings or AdamSettings())._replace(**options)


def _adam_on(param, objective, cached, theta0, settings: AdamSettings, task: str) -> TrainResult:
    """:func:`adam_train` on ``objective(theta, key) -> (loss, aux)`` for ``param``.

    ``cached(theta, key)`` is the same value-and-gradient through a module-level
    ``jax.jit`` with ``param`` static, so equal parameterizations share one
    compilation; an unhashable ``param`` gets a jit of ``objective`` for this call.
    """
    if _hashable(param):
        value_and_grad = cached
    else:  # compiled for this call only
        value_and_grad = jax.jit(jax.value_and_grad(objective, has_aux=True))
    theta0 = param.default_theta() if theta0 is None else jnp.asarray(theta0)
    return _run(value_and_grad, theta0, settings, task)


# one compiled value-and-gradient per (param, config, shapes): repeated calls of
# train_bptt (e.g. resumes, growth stages with the same size) reuse it
_sim_value_and_grad = jax.jit(
    jax.value_and_grad(_simulated_loss, argnums=2, has_aux=True), static_argnums=(0, 1)
)


def train_bptt(
    param,
    task,
    *,
    theta0=None,
    n_trials: int = 100,
    t_max: float = 500.0,
    t_avg: float = 100.0,
    dt: float = 0.2,
    weights: LossWeights = LossWeights(),
    dtype=jnp.float32,
    record_stride: Optional[int] = None,
    settings: Optional[AdamSettings] = None,
    **adam_options,
) -> TrainResult:
    """Train ``param`` on ``task`` by Adam on ``simulated_loss`` (BPTT).

    The value and gradient are compiled once (``jax.jit``; for a hashable ``param``,
    e.g. every parameterization of momentssn, the compiled function is reused across
    calls with an equal parameterization, the same settings and the same task shapes,
    so resumes do not recompile) and every step simulates with fresh noise,
    key_t = fold_in(key(seed), t).  theta0 defaults to ``param.default_theta()``
    (float64 when x64 is on; the simulation runs in ``dtype``, float32 by default).

    Simulation settings (``n_trials`` .. ``record_stride``) as in
    ``momentssn.losses.simulated.simulated_loss``.  Optimizer, checkpoint, resume and
    progress settings: an :class:`AdamSettings` (``settings``) and/or its fields as
    keywords (``steps=200, learning_rate=1e-2, clip_norm=1.0, seed=0,
    checkpoint_dir=None, checkpoint_every=10, resume=False, max_time=None,
    progress=None, callback=None``), the keywords taking precedence.
    """
    s = _settings(settings, adam_options)
    cfg = _sim_config(n_trials, t_max, t_avg, dt, dtype, record_stride)
    data = _task_arrays(param, task, weights)

    def objective(theta, key):
        return _simulated_loss(param, cfg, theta, key, data)

    def cached(theta, key):
        return _sim_value_and_grad(param, cfg, theta, key, data)

    return _adam_on(param, objective, cached, theta0, s, "bptt")


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
    weights: LossWeights = LossWeights(),
    settings: Optional[AdamSettings] = None,
    **adam_options,
) -> TrainResult:
    """Train ``param`` on ``task`` by Adam on the closure's stationary loss.

    The objective is ``momentssn.losses.closure.stationary_loss`` (eq. 7 on the
    stationary moments of the Gaussian closure, gradients by implicit
    differentiation): the same loss as ``ms.fit``, optimized by the same Adam loop as
    :func:`train_bptt`, so the two routes can be compared step for step.  An unstable
    network scores +inf and the step is rejected.  Each evaluation solves from the
    closure's default initial guess (no warm start between steps, so a resumed run is
    bit-identical).

    Numerics: the closure runs in float64: enable it before creating arrays
    (``jax.config.update("jax_enable_x64", True)``; ``ValueError`` otherwise).
    ``seed`` only labels the run (the loss is deterministic).  Settings as in
    :func:`train_bptt`.
    """
    require_x64("train_moments_adam (the moment closure)")
    s = _settings(settings, adam_options)
    data = _task_arrays(param, task, weights)

    def objective(theta, key):
        return _stationary_objective(param, theta, key, data)

    def cached(theta, key):
        return _stat_value_and_grad(param, theta, key, data)

    return _adam_on(param, objective, cached, theta0, s, "moments-adam")
