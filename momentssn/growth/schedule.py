"""The growth schedule: sizes, training steps and which task cell each new cell plays.

:func:`make_schedule` checks ``grow``'s schedule arguments against a task once and
returns an immutable :class:`GrowthSchedule`; :func:`subtask` is the task as a grown
network sees it (its cells' raw inputs, its E cells' targets, in network order).
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..tasks import Task

__all__ = ["GrowthSchedule", "make_schedule", "growth_sizes", "subtask"]

StepsPerStage = Union[int, Sequence[int], Callable[[int, int, int], int]]


class GrowthSchedule(NamedTuple):
    """What ``grow`` does at each stage s = 0 .. len(sizes) - 1 (immutable).

    sizes: ((n_e, n_i), ..): the network size trained at stage s, from (1, 1) to the
        full size, growing at every stage.
    steps: (len(sizes),) training steps of stage s.
    target_order: the task E cells (= target dimensions) given to the E cells in the
        order they appear: the initial one, then one per E split.
    i_order: likewise the task I cells given to the I cells (all 0 when the task has
        no I cells: every I cell then reads a zero raw input).
    d_noise: number of noise sources of the ``Growing`` network (fixed while it grows).
    """

    sizes: Tuple[Tuple[int, int], ...]
    steps: Tuple[int, ...]
    target_order: Tuple[int, ...]
    i_order: Tuple[int, ...]
    d_noise: int

    @property
    def n_stages(self) -> int:
        return len(self.sizes)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def make_schedule(
    task: Task,
    *,
    n_exc: Optional[int] = None,
    n_inh: Optional[int] = None,
    sizes: Optional[Sequence[Tuple[int, int]]] = None,
    steps_per_stage: StepsPerStage = 100,
    target_order: Optional[Sequence[int]] = None,
    i_order: Optional[Sequence[int]] = None,
    d_noise: Optional[int] = None,
) -> GrowthSchedule:
    """Check ``grow``'s schedule arguments (see there) against ``task``; ``ValueError``
    naming the argument otherwise."""
    M = task.n_targets
    n_i_task = task.n_net - task.n_exc
    n_exc = M if n_exc is None else n_exc
    if isinstance(n_exc, bool) or int(n_exc) != n_exc or not 1 <= int(n_exc) <= M:
        raise ValueError(f"n_exc must be an integer in [1, {M}] (one target per E cell), got {n_exc!r}")
    n_exc = int(n_exc)
    if n_inh is None:
        n_inh = n_i_task or n_exc
    if isinstance(n_inh, bool) or int(n_inh) != n_inh or int(n_inh) < 1 or (n_i_task and int(n_inh) > n_i_task):
        limit = f" and <= the task's {n_i_task} I cells" if n_i_task else ""
        raise ValueError(f"n_inh must be an integer >= 1{limit}, got {n_inh!r}")
    n_inh = int(n_inh)
    sizes = growth_sizes(n_exc, n_inh) if sizes is None else _check_sizes(sizes, n_exc, n_inh)
    order = list(range(M)) if target_order is None else _check_order("target_order", target_order, M, n_exc)
    if i_order is not None:
        i_ord = _check_order("i_order", i_order, n_i_task or n_inh, n_inh)
    elif n_i_task == M:
        i_ord = list(order)
    else:
        i_ord = list(range(n_i_task or n_inh))
    if not n_i_task:
        i_ord = [0] * n_inh  # no I inputs: every I cell reads a zero raw input
    d_noise = _positive_int("d_noise", n_exc + n_inh if d_noise is None else d_noise)
    steps = tuple(_steps_for(steps_per_stage, s, *size) for s, size in enumerate(sizes))
    return GrowthSchedule(tuple(sizes), steps, tuple(order), tuple(i_ord), d_noise)


def growth_sizes(n_e: int, n_i: int) -> List[Tuple[int, int]]:
    """The default schedule: (1, 1), then one more E cell per stage, I cells in proportion.

    Stage s (s = 0 .. n_e - 1) has s + 1 E cells and max(1, round(n_i (s + 1) / n_e))
    I cells, so the E/I ratio is kept at every stage (one E and one I split per stage
    when n_i = n_e).  If n_e = 1 and n_i > 1: [(1, 1), (1, n_i)].
    """
    n_e, n_i = int(n_e), int(n_i)
    if n_e < 1 or n_i < 1:
        raise ValueError(f"n_e and n_i must be >= 1, got n_e={n_e}, n_i={n_i}")
    sizes = [(1, 1)]
    for s in range(2, n_e + 1):
        sizes.append((s, max(sizes[-1][1], int(round(n_i * s / n_e)))))
    if sizes[-1] != (n_e, n_i):
        sizes.append((n_e, n_i))
    return sizes


def _check_sizes(sizes, n_e: int, n_i: int) -> List[Tuple[int, int]]:
    try:
        sizes = [(int(a), int(b)) for a, b in sizes]
    except (TypeError, ValueError) as err:
        raise ValueError(f"sizes must be a sequence of (n_e, n_i) pairs, got {sizes!r}") from err
    if not sizes or sizes[0] != (1, 1):
        raise ValueError(f"sizes must start at (1, 1) (the initial 1 E + 1 I network), got {sizes[:1]}")
    if sizes[-1] != (n_e, n_i):
        raise ValueError(f"sizes must end at the full size (n_exc, n_inh) = {(n_e, n_i)}, got {sizes[-1]}")
    for a, b in zip(sizes, sizes[1:]):
        if b[0] < a[0] or b[1] < a[1] or b == a:
            raise ValueError(f"sizes must grow at every stage (no cell removed), got {a} -> {b}")
    return sizes


def _check_order(name: str, order, size: int, need: int) -> List[int]:
    try:
        out = [int(x) for x in order]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a sequence of ints, got {order!r}") from err
    if len(set(out)) != len(out) or any(not 0 <= x < size for x in out) or len(out) < need:
        raise ValueError(f"{name} must list >= {need} distinct indices in [0, {size}), got {order!r}")
    return out


def _steps_for(steps_per_stage, stage: int, n_e: int, n_i: int) -> int:
    if callable(steps_per_stage):
        k = steps_per_stage(stage, n_e, n_i)
    elif isinstance(steps_per_stage, (int, np.integer)):
        k = steps_per_stage
    else:
        seq = list(steps_per_stage)
        if stage >= len(seq):
            raise ValueError(f"steps_per_stage has {len(seq)} entries but the schedule has more stages")
        k = seq[stage]
    if isinstance(k, bool) or int(k) != k or int(k) < 0:
        raise ValueError(f"steps_per_stage must give integers >= 0, got {k!r} at stage {stage}")
    return int(k)


def subtask(task: Task, e_cells: Sequence[int], i_cells: Sequence[int]) -> Task:
    """The task seen by a grown network whose E cells are the task's E cells ``e_cells``
    and whose I cells are the task's I cells ``i_cells`` (in network order).

    inputs (S, n_e + n_i): E cell a reads task column e_cells[a], I cell b column
    task.n_exc + i_cells[b] (zero if the task has no I inputs); targets: the target
    dimensions e_cells, in that order.
    """
    e = np.asarray(e_cells, dtype=int)
    n_i_task = task.n_net - task.n_exc
    S = task.n_stimuli
    if n_i_task > 0:
        h_i = task.inputs[:, task.n_exc + np.asarray(i_cells, dtype=int)]
    else:
        h_i = np.zeros((S, len(i_cells)))
    return Task(
        inputs=np.concatenate([task.inputs[:, e], h_i], axis=1),
        target_mean=task.target_mean[:, e],
        target_cov=task.target_cov[:, e][:, :, e],
        contrasts=task.contrasts,
        n_exc=len(e),
        name=f"{task.name}[{len(e)}E+{len(i_cells)}I]",
    )
