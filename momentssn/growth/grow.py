"""The growth loop (Soo & Lengyel, NeurIPS 2022): train, split, train again.

:func:`grow` starts from a stable 1 E + 1 I network and alternates "train K steps"
and "split" (one E and one I cell per stage by default) until the full size, in the
``Growing`` parameterization (``momentssn.params.growing``: sizes n_e, n_i free, Dale
signs, learnable input map), assigning each new E cell the next target dimension of
the task.  Every split is dynamics-neutral (``momentssn.growth.split``): right after
it the network's dynamics are those before it.  Which cell to split is a policy
(``momentssn.growth.policies``); sizes and steps per stage are a schedule
(``momentssn.growth.schedule``).  The state after every stage is a checkpoint
(``momentssn.training.checkpoint``, kind ``"growth"``), so an interrupted growth
resumes where it stopped.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import UnstableNetworkError
from ..losses._args import check_progress
from ..losses.closure import ClosureScore, network_closure_loss
from ..losses.moment import LossWeights
from ..model import SSN
from ..params.growing import Growing
from ..progress import Progress, ProgressFn, report
from ..tasks import Task
from ..training import adam
from ..training import checkpoint
from .policies import SplitContext, SplitPolicy, get_split_policy
from .schedule import GrowthSchedule, StepsPerStage, make_schedule, subtask
from .split import check_neuron_index, split_moments, split_neuron

__all__ = [
    "GrowthStage",
    "GrowthResult",
    "stable_initial_theta",
    "grow",
    "CHECKPOINT_NAME",
]

#: File name of grow's own checkpoint inside ``checkpoint_dir`` (stage s's training
#: checkpoints go to the folder ``stage_<s>`` beside it).
CHECKPOINT_NAME = "growth.npz"
_KIND = "growth"


class GrowthStage(NamedTuple):
    """One stage of :func:`grow`: train the network at this size, then split.

    n_e, n_i: network size during the stage's training.
    steps: training steps taken.
    loss: stationary closure loss (eq. 7, default weights) on the stage's targets after
        training (inf if unstable).
    stable: the closure had a stable fixed point for every stimulus after training.
    max_real_eig: largest real part of the Jacobian's eigenvalues over stimuli (1/ms).
    targets: (n_e,) target dimension (= task E cell) of every E cell, network order.
    i_cells: (n_i,) the task I cell played by every I cell, network order.
    splits: the splits done after training, ``(population, parent, new cell)`` each.
    train_history: what the train function reported (e.g. ``TrainResult.history``) as
        a dict of plain Python lists, or None.
    wall_time_s: seconds spent in the stage (training, checks and splits).
    """

    n_e: int
    n_i: int
    steps: int
    loss: float
    stable: bool
    max_real_eig: float
    targets: Tuple[int, ...]
    i_cells: Tuple[int, ...]
    splits: Tuple[Tuple[str, int, int], ...]
    train_history: Optional[dict]
    wall_time_s: float


class GrowthResult(NamedTuple):
    """Output of :func:`grow`.

    param: the final ``Growing`` parameterization (full size).
    theta: its (param.size,) parameters after the last stage's training.
    net: ``param.network(theta)``.
    targets: (n_e,) the target dimension (= task E cell) of every E cell of ``net``.
    i_cells: (n_i,) the task I cell played by every I cell of ``net``.
    task: the task as seen by ``net``: inputs (S, N) of its cells in network order,
        ``target_mean[:, a]`` the target of E cell a.  Evaluate ``param``/``net`` on it
        (e.g. ``ms.stationary_loss(param, theta, task.inputs, ...)``).
    stages: list of :class:`GrowthStage`.
    wall_time_s: total seconds (this call; resumed stages keep their own times).
    """

    param: Growing
    theta: np.ndarray
    net: SSN
    targets: Tuple[int, ...]
    i_cells: Tuple[int, ...]
    task: Task
    stages: List[GrowthStage]
    wall_time_s: float


class _State(NamedTuple):
    """Where growth stands between stages: what a checkpoint holds."""

    param: Growing
    theta: jax.Array
    e_cells: Tuple[int, ...]  # task E cell of every E cell, network order
    i_cells: Tuple[int, ...]  # task I cell of every I cell, network order
    counts: Tuple[int, int]  # E and I splits done so far (all stages)
    stages: Tuple[GrowthStage, ...]


# --------------------------------------------------------------------------- closure checks

# compiled: eager ops at ever new sizes would each compile
_network_and_inputs = jax.jit(lambda param, theta, h_raw: (param.network(theta), param.inputs(theta, h_raw)),
                              static_argnums=0)


def _closure_check(param: Growing, theta, task: Task, weights: LossWeights = LossWeights()) -> ClosureScore:
    """The stationary closure of ``param.network(theta)`` on ``task``: its loss (as
    ``momentssn.stationary_loss``, forward only), stability and moments."""
    theta = jnp.asarray(theta)
    net, h = _network_and_inputs(param, theta, jnp.asarray(task.inputs, theta.dtype))
    return network_closure_loss(net, h, task.target_mean, task.target_cov, weights)


def stable_initial_theta(
    task: Task,
    *,
    d_noise: int,
    e_cell: int = 0,
    i_cell: int = 0,
    seed: int = 0,
    scale: float = 0.1,
    max_attempts: int = 5,
    constants: Optional[dict] = None,
) -> Tuple[Growing, jax.Array]:
    """A 1 E + 1 I ``Growing`` network whose stationary closure is stable at every stimulus.

    The E cell plays the task's E cell ``e_cell`` (its input and target), the I cell
    the task's I cell ``i_cell``.  Attempt a (a = 0, 1, ..) draws
    ``init_params(seed + a, scale / 2^a)`` (log-normal jitter of relative size ~scale
    around Baseline15's summed weights, random noise directions); the first attempt
    whose closure has a converged fixed point with Re eig J < 0 for every stimulus is
    returned as (param, theta).

    Raises:
        UnstableNetworkError: no stable start after ``max_attempts`` attempts (the
            message lists the largest real eigenvalue of every attempt).
    """
    if isinstance(max_attempts, bool) or int(max_attempts) != max_attempts or int(max_attempts) < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    if not (math.isfinite(float(scale)) and float(scale) >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    check_neuron_index(e_cell, task.n_targets, "e_cell")
    if task.n_net > task.n_exc:
        check_neuron_index(i_cell, task.n_net - task.n_exc, "i_cell")
    param = Growing(n_e=1, n_i=1, d_noise=int(d_noise), **(constants or {}))
    sub = subtask(task, [e_cell], [i_cell])
    failures = []
    for a in range(int(max_attempts)):
        theta = param.to_theta(param.init_params(seed + a, float(scale) / 2.0**a))
        chk = _closure_check(param, theta, sub)
        if chk.stable:
            return param, theta
        failures.append((chk.max_real_eig, chk.converged))
    why = "; ".join(
        f"seed {seed + a}: " + ("" if conv else "Newton did not converge (the mean dynamics diverge), ")
        + f"largest Re eig of J {eig:.4g} /ms"
        for a, (eig, conv) in enumerate(failures)
    )
    raise UnstableNetworkError(
        f"no stable 1 E + 1 I initialization in {max_attempts} attempts ({why}); try another seed, "
        "a smaller init_scale or other constants",
        max_real_eig=float(max(e for e, _ in failures)),
    )


# --------------------------------------------------------------------------- trainers


def _takes_checkpoints(train) -> bool:
    """Whether a trainer accepts the ``checkpoint_dir`` and ``resume`` keywords."""
    try:
        params = inspect.signature(train).parameters
    except (TypeError, ValueError):
        return False
    return "checkpoint_dir" in params and "resume" in params


class _AdamTrainer(NamedTuple):
    """A built-in trainer (``train_fn="bptt"`` or ``"moments"``): ``momentssn.training.adam``
    on the stage's network, with its checkpoints in the folder grow gives it."""

    fn: Callable
    options: dict

    def __call__(self, param, task, theta, n_steps, seed, checkpoint_dir=None, resume=False):
        kw = dict(self.options)
        kw.setdefault("progress", None)  # silent unless train_options say otherwise
        return self.fn(param, task, theta0=theta, steps=n_steps, seed=seed, checkpoint_dir=checkpoint_dir,
                       resume=resume, **kw)


_TRAINERS = {"bptt": adam.train_bptt, "moments": adam.train_moments_adam}


def _resolve_train_fn(train_fn, train_options) -> Callable:
    if callable(train_fn):
        if train_options:
            raise ValueError("train_options only apply to train_fn='bptt' or 'moments'")
        return train_fn
    if train_fn not in _TRAINERS:
        raise ValueError(f"train_fn must be 'bptt', 'moments' or a callable, got {train_fn!r}")
    opts = dict(train_options or {})
    for key in ("checkpoint_dir", "resume"):
        if key in opts:
            raise ValueError(
                f"train_options must not set {key!r}: grow checkpoints each stage's training "
                "itself (pass checkpoint_dir / resume to grow)"
            )
    return _AdamTrainer(_TRAINERS[train_fn], opts)


def _has_files(folder: Optional[Path]) -> bool:
    return folder is not None and folder.is_dir() and any(folder.iterdir())


def _train_stage(train, state: _State, sub: Task, n_steps: int, seed: int, stage_dir: Optional[Path],
                 resume: bool):
    """Train one stage: (theta, history or None, steps taken)."""
    param, theta = state.param, state.theta
    if n_steps == 0:
        return theta, None, 0
    if stage_dir is not None and _takes_checkpoints(train):  # the trainer checkpoints the stage
        out = train(param, sub, theta, n_steps, seed, checkpoint_dir=stage_dir,
                    resume=resume and _has_files(stage_dir))
    else:
        out = train(param, sub, theta, n_steps, seed)
    history, taken = None, n_steps
    if hasattr(out, "theta"):
        history = getattr(out, "history", None)
        taken = int(getattr(out, "steps", n_steps))  # a time budget may stop it early
        out = out.theta
    theta = jnp.asarray(out, jnp.result_type(float))
    if theta.shape != (param.size,):
        raise ValueError(f"train_fn returned theta of shape {theta.shape}, expected ({param.size},)")
    return theta, history, taken


# --------------------------------------------------------------------------- splits


@functools.partial(jax.jit, static_argnums=(0, 1))
def _split_all(param: Growing, i: int, theta, net: SSN, moments):
    """Split neuron i of theta, of its network and of its moments (None stays None) in
    one compilation per size and index (eager gathers at ever new shapes would each
    compile)."""
    return param.split(theta, i)[1], split_neuron(net, i), None if moments is None else split_moments(moments, i)


def _split_stage(state: _State, target_size: Tuple[int, int], schedule: GrowthSchedule,
                 policy: SplitPolicy, net: SSN, moments, task: Task, rng) -> Tuple[_State, tuple]:
    """Split cells (E first, then I) until ``target_size``; (new state, splits done)."""
    param, theta = state.param, state.theta
    e_cells, i_cells, counts = list(state.e_cells), list(state.i_cells), list(state.counts)
    splits, e_parent = [], None
    while (param.n_e, param.n_i) != tuple(target_size):
        pop = "E" if param.n_e < target_size[0] else "I"
        cand = tuple(range(param.n_e)) if pop == "E" else tuple(range(param.n_e, param.N))
        new_target = schedule.target_order[len(e_cells)] if pop == "E" else None
        ctx = SplitContext(pop, cand, net, moments, tuple(e_cells), new_target, e_parent,
                           counts[pop == "I"], rng, task)
        i = policy(ctx)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or int(i) not in cand:
            raise ValueError(f"split_policy returned {i!r}, not one of the {pop} cells {cand}")
        i = int(i)
        theta, net, moments = _split_all(param, i, theta, net, moments)
        param = param.grown(i)
        if pop == "E":
            e_cells.insert(i + 1, new_target)
            e_parent = i
        else:
            b = i - param.n_e  # position among the I cells (before the copy)
            i_cells.insert(b + 1, schedule.i_order[len(i_cells)])
        counts[pop == "I"] += 1
        splits.append((pop, i, i + 1))
    new = state._replace(param=param, theta=theta, e_cells=tuple(e_cells), i_cells=tuple(i_cells),
                         counts=tuple(counts))
    return new, tuple(splits)


# --------------------------------------------------------------------------- checkpoints


def _plain_history(history) -> Optional[dict]:
    """A trainer's history as plain Python lists (numbers kept exactly, NaN and inf
    included), or None."""
    if history is None:
        return None
    if hasattr(history, "_asdict"):
        history = history._asdict()
    if not isinstance(history, dict):
        return {"history": np.asarray(history).tolist()}
    return {str(k): np.asarray(v).tolist() for k, v in history.items()}


def _save_state(folder: Path, state: _State, next_stage: int) -> None:
    """Checkpoint kind "growth": theta and the numeric training histories as arrays
    (exact, NaN and inf included), everything else in the JSON header."""
    arrays, stages = {"theta": np.asarray(state.theta, np.float64)}, []
    for s, stage in enumerate(state.stages):
        st = stage._asdict()
        if st["train_history"] is not None:
            rest = {}
            for key, value in st["train_history"].items():
                a = np.asarray(value)
                if a.dtype.kind in "biuf":
                    arrays[f"history.{s}.{key}"] = a
                else:
                    rest[key] = value
            st["train_history"] = rest
        stages.append(st)
    meta = dict(next_stage=next_stage, constants=state.param.constants(), e_cells=state.e_cells,
                i_cells=state.i_cells, counts=state.counts, stages=stages)
    checkpoint.save(folder, _KIND, arrays, meta, name=CHECKPOINT_NAME)


def _stage_from_json(st: dict, arrays: dict, s: int) -> GrowthStage:
    st = dict(st)
    st["loss"] = math.inf if st["loss"] is None else float(st["loss"])  # strict JSON: inf -> null
    st["max_real_eig"] = math.nan if st["max_real_eig"] is None else float(st["max_real_eig"])
    st["targets"] = tuple(st["targets"])
    st["i_cells"] = tuple(st["i_cells"])
    st["splits"] = tuple(tuple(x) for x in st["splits"])
    if st["train_history"] is not None:
        prefix = f"history.{s}."
        numeric = {k[len(prefix):]: v.tolist() for k, v in arrays.items() if k.startswith(prefix)}
        st["train_history"] = dict(st["train_history"], **numeric)
    return GrowthStage(**st)


def _load_state(ck: checkpoint.Checkpoint) -> Tuple[_State, int]:
    meta = ck.meta
    consts = dict(meta["constants"])
    consts.pop("m", None)
    state = _State(
        param=Growing(**consts),
        theta=jnp.asarray(ck.arrays["theta"], jnp.result_type(float)),
        e_cells=tuple(meta["e_cells"]),
        i_cells=tuple(meta["i_cells"]),
        counts=tuple(meta["counts"]),
        stages=tuple(_stage_from_json(st, ck.arrays, s) for s, st in enumerate(meta["stages"])),
    )
    return state, int(meta["next_stage"])


def _resume(folder: Path, schedule: GrowthSchedule) -> Optional[Tuple[_State, int, Path]]:
    """The state to resume from, or None when the run stopped inside stage 0's training
    (its trainer checkpoint is in ``stage_0``; the initial network is rebuilt from the
    seed).  ``FileNotFoundError`` naming the folder if there is neither."""
    try:
        ck = checkpoint.load(folder, _KIND, CHECKPOINT_NAME)
    except FileNotFoundError:
        if _has_files(folder / "stage_0"):
            return None
        raise
    state, start = _load_state(ck)
    if start < schedule.n_stages and (state.param.n_e, state.param.n_i) != schedule.sizes[start]:
        raise ValueError(
            f"the checkpoint in {folder} is at size {(state.param.n_e, state.param.n_i)}, which is not "
            f"stage {start} of this schedule ({schedule.sizes[start]}): resume with the same sizes"
        )
    return state, start, checkpoint.path_of(folder, CHECKPOINT_NAME)


# --------------------------------------------------------------------------- the loop


def grow(
    task: Task,
    *,
    n_exc: Optional[int] = None,
    n_inh: Optional[int] = None,
    sizes: Optional[Sequence[Tuple[int, int]]] = None,
    steps_per_stage: StepsPerStage = 100,
    split_policy: Union[str, SplitPolicy] = "nearest_target",
    target_order: Optional[Sequence[int]] = None,
    i_order: Optional[Sequence[int]] = None,
    train_fn: Union[str, Callable] = "bptt",
    train_options: Optional[dict] = None,
    d_noise: Optional[int] = None,
    seed: int = 0,
    init_scale: float = 0.1,
    max_init_attempts: int = 5,
    constants: Optional[dict] = None,
    checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
    resume: bool = False,
    progress: Optional[ProgressFn] = None,
) -> GrowthResult:
    """Grow an SSN by dynamics-neutral splits, training between splits.

    Schedule (stage s = 0 .. len(sizes) - 1): train the network of size sizes[s] for
    ``steps_per_stage`` steps on its targets, then split cells up to sizes[s + 1]
    (E splits first, then I).  Stage 0 is a stable 1 E + 1 I network
    (:func:`stable_initial_theta`); the last stage trains at the full size and does
    not split.  Every split is ``Growing.split`` (= ``split_neuron``): right after a
    split the network's dynamics are those before it.

    Cells and targets: every cell of the grown network plays one cell of the task
    (its raw input column; for E cells also its target dimension).  The initial E
    cell is task E cell ``target_order[0]``, and each new E cell is the next one of
    ``target_order``, so a network with n E cells is trained on target_order[:n]
    (restricted ``target_mean``/``target_cov``, ordered like the network's E cells);
    likewise new I cells take the next task I cell of ``i_order``.  A new cell starts
    as an exact copy of its parent (its input row of G reads the parent's raw input;
    its own raw input enters with weight 0) and specializes in training.

    Which cell to split: ``split_policy``, a name of ``momentssn.growth.policies``
    (``"nearest_target"`` (default), ``"largest_error"``, ``"round_robin"``,
    ``"random"``) or any callable ``policy(ctx: SplitContext) -> cell index`` (for E
    and I splits).  E/I balance: the default ``sizes`` (``growth_sizes``) split one E
    and one I cell per stage when n_inh = n_exc (I cells in proportion otherwise).

    Args:
        task: the full task (``task.inputs`` (S, N_net): raw inputs of its E then I cells).
        n_exc: final number of E cells, <= task.n_targets (default task.n_targets).
        n_inh: final number of I cells, <= the task's I cells if it has any (default
            task.n_net - task.n_exc, or n_exc if the task has no I inputs, in which
            case I cells get raw input 0).
        sizes: the schedule, a list of (n_e, n_i) from (1, 1) to (n_exc, n_inh), growing
            at every stage (default ``growth_sizes``); e.g. doubling:
            [(1, 1), (2, 2), (4, 4)].
        steps_per_stage: training steps per stage: an int, a sequence (one per stage)
            or ``f(stage, n_e, n_i) -> int``.
        split_policy: see above.
        target_order: order in which E cells get the task's E cells / target
            dimensions (>= n_exc distinct entries; default 0, 1, 2, ..).
        i_order: order in which I cells get the task's I cells (default: target_order
            when the task has as many I as E cells, else 0, 1, 2, ..).
        train_fn: ``"bptt"`` (default: ``momentssn.training.adam.train_bptt``, simulated
            moments, Adam), ``"moments"`` (``train_moments_adam``, closure moments,
            Adam) or a callable ``train_fn(param, task, theta, n_steps, seed) -> theta``
            (or an object with ``.theta`` and optionally ``.history`` and ``.steps``,
            e.g. a ``TrainResult``); if it also takes ``checkpoint_dir`` and ``resume``
            keywords, ``grow`` passes them (see ``checkpoint_dir``).
        train_options: keyword arguments for the ``"bptt"``/``"moments"`` trainers
            (e.g. ``learning_rate``, ``n_trials``, ``t_max``, ``checkpoint_every``).
        d_noise: number of noise sources (columns of the noise factor), fixed during
            growth; default the final size n_exc + n_inh.
        seed: seeds the initialization, the training of stage s (seed + s) and the
            ``"random"`` policy.
        init_scale, max_init_attempts: see :func:`stable_initial_theta`.
        constants: fixed constants of ``Growing`` (tau_e, tau_i, tau_noise, k, n).
        checkpoint_dir: if given, the state after every stage (parameters, cells,
            history) is written atomically to ``checkpoint_dir/growth.npz``
            (``momentssn.training.checkpoint``, kind ``"growth"``); the training of
            stage s also checkpoints into ``checkpoint_dir/stage_<s>`` when the trainer
            takes ``checkpoint_dir`` and ``resume`` keywords (the built-in ones do).
        resume: continue from the checkpoint in ``checkpoint_dir``: the stage that was
            interrupted goes on from its training checkpoint (bit-identically with the
            built-in trainers), or is redone if the trainer has none.  Without any
            checkpoint there (neither ``growth.npz`` nor a ``stage_0`` training
            checkpoint) it raises ``FileNotFoundError`` naming the folder.
        progress: ``ProgressFn`` called once per stage (task ``"growth"``, step = stages
            done, the closure loss, a message with the size and steps) and on resume;
            ``None`` (default): silent.

    Returns:
        :class:`GrowthResult`.  A stage whose closure is not stable after training is
        recorded (``stable=False``) with a ``RuntimeWarning``.
    """
    t_start = time.perf_counter()
    if not isinstance(task, Task):
        raise ValueError(f"task must be a momentssn Task, got {type(task).__name__}")
    schedule = make_schedule(task, n_exc=n_exc, n_inh=n_inh, sizes=sizes, steps_per_stage=steps_per_stage,
                             target_order=target_order, i_order=i_order, d_noise=d_noise)
    policy = get_split_policy(split_policy)
    train = _resolve_train_fn(train_fn, train_options)
    progress = check_progress(progress)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)

    found = _resume(folder, schedule) if resume else None
    if found is not None:
        state, start, path = found
        report(progress, Progress("growth", start, schedule.n_stages, elapsed_s=time.perf_counter() - t_start,
                                  message=f"resumed from {path} at stage {start + 1}/{schedule.n_stages}"))
    else:
        param, theta = stable_initial_theta(
            task, d_noise=schedule.d_noise, e_cell=schedule.target_order[0], i_cell=schedule.i_order[0],
            seed=seed, scale=init_scale, max_attempts=max_init_attempts, constants=constants,
        )
        state = _State(param, theta, schedule.target_order[:1], schedule.i_order[:1], (0, 0), ())
        start = 0
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    for s in range(start, schedule.n_stages):
        state = _run_stage(state, s, schedule, task, train, policy, seed, folder, resume and s == start)
        st = state.stages[-1]
        report(progress, Progress(
            "growth", s + 1, schedule.n_stages, loss=st.loss, elapsed_s=time.perf_counter() - t_start,
            message=f"stage {s + 1}/{schedule.n_stages}: {st.n_e} E + {st.n_i} I, {st.steps} steps, "
                    f"closure loss {st.loss:.4g}{'' if st.stable else ' (UNSTABLE)'}, {st.wall_time_s:.1f} s",
        ))
        if folder is not None:
            _save_state(folder, state, s + 1)

    theta = np.asarray(state.theta, np.float64)
    final = jnp.asarray(theta, jnp.result_type(float))
    return GrowthResult(
        param=state.param, theta=theta, net=state.param.network(final), targets=state.e_cells,
        i_cells=state.i_cells, task=subtask(task, state.e_cells, state.i_cells), stages=list(state.stages),
        wall_time_s=time.perf_counter() - t_start,
    )


def _run_stage(state: _State, s: int, schedule: GrowthSchedule, task: Task, train, policy: SplitPolicy,
               seed: int, folder: Optional[Path], resume: bool) -> _State:
    """Stage s: train at sizes[s], check the closure, split up to sizes[s + 1]."""
    t0 = time.perf_counter()
    sub = subtask(task, state.e_cells, state.i_cells)
    stage_dir = None if folder is None else folder / f"stage_{s}"
    theta, history, taken = _train_stage(train, state, sub, schedule.steps[s], seed + s, stage_dir, resume)
    trained = state._replace(theta=theta)
    chk = _closure_check(state.param, theta, sub)
    if not chk.stable:
        warnings.warn(
            f"grow: after training stage {s} ({state.param.n_e} E + {state.param.n_i} I) the stationary "
            f"closure is not stable for every stimulus (largest Re eig {chk.max_real_eig:.4g} /ms)",
            RuntimeWarning,
            stacklevel=3,
        )
    splits = ()
    if s + 1 < schedule.n_stages:
        net = _network_and_inputs(state.param, theta, jnp.asarray(sub.inputs, theta.dtype))[0]
        rng = np.random.default_rng([seed, s])
        trained, splits = _split_stage(trained, schedule.sizes[s + 1], schedule, policy, net, chk.moments,
                                       task, rng)
    stage = GrowthStage(
        n_e=schedule.sizes[s][0], n_i=schedule.sizes[s][1], steps=taken, loss=chk.loss, stable=chk.stable,
        max_real_eig=chk.max_real_eig, targets=state.e_cells, i_cells=state.i_cells, splits=splits,
        train_history=_plain_history(history), wall_time_s=time.perf_counter() - t0,
    )
    return trained._replace(stages=state.stages + (stage,))
