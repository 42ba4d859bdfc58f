"""Split policies: which cell :func:`momentssn.growth.grow.grow` splits next.

A policy is any callable ``policy(ctx: SplitContext) -> cell index`` (one of
``ctx.candidates``); it is asked once per split, for E and for I splits.  Four are
provided as small objects, also known by name (``grow(split_policy="...")``):

=====================  ==============================================================
``"nearest_target"``   :class:`NearestTarget` (default): the E cell whose stationary
                       closure moments are closest (mean and variance terms of eq. 7)
                       to the new cell's target, so the copy starts as close to its
                       target as the network allows
``"largest_error"``    :class:`LargestError`: the E cell with the largest error on its
                       own target
``"round_robin"``      :class:`RoundRobin`: E cells (and I cells) in turn, by position
``"random"``           :class:`RandomCell`: uniformly, from ``ctx.rng``
=====================  ==============================================================

The two error-based policies split, for I, the *partner* of the E cell split in the
same stage (the I cell inhibiting it most strongly; :func:`strongest_inhibitor`), so
E/I pairs grow together, and fall back to round robin when the network has no
stable closure moments.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..losses.moment import LossWeights
from ..model import SSN
from ..moments import Moments
from ..tasks import Task

__all__ = [
    "SplitContext",
    "SplitPolicy",
    "NearestTarget",
    "LargestError",
    "RoundRobin",
    "RandomCell",
    "strongest_inhibitor",
    "POLICIES",
    "get_split_policy",
]


class SplitContext(NamedTuple):
    """What a split policy sees when it picks the cell to split (one split at a time).

    population: ``"E"`` or ``"I"``.
    candidates: indices of the cells of that population in ``net``.
    net: the current network.
    moments: its stationary closure moments on the task stimuli, mean (S, N), cov
        (S, N, N), or None when the network was not stable.
    targets: (n_e,) the target dimension of every E cell (network order).
    new_target: the target dimension the new E cell will get (None for I).
    e_parent: the E cell split earlier in this stage (None if none), for I splits.
    count: how many cells of this population were split before (all stages).
    rng: a ``numpy.random.Generator`` seeded by (seed, stage).
    task: the full task.
    """

    population: str
    candidates: Tuple[int, ...]
    net: SSN
    moments: Optional[Moments]
    targets: Tuple[int, ...]
    new_target: Optional[int]
    e_parent: Optional[int]
    count: int
    rng: np.random.Generator
    task: Task


#: A split policy: ``policy(ctx) -> index of the cell to split`` (one of ``ctx.candidates``).
SplitPolicy = Callable[[SplitContext], int]


@dataclasses.dataclass(frozen=True)
class RoundRobin:
    """Cells of the population in turn, by position: candidates[count % len(candidates)]."""

    name: ClassVar[str] = "round_robin"

    def __call__(self, ctx: SplitContext) -> int:
        return ctx.candidates[ctx.count % len(ctx.candidates)]


@dataclasses.dataclass(frozen=True)
class RandomCell:
    """A candidate drawn uniformly with ``ctx.rng`` (seeded by (seed, stage))."""

    name: ClassVar[str] = "random"

    def __call__(self, ctx: SplitContext) -> int:
        return ctx.candidates[int(ctx.rng.integers(len(ctx.candidates)))]


def strongest_inhibitor(ctx: SplitContext) -> int:
    """The I cell inhibiting the E cell split in this stage most strongly,
    argmax_b |W[e_parent, b]| over the candidates (round robin if no E cell was split)."""
    if ctx.e_parent is None:
        return RoundRobin()(ctx)
    W = np.asarray(ctx.net.W)
    cand = np.asarray(ctx.candidates)
    return int(cand[np.argmax(np.abs(W[ctx.e_parent, cand]))])


def cell_errors(ctx: SplitContext, dims: Sequence[int], weights: LossWeights) -> np.ndarray:
    """(n_e,) mean and variance terms of eq. 7 of every E cell a against target
    dimension dims[a], averaged over stimuli:
    c_mean (mu_a - mu*_d)^2 + c_var (var_a - var*_d)^2."""
    mu = np.asarray(ctx.moments.mean)[:, : len(dims)]
    var = np.diagonal(np.asarray(ctx.moments.cov), axis1=-2, axis2=-1)[:, : len(dims)]
    dims = np.asarray(dims)
    t_mu = ctx.task.target_mean[:, dims]
    t_var = np.diagonal(ctx.task.target_cov, axis1=-2, axis2=-1)[:, dims]
    err = weights.c_mean * (mu - t_mu) ** 2 + weights.c_var * (var - t_var) ** 2
    return err.mean(axis=0)


@dataclasses.dataclass(frozen=True)
class _ErrorBased:
    """E splits by the closure moments' errors (:meth:`pick`); I splits copy the
    strongest inhibitor of the E cell just split; round robin without moments."""

    weights: LossWeights = LossWeights()

    def __call__(self, ctx: SplitContext) -> int:
        if ctx.population == "I":
            return strongest_inhibitor(ctx)
        if ctx.moments is None:
            return RoundRobin()(ctx)
        return ctx.candidates[self.pick(ctx)]

    def pick(self, ctx: SplitContext) -> int:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class NearestTarget(_ErrorBased):
    """The E cell whose moments are closest to the *new* cell's target dimension."""

    name: ClassVar[str] = "nearest_target"

    def pick(self, ctx: SplitContext) -> int:
        return int(np.argmin(cell_errors(ctx, [ctx.new_target] * len(ctx.targets), self.weights)))


@dataclasses.dataclass(frozen=True)
class LargestError(_ErrorBased):
    """The E cell furthest from its *own* target."""

    name: ClassVar[str] = "largest_error"

    def pick(self, ctx: SplitContext) -> int:
        return int(np.argmax(cell_errors(ctx, ctx.targets, self.weights)))


#: The policies known by name.
POLICIES: Dict[str, SplitPolicy] = {p.name: p for p in (NearestTarget(), LargestError(), RoundRobin(), RandomCell())}


def get_split_policy(policy: Union[str, SplitPolicy]) -> SplitPolicy:
    """A policy object from its name (``POLICIES``) or a callable (returned as is)."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"split_policy must be one of {sorted(POLICIES)} or a callable, got {policy!r}")
        return POLICIES[policy]
    if callable(policy):
        return policy
    raise ValueError(f"split_policy must be a string or a callable, got {policy!r}")
