"""Dynamics-neutral growth of an SSN (Soo & Lengyel, NeurIPS 2022).

Splitting neuron i of an N-cell network gives an (N+1)-cell network in which cell
i+1 is a copy of cell i.  With the (N+1) x N duplication matrix P (row i+1 of P
equals row i; ``duplication_index`` gives its column of ones per row) and
D = diag(1, .., 1/2, 1/2, .., 1) halving the two copies' columns::

    W'         = P W P^T D          (incoming rows copied, outgoing columns halved)
    tau'       = P tau,   h' = P h
    Sigma_eta' = P Sigma_eta P^T    (the copy gets cell i's noise: correlation 1)

Why this is *neutral*: if u_{i+1}(t) = u_i(t), the two halves together deliver
W_ji r(u_i) / 2 + W_ji r(u_i) / 2 = W_ji r(u_i) to every cell j, exactly what cell
i delivered before; and the copy, with the same incoming weights, input, noise and
initial state as cell i, obeys the same equation as cell i, so u_{i+1} = u_i is
consistent.  Hence every trajectory of the old cells is unchanged (for the same
noise realization: simulate with ``noise_factor = P L``, see
:func:`split_noise_factor`), and so are the stationary closure moments
(:func:`split_moments` gives the split network's moments exactly).  The extra
eigenvalue of the Jacobian is -1/tau_i (the difference mode u_i - u_{i+1} just
leaks), so a stable network stays stable.  Halving the *incoming* weights and
copying the outgoing ones (as in the published code of the growth paper) is not
neutral: each copy then receives half of cell i's recurrent input, and the pair
sends out twice what cell i sent.

:func:`grow` starts from a stable 1 E + 1 I network and alternates "train K steps"
and "split" (one E and one I cell per stage by default) until the full size, in the
:class:`Growing` parameterization (sizes n_e, n_i free, Dale signs, learnable input
map), assigning each new E cell the next target dimension of the task.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable, ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..losses.moment import LossWeights, loss_per_stimulus
from ..model import SSN
from ..moments import Moments
from ..params.base import (
    _INPUT_FIELDS,
    Field,
    Parameterization,
    input_nonlinearity,
    register_parameterization,
    von_mises_kernel,
)
from ..closure.stationary import stationary_solve
from ..tasks import Task

__all__ = [
    "duplication_index",
    "split_neuron",
    "split_inputs",
    "split_noise_factor",
    "split_moments",
    "Growing",
    "SplitContext",
    "GrowthStage",
    "GrowthResult",
    "growth_sizes",
    "stable_initial_theta",
    "grow",
]

_LOG2 = math.log(2.0)


# =========================================================================== network level


def _check_index(i, N: int, name: str = "i") -> int:
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
        raise ValueError(f"{name} must be an int neuron index in [0, {N}), got {i!r}")
    i = int(i)
    if not 0 <= i < N:
        raise ValueError(f"{name} must be a neuron index in [0, {N}), got {i}")
    return i


def duplication_index(N: int, i: int) -> np.ndarray:
    """(N+1,) int source cell of every cell of the split network: 0..i, i, i+1..N-1.

    Row a of the duplication matrix P is e_{src[a]}, so ``x[src] = P x`` and
    ``A[src][:, src] = P A P^T``.
    """
    N = int(N)
    if N < 1:
        raise ValueError(f"N must be >= 1, got {N}")
    i = _check_index(i, N)
    return np.insert(np.arange(N), i + 1, i)


def split_neuron(net: SSN, i: int) -> SSN:
    """The network with neuron ``i`` split in two: a dynamics-neutral copy at i+1.

        W' = P W P^T D,  tau' = P tau,  Sigma_eta' = P Sigma_eta P^T

    (module docstring): the copy has cell i's incoming weights, time constant and
    noise (duplicated row and column of ``noise_cov``, so Sigma_eta' is singular),
    and each of the two copies sends *half* of cell i's outgoing weights.  Give it
    the input :func:`split_inputs` (h' = P h).  The copy is E iff cell i is E
    (``n_exc`` grows by one when i < n_exc), so E cells stay first and Dale's law is
    kept.  Pure and traceable in the leaves of ``net``; ``i`` is a static int.

    Args:
        net: an N-cell ``SSN``.
        i: index of the neuron to split, 0 <= i < N.

    Returns:
        The (N+1)-cell ``SSN``; k, n, tau_noise unchanged.
    """
    if not isinstance(net, SSN):
        raise ValueError(f"net must be an SSN, got {type(net).__name__}")
    N = net.N
    i = _check_index(i, N)
    src = duplication_index(N, i)
    half = np.ones(N + 1)
    half[[i, i + 1]] = 0.5  # D: halve the two copies' outgoing columns (exact in binary)
    W = net.W[src][:, src] * jnp.asarray(half, net.W.dtype)[None, :]
    n_exc = net.n_exc
    if n_exc is not None and i < n_exc:
        n_exc = n_exc + 1
    leaves = (W, net.tau[src], net.noise_cov[src][:, src], net.tau_noise, net.k, net.n)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return SSN.tree_unflatten(n_exc, leaves)
    return SSN(*leaves, n_exc=n_exc)


def split_inputs(h, i: int):
    """The input of the split network: h' = P h, cell i's input copied to i+1.

    Args:
        h: (..., N) input (mV) or any per-cell quantity (e.g. raw inputs).
        i: the neuron split (as in :func:`split_neuron`).

    Returns:
        (..., N+1).
    """
    h = jnp.asarray(h)
    if h.ndim < 1:
        raise ValueError(f"h must have shape (..., N), got a scalar")
    return h[..., duplication_index(h.shape[-1], i)]


def split_noise_factor(L, i: int):
    """The noise factor of the split network: L' = P L (row i copied to i+1).

    If L L^T = Sigma_eta (L (N, D), e.g. a Cholesky factor), then L' L'^T =
    P Sigma_eta P^T is the split network's ``noise_cov``.  Pass L to
    ``simulate(net, ..., noise_factor=L)`` and L' to ``simulate(split_neuron(net, i),
    ..., noise_factor=L')`` with the same seed: both runs draw the same D standard
    normals per step, so every old cell gets the same noise and the copy gets cell
    i's noise.

    Args:
        L: (N, D) noise factor (mV).
        i: the neuron split.

    Returns:
        (N+1, D).
    """
    L = jnp.asarray(L)
    if L.ndim != 2:
        raise ValueError(f"L must be an (N, D) matrix, got shape {L.shape}")
    return L[duplication_index(L.shape[0], i)]


def split_moments(moments: Moments, i: int) -> Moments:
    """The moments of the split network: mean' = P mean, cov' = P cov P^T.

    Exact for the stationary closure and for the true stationary law (the copy equals
    cell i at all times), so useful as a warm start after a split.  mean (..., N) ->
    (..., N+1), cov (..., N, N) -> (..., N+1, N+1).
    """
    mean, cov = jnp.asarray(moments.mean), jnp.asarray(moments.cov)
    N = mean.shape[-1]
    if cov.shape[-2:] != (N, N):
        raise ValueError(f"moments.cov must be (..., {N}, {N}) to match the mean, got {cov.shape}")
    src = duplication_index(N, i)
    return Moments(mean[..., src], cov[..., src, :][..., :, src])


# =========================================================================== parameterization


@functools.lru_cache(maxsize=1)
def _two_population_defaults() -> Dict[str, float]:
    """Summed weights (mV/Hz) and noise variances (mV^2) of Baseline15's default network.

    w_XY = a_XY sum_j K_0j(d_XY) on the 50-site ring (the uniform mode of the ring:
    W_EE 0.47, W_EI 0.44, W_IE 0.76, W_II 0.38), var = var_X + the 0.01 jitter.
    Stable on the published task inputs (see ``Baseline15``).
    """
    from ..params.base import BASELINE15_DEFAULTS as b

    ksum = lambda d: float(np.sum(np.asarray(von_mises_kernel(50, d))[0]))  # noqa: E731
    return {
        "w_ee": b["a_ee"] * ksum(b["d_ee"]),
        "w_ei": b["a_ei"] * ksum(b["d_ei"]),
        "w_ie": b["a_ie"] * ksum(b["d_ie"]),
        "w_ii": b["a_ii"] * ksum(b["d_ii"]),
        "var_e": b["var_e"] + 0.01,
        "var_i": b["var_i"] + 0.01,
        "in_a": b["in_a"],
        "in_b": b["in_b"],
        "in_p": b["in_p"],
    }


@register_parameterization
@dataclasses.dataclass(frozen=True)
class Growing(Parameterization):
    """A size-varying SSN parameterization: n_e E cells then n_i I cells, everything free.

        W_ab = s_b w_abs_ab            (s_b = +1 E, -1 I: Dale's law; w_abs log-parameterized)
        Sigma_eta = L L^T               (L = ``mix`` (N, d_noise) mV, any sign)
        h = in_a [G h~ + in_b]_+^in_p   (G = ``f_in`` (N, N), any sign; h~ (..., N))

    h~ is the raw input of every cell, as in every parameterization (a task's
    ``inputs`` (S, N)); G mixes it (identity: each cell reads its own raw input, the
    ``Parameterization`` input map).  tau = tau_e (E), tau_i (I); tau_noise, k, n
    fixed (dataclass fields, as in ``Parameterization``).  Parameters, in theta order:
    ``w_abs`` (N, N) mV/Hz, ``mix`` (N, d_noise) mV, ``f_in`` (N, N), ``in_a in_b
    in_p``: 2 N^2 + N d_noise + 3 numbers.

    ``d_noise`` (the number of noise sources) stays fixed while the network grows;
    choose d_noise >= the final N so that the final noise covariance can reach full
    rank.  The inherited field ``m`` is not used (it is set to n_e).

    Noise after a split: the copy's row of L equals its parent's (correlation 1, as
    neutrality requires).  Under plain gradient descent the rows of L stay in their
    initial row space (dF/dL = 2 (dF/dSigma) L), so private noise for a copy can only
    appear through optimizers that are not rotation-equivariant (Adam's per-coordinate
    scaling) -- a singular Sigma_eta is on the boundary of the PSD cone, where every
    smooth unconstrained parameterization has a zero derivative outwards.  The
    covariance of u is still full rank when (J, L) is controllable.

    :meth:`split` is :func:`split_neuron` at the parameter level (see there).
    """

    n_e: int = 1
    n_i: int = 1
    d_noise: int = 2

    kind: ClassVar[str] = "growing"

    def __post_init__(self):
        for name in ("n_e", "n_i", "d_noise"):
            val = getattr(self, name)
            if isinstance(val, bool) or int(val) != val or int(val) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
            object.__setattr__(self, name, int(val))
        object.__setattr__(self, "m", self.n_e)
        super().__post_init__()

    # ---- layout
    @property
    def N(self) -> int:
        """Number of cells, n_e + n_i."""
        return self.n_e + self.n_i

    @property
    def fields(self) -> Tuple[Field, ...]:
        N = self.N
        return (
            Field("w_abs", (N, N), "positive", "mV/Hz"),
            Field("mix", (N, self.d_noise), "real", "mV"),
            Field("f_in", (N, N), "real", ""),
        ) + _INPUT_FIELDS

    def dale_signs(self) -> jax.Array:
        """(N,) presynaptic signs: +1 for the n_e E columns, -1 for the n_i I columns."""
        return jnp.asarray(np.r_[np.ones(self.n_e), -np.ones(self.n_i)], jnp.result_type(float))

    def tau(self) -> jax.Array:
        """(N,) membrane time constants (ms): tau_e for E cells, tau_i for I cells."""
        return jnp.asarray(np.r_[np.full(self.n_e, self.tau_e), np.full(self.n_i, self.tau_i)],
                           jnp.result_type(float))

    # ---- network and input
    def connectivity(self, params) -> jax.Array:
        """W = w_abs * s[None, :] (N, N), mV/Hz."""
        return params["w_abs"] * self.dale_signs()[None, :]

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta = L L^T (N, N), mV^2."""
        L = params["mix"]
        return L @ L.T

    def network_from_params(self, params) -> SSN:
        """The ``SSN`` (n_exc = n_e) for physical params (traceable)."""
        params = {k: jnp.asarray(v) for k, v in params.items()}
        S = self.noise_covariance(params)
        return SSN(self.connectivity(params), self.tau(), 0.5 * (S + S.T), self.tau_noise,
                   self.k, self.n, n_exc=self.n_e)

    def noise_factor(self, theta) -> jax.Array:
        """L = ``mix`` (N, d_noise), L L^T = noise_cov: for ``simulate(..., noise_factor=L)``."""
        return self.field(theta, "mix")

    def inputs(self, theta, h_raw) -> jax.Array:
        """h = in_a [G h~ + in_b]_+^in_p (mV); h_raw (..., N) -> (..., N).  Traceable."""
        h_raw = jnp.asarray(h_raw)
        if h_raw.shape[-1:] != (self.N,):
            raise ValueError(f"h_raw must have shape (..., {self.N}), got {h_raw.shape}")
        G = self.field(theta, "f_in")
        return input_nonlinearity(
            h_raw @ G.T, self.field(theta, "in_a"), self.field(theta, "in_b"), self.field(theta, "in_p")
        )

    # ---- initialization
    def init_params(self, seed: int = 0, scale: float = 0.0) -> Dict[str, object]:
        """Physical params of a network with Baseline15's summed weights, at any size.

        Every E -> E weight is w_EE / n_e times exp(scale g) (g ~ N(0, 1)), and so on
        for the four blocks (w_XY from ``Baseline15``'s default network summed over the
        ring: 0.47, 0.44, 0.76, 0.38 mV/Hz), so the population-averaged network is the
        same at every size.  Row a of L is sqrt(var_X) times a random unit vector of
        R^d_noise (var_E = 3.01, var_I = 1.51 mV^2: every noise source used).  G = I
        (each cell reads its own raw input); in_a = 2 mV, in_b = 2, in_p = 1
        (Baseline15's).  Deterministic given ``seed``.
        """
        d = dict(_two_population_defaults())
        rng = np.random.default_rng(seed)
        ne, ni = self.n_e, self.n_i
        blocks = np.block([
            [np.full((ne, ne), d["w_ee"] / ne), np.full((ne, ni), d["w_ei"] / ni)],
            [np.full((ni, ne), d["w_ie"] / ne), np.full((ni, ni), d["w_ii"] / ni)],
        ])
        w_abs = blocks * np.exp(float(scale) * rng.standard_normal(blocks.shape))
        dirs = rng.standard_normal((self.N, self.d_noise))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        std = np.sqrt(np.r_[np.full(ne, d["var_e"]), np.full(ni, d["var_i"])])
        return {"w_abs": w_abs, "mix": std[:, None] * dirs, "f_in": np.eye(self.N),
                "in_a": d["in_a"], "in_b": d["in_b"], "in_p": d["in_p"]}

    def default_params(self) -> Dict[str, object]:
        """``init_params(seed=0, scale=0)``."""
        return self.init_params()

    # ---- growth
    def split(self, theta, i: int) -> Tuple["Growing", jax.Array]:
        """Split neuron i at the parameter level: (the grown parameterization, theta').

        In the unconstrained coordinates, with P the duplication matrix and P0 = P with
        the copy's row zeroed::

            log w_abs' = P log w_abs P^T - log 2 (columns i and i+1)   (W' = P W P^T D)
            L'         = P L                                           (noise factor)
            G'         = P G P0^T                                      (input mixing)

        in_a, in_b, in_p unchanged.  So ``network(theta')`` equals
        ``split_neuron(network(theta), i)`` (up to the rounding of exp(t - log 2) vs
        exp(t) / 2), ``noise_factor(theta') = split_noise_factor(noise_factor(theta), i)``
        and, for any raw input h~' of the grown network whose old cells see the old
        h~ (the copy's own raw input column is free: G' ignores it until trained),
        ``inputs(theta', h~') = split_inputs(inputs(theta, h~), i)``.  The copy is E iff
        i < n_e.  Traceable in theta.
        """
        theta = self._check_theta(theta)
        i = _check_index(i, self.N)
        new = dataclasses.replace(self, n_e=self.n_e + (i < self.n_e), n_i=self.n_i + (i >= self.n_e))
        return new, _split_theta(self, theta, i)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _split_theta(param: Growing, theta: jax.Array, i: int) -> jax.Array:
    """theta' of :meth:`Growing.split` (compiled once per size and i: eager gathers at
    ever new shapes would each compile)."""
    src = duplication_index(param.N, i)
    raw = {name: theta[a:b].reshape(f.shape) for name, (a, b, f) in param._slices().items()}
    shift = np.zeros(param.N + 1)
    shift[[i, i + 1]] = _LOG2
    w = raw["w_abs"][src][:, src] - jnp.asarray(shift, theta.dtype)[None, :]
    G = raw["f_in"][src][:, src].at[:, i + 1].set(0.0)
    parts = [w, raw["mix"][src], G] + [raw[f.name] for f in _INPUT_FIELDS]
    return jnp.concatenate([jnp.ravel(p) for p in parts])


# compiled variants used inside the growth loop (eager ops at ever new shapes each compile)
_split_neuron_jit = jax.jit(split_neuron, static_argnums=1)
_split_moments_jit = jax.jit(split_moments, static_argnums=1)
_network_and_inputs = jax.jit(lambda param, theta, h_raw: (param.network(theta), param.inputs(theta, h_raw)),
                              static_argnums=0)
_loss_per_stimulus_jit = jax.jit(loss_per_stimulus)


# =========================================================================== growth


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


def _cell_errors(ctx: SplitContext, dims: Sequence[int], weights: LossWeights) -> np.ndarray:
    """(n_e,) per-cell mean and variance terms of eq. 7 of every E cell against target
    dimension dims[a], averaged over stimuli."""
    mu = np.asarray(ctx.moments.mean)[:, : len(dims)]
    var = np.diagonal(np.asarray(ctx.moments.cov), axis1=-2, axis2=-1)[:, : len(dims)]
    dims = np.asarray(dims)
    t_mu = ctx.task.target_mean[:, dims]
    t_var = np.diagonal(ctx.task.target_cov, axis1=-2, axis2=-1)[:, dims]
    err = weights.c_mean * (mu - t_mu) ** 2 + weights.c_var * (var - t_var) ** 2
    return err.mean(axis=0)


def _round_robin(ctx: SplitContext) -> int:
    return ctx.candidates[ctx.count % len(ctx.candidates)]


def _random(ctx: SplitContext) -> int:
    return ctx.candidates[int(ctx.rng.integers(len(ctx.candidates)))]


def _partner(ctx: SplitContext) -> int:
    """The I cell inhibiting the E cell just split most strongly (round robin if none)."""
    if ctx.e_parent is None:
        return _round_robin(ctx)
    W = np.asarray(ctx.net.W)
    cand = np.asarray(ctx.candidates)
    return int(cand[np.argmax(np.abs(W[ctx.e_parent, cand]))])


def _nearest_target(ctx: SplitContext) -> int:
    if ctx.population == "I":
        return _partner(ctx)
    if ctx.moments is None:
        return _round_robin(ctx)
    err = _cell_errors(ctx, [ctx.new_target] * len(ctx.targets), LossWeights())
    return ctx.candidates[int(np.argmin(err))]


def _largest_error(ctx: SplitContext) -> int:
    if ctx.population == "I":
        return _partner(ctx)
    if ctx.moments is None:
        return _round_robin(ctx)
    err = _cell_errors(ctx, ctx.targets, LossWeights())
    return ctx.candidates[int(np.argmax(err))]


_POLICIES = {
    "nearest_target": _nearest_target,
    "largest_error": _largest_error,
    "round_robin": _round_robin,
    "random": _random,
}


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
    train_history: what the train function reported (e.g. ``TrainResult.history``), or None.
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
    train_history: Optional[list]
    wall_time_s: float


class GrowthResult(NamedTuple):
    """Output of :func:`grow`.

    param: the final :class:`Growing` parameterization (full size).
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


def _subtask(task: Task, e_cells: Sequence[int], i_cells: Sequence[int]) -> Task:
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


class _Check(NamedTuple):
    loss: float  # eq. 7 averaged over stimuli (inf if not stable)
    stable: bool  # converged with Re eig J < 0 for every stimulus
    converged: bool  # Newton converged for every stimulus
    max_real_eig: float  # over stimuli (1/ms)
    moments: Optional[Moments]  # None if not stable


def _closure_check(param: Growing, theta, task: Task, weights: LossWeights = LossWeights()) -> _Check:
    """The stationary closure of ``param.network(theta)`` on ``task``: its loss (as
    ``momentssn.stationary_loss``, forward only) and stability."""
    theta = jnp.asarray(theta)
    net, h = _network_and_inputs(param, theta, jnp.asarray(task.inputs, theta.dtype))
    moments, info = stationary_solve(net, h)
    stable = bool(np.all(np.asarray(info.stable)))
    converged = bool(np.all(np.asarray(info.converged)))
    eig = float(np.max(np.asarray(info.max_real_eig)))
    if not stable:
        return _Check(float("inf"), False, converged, eig, None)
    per = _loss_per_stimulus_jit(moments, task.target_mean, task.target_cov, weights)
    return _Check(float(jnp.mean(per)), True, True, eig, moments)


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
    """A 1 E + 1 I :class:`Growing` network whose stationary closure is stable at every stimulus.

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
    from ..errors import UnstableNetworkError

    if isinstance(max_attempts, bool) or int(max_attempts) != max_attempts or int(max_attempts) < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    if not (math.isfinite(float(scale)) and float(scale) >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    _check_index(e_cell, task.n_targets, "e_cell")
    if task.n_net > task.n_exc:
        _check_index(i_cell, task.n_net - task.n_exc, "i_cell")
    param = Growing(n_e=1, n_i=1, d_noise=int(d_noise), **(constants or {}))
    sub = _subtask(task, [e_cell], [i_cell])
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


# ---- training


def _takes_checkpoints(train) -> bool:
    """Whether a trainer accepts the ``checkpoint_dir`` and ``resume`` keywords."""
    try:
        params = inspect.signature(train).parameters
    except (TypeError, ValueError):
        return False
    return "checkpoint_dir" in params and "resume" in params


def _resolve_train_fn(train_fn, train_options):
    if callable(train_fn):
        if train_options:
            raise ValueError("train_options only apply to train_fn='bptt' or 'moments'")
        return train_fn
    if train_fn not in ("bptt", "moments"):
        raise ValueError(f"train_fn must be 'bptt', 'moments' or a callable, got {train_fn!r}")
    opts = dict(train_options or {})
    for key in ("checkpoint_dir", "resume"):
        if key in opts:
            raise ValueError(
                f"train_options must not set {key!r}: grow checkpoints each stage's training "
                "itself (pass checkpoint_dir / resume to grow)"
            )

    def default(param, task, theta, n_steps, seed, checkpoint_dir=None, resume=False):
        from ..training import adam as train

        fn = train.train_bptt if train_fn == "bptt" else train.train_moments_adam
        kw = dict(opts)
        kw.setdefault("progress", False)
        return fn(param, task, theta0=theta, steps=n_steps, seed=seed, checkpoint_dir=checkpoint_dir,
                  resume=resume, **kw)

    return default


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


# ---- checkpoints


def _save_state(path: Path, param: Growing, theta, cells, stages, counts, next_stage: int) -> None:
    doc = {
        "format": 1,
        "kind": "momentssn.growth",
        "next_stage": next_stage,
        "constants": param.constants(),
        "theta": np.asarray(theta, np.float64).tolist(),
        "e_cells": list(cells[0]),
        "i_cells": list(cells[1]),
        "counts": list(counts),
        "stages": [s._asdict() for s in stages],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written state


def _load_state(path: Path):
    doc = json.loads(path.read_text())
    if doc.get("kind") != "momentssn.growth":
        raise ValueError(f"{path} is not a growth checkpoint")
    consts = dict(doc["constants"])
    consts.pop("m", None)
    param = Growing(**consts)
    theta = jnp.asarray(np.asarray(doc["theta"], np.float64), jnp.result_type(float))
    stages = []
    for st in doc["stages"]:
        st = dict(st)
        st["targets"] = tuple(st["targets"])
        st["i_cells"] = tuple(st["i_cells"])
        st["splits"] = tuple(tuple(x) for x in st["splits"])
        stages.append(GrowthStage(**st))
    cells = (list(doc["e_cells"]), list(doc["i_cells"]))
    return param, theta, cells, stages, list(doc["counts"]), int(doc["next_stage"])


# ---- the loop


def _check_order(name: str, order, size: int, need: int) -> List[int]:
    try:
        out = [int(x) for x in order]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a sequence of ints, got {order!r}") from err
    if len(set(out)) != len(out) or any(not 0 <= x < size for x in out) or len(out) < need:
        raise ValueError(f"{name} must list >= {need} distinct indices in [0, {size}), got {order!r}")
    return out


def grow(
    task: Task,
    *,
    n_exc: Optional[int] = None,
    n_inh: Optional[int] = None,
    sizes: Optional[Sequence[Tuple[int, int]]] = None,
    steps_per_stage: Union[int, Sequence[int], Callable[[int, int, int], int]] = 100,
    split_policy: Union[str, Callable[[SplitContext], int]] = "nearest_target",
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
    progress: bool = True,
) -> GrowthResult:
    """Grow an SSN by dynamics-neutral splits, training between splits.

    Schedule (stage s = 0 .. len(sizes) - 1): train the network of size sizes[s] for
    ``steps_per_stage`` steps on its targets, then split cells up to sizes[s + 1]
    (E splits first, then I).  Stage 0 is a stable 1 E + 1 I network
    (:func:`stable_initial_theta`); the last stage trains at the full size and does
    not split.  Every split is :meth:`Growing.split` (= :func:`split_neuron`): right
    after a split the network's dynamics are those before it.

    Cells and targets: every cell of the grown network plays one cell of the task
    (its raw input column; for E cells also its target dimension).  The initial E
    cell is task E cell ``target_order[0]``, and each new E cell is the next one of
    ``target_order``, so a network with n E cells is trained on target_order[:n]
    (restricted ``target_mean``/``target_cov``, ordered like the network's E cells);
    likewise new I cells take the next task I cell of ``i_order``.  A new cell starts
    as an exact copy of its parent (its input row of G reads the parent's raw input;
    its own raw input enters with weight 0) and specializes in training.

    Which cell to split (``split_policy``):

    * ``"nearest_target"`` (default): the E cell whose current stationary closure
      moments are closest (mean and variance terms of eq. 7) to the new cell's
      target, so the copy starts as close to its target as the network allows;
    * ``"largest_error"``: the E cell with the largest error on its own target;
    * ``"round_robin"``: E cells (and I cells) in turn, by position;
    * ``"random"``: uniformly, seeded by (seed, stage);
    * a callable ``policy(ctx: SplitContext) -> cell index`` (for E and I splits).

    With the two error-based policies an I split copies the *partner* of the E cell
    split in the same stage (the I cell inhibiting it most strongly), so E/I pairs
    grow together.  E/I balance: the default ``sizes`` (:func:`growth_sizes`) split one
    E and one I cell per stage when n_inh = n_exc (I cells in proportion otherwise).

    Args:
        task: the full task (``task.inputs`` (S, N_net): raw inputs of its E then I cells).
        n_exc: final number of E cells, <= task.n_targets (default task.n_targets).
        n_inh: final number of I cells, <= the task's I cells if it has any (default
            task.n_net - task.n_exc, or n_exc if the task has no I inputs, in which
            case I cells get raw input 0).
        sizes: the schedule, a list of (n_e, n_i) from (1, 1) to (n_exc, n_inh), growing
            at every stage (default :func:`growth_sizes`); e.g. doubling:
            [(1, 1), (2, 2), (4, 4)].
        steps_per_stage: training steps per stage: an int, a sequence (one per stage)
            or ``f(stage, n_e, n_i) -> int``.
        split_policy: see above.
        target_order: order in which E cells get the task's E cells / target
            dimensions (>= n_exc distinct entries; default 0, 1, 2, ..).
        i_order: order in which I cells get the task's I cells (default: target_order
            when the task has as many I as E cells, else 0, 1, 2, ..).
        train_fn: ``"bptt"`` (default: ``momentssn.train.train_bptt``, simulated
            moments, Adam), ``"moments"`` (``momentssn.train.train_moments_adam``,
            closure moments, Adam) or a callable
            ``train_fn(param, task, theta, n_steps, seed) -> theta`` (or an object with
            ``.theta`` and optionally ``.history``, e.g. a ``TrainResult``); if it also
            takes ``checkpoint_dir`` and ``resume`` keywords, ``grow`` passes them (see
            ``checkpoint_dir``).
        train_options: keyword arguments for the ``"bptt"``/``"moments"`` trainers
            (e.g. ``learning_rate``, ``n_trials``, ``t_max``, ``progress``).
        d_noise: number of noise sources (columns of the noise factor), fixed during
            growth; default the final size n_exc + n_inh.
        seed: seeds the initialization, the training of stage s (seed + s) and the
            ``"random"`` policy.
        init_scale, max_init_attempts: see :func:`stable_initial_theta`.
        constants: fixed constants of :class:`Growing` (tau_e, tau_i, tau_noise, k, n).
        checkpoint_dir: if given, the state after every stage (parameters, cells,
            history) is written to ``checkpoint_dir/growth.json``; the training of
            stage s also checkpoints into ``checkpoint_dir/stage_<s>`` when the trainer
            takes ``checkpoint_dir`` and ``resume`` keywords (the built-in ones do,
            every ``checkpoint_every`` steps, a train option).
        resume: continue from ``checkpoint_dir/growth.json`` if it exists: the stage
            that was interrupted goes on from its training checkpoint (bit-identically
            with the built-in trainers), or is redone if the trainer has none.
        progress: print one line per stage.

    Returns:
        :class:`GrowthResult`.  A stage whose closure is not stable after training is
        recorded (``stable=False``) with a ``RuntimeWarning``.
    """
    t_start = time.perf_counter()
    if not isinstance(task, Task):
        raise ValueError(f"task must be a momentssn Task, got {type(task).__name__}")
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
    if isinstance(split_policy, str):
        if split_policy not in _POLICIES:
            raise ValueError(f"split_policy must be one of {sorted(_POLICIES)} or a callable, got {split_policy!r}")
        policy = _POLICIES[split_policy]
    elif callable(split_policy):
        policy = split_policy
    else:
        raise ValueError(f"split_policy must be a string or a callable, got {split_policy!r}")
    train = _resolve_train_fn(train_fn, train_options)
    d_noise = n_exc + n_inh if d_noise is None else d_noise
    if isinstance(d_noise, bool) or int(d_noise) != d_noise or int(d_noise) < 1:
        raise ValueError(f"d_noise must be an integer >= 1, got {d_noise!r}")
    d_noise = int(d_noise)
    for s in range(len(sizes)):  # validate the whole schedule before any work
        _steps_for(steps_per_stage, s, *sizes[s])
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")

    ckpt = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        ckpt = Path(checkpoint_dir) / "growth.json"

    if resume and ckpt.exists():
        param, theta, (e_cells, i_cells), stages, counts, start = _load_state(ckpt)
        if start < len(sizes) and (param.n_e, param.n_i) != sizes[start]:
            raise ValueError(
                f"the checkpoint {ckpt} is at size {(param.n_e, param.n_i)}, which is not "
                f"stage {start} of this schedule ({sizes[start]}): resume with the same sizes"
            )
        if progress:
            print(f"grow: resumed from {ckpt} at stage {start + 1}/{len(sizes)}", flush=True)
    else:
        param, theta = stable_initial_theta(
            task, d_noise=d_noise, e_cell=order[0], i_cell=i_ord[0], seed=seed, scale=init_scale,
            max_attempts=max_init_attempts, constants=constants,
        )
        e_cells, i_cells, stages, counts, start = [order[0]], [i_ord[0]], [], [0, 0], 0

    for s in range(start, len(sizes)):
        t0 = time.perf_counter()
        sub = _subtask(task, e_cells, i_cells)
        stage_cells = (tuple(e_cells), tuple(i_cells))
        n_steps = _steps_for(steps_per_stage, s, param.n_e, param.n_i)
        history, taken = None, n_steps
        if n_steps > 0:
            if ckpt is not None and _takes_checkpoints(train):  # the trainer checkpoints the stage
                out = train(param, sub, theta, n_steps, seed + s, checkpoint_dir=ckpt.parent / f"stage_{s}",
                            resume=resume and s == start)
            else:
                out = train(param, sub, theta, n_steps, seed + s)
            if hasattr(out, "theta"):
                history = getattr(out, "history", None)
                taken = int(getattr(out, "steps", n_steps))  # a time budget may stop it early
                out = out.theta
            theta = jnp.asarray(out, jnp.result_type(float))
            if theta.shape != (param.size,):
                raise ValueError(f"train_fn returned theta of shape {theta.shape}, expected ({param.size},)")
        chk = _closure_check(param, theta, sub)
        loss, stable, eig, moments = chk.loss, chk.stable, chk.max_real_eig, chk.moments
        if not stable:
            warnings.warn(
                f"grow: after training stage {s} ({param.n_e} E + {param.n_i} I) the stationary closure "
                f"is not stable for every stimulus (largest Re eig {eig:.4g} /ms)",
                RuntimeWarning,
                stacklevel=2,
            )
        splits = []
        if s + 1 < len(sizes):
            net = _network_and_inputs(param, theta, jnp.asarray(sub.inputs, theta.dtype))[0]
            rng = np.random.default_rng([seed, s])
            target_e, target_i = sizes[s + 1]
            e_parent = None
            while param.n_e < target_e or param.n_i < target_i:
                pop = "E" if param.n_e < target_e else "I"
                cand = tuple(range(param.n_e)) if pop == "E" else tuple(range(param.n_e, param.N))
                new_target = order[len(e_cells)] if pop == "E" else None
                ctx = SplitContext(pop, cand, net, moments, tuple(e_cells), new_target, e_parent,
                                   counts[pop == "I"], rng, task)
                i = policy(ctx)
                if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or int(i) not in cand:
                    raise ValueError(f"split_policy returned {i!r}, not one of the {pop} cells {cand}")
                i = int(i)
                param, theta = param.split(theta, i)
                net = _split_neuron_jit(net, i)
                if moments is not None:
                    moments = _split_moments_jit(moments, i)
                if pop == "E":
                    e_cells.insert(i + 1, new_target)
                    e_parent = i
                else:
                    b = i - (param.n_e)  # position among the I cells (before the copy)
                    i_cells.insert(b + 1, i_ord[len(i_cells)])
                counts[pop == "I"] += 1
                splits.append((pop, i, i + 1))
        stage = GrowthStage(
            n_e=sizes[s][0], n_i=sizes[s][1], steps=taken, loss=loss, stable=stable, max_real_eig=eig,
            targets=stage_cells[0], i_cells=stage_cells[1], splits=tuple(splits),
            train_history=_plain(history), wall_time_s=time.perf_counter() - t0,
        )
        stages.append(stage)
        if progress:
            print(
                f"grow: stage {s + 1}/{len(sizes)}: {stage.n_e} E + {stage.n_i} I, {taken} steps, "
                f"closure loss {loss:.4g}{'' if stable else ' (UNSTABLE)'}, {stage.wall_time_s:.1f} s",
                flush=True,
            )
        if ckpt is not None:
            _save_state(ckpt, param, theta, (e_cells, i_cells), stages, counts, s + 1)

    theta = np.asarray(theta, np.float64)
    final = jnp.asarray(theta, jnp.result_type(float))
    return GrowthResult(
        param=param, theta=theta, net=param.network(final), targets=tuple(e_cells), i_cells=tuple(i_cells),
        task=_subtask(task, e_cells, i_cells), stages=stages, wall_time_s=time.perf_counter() - t_start,
    )


def _plain(x):
    """A training history as plain Python (JSON-ready): arrays to lists, tuples to lists."""
    if x is None:
        return None
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if hasattr(x, "_asdict"):
        return _plain(x._asdict())
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x
