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
neutral: the pair then delivers twice the old output.

:func:`grow` starts from a stable 1 E + 1 I network and alternates "train K steps"
and "split" (one E and one I cell per stage by default) until the full size, in the
:class:`Growing` parameterization (sizes n_e, n_i free, Dale signs, learnable input
map), assigning each new E cell the next target dimension of the task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from .losses import LossWeights, stationary_loss
from .model import SSN
from .moments import Moments
from .parameterizations import _INPUT_FIELDS, Field, Parameterization, input_nonlinearity, von_mises_kernel
from .stationary import stationary_solve
from .tasks import Task

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


def _two_population_defaults() -> Dict[str, float]:
    """Summed weights (mV/Hz) and noise variances (mV^2) of Baseline15's default network.

    w_XY = a_XY sum_j K_0j(d_XY) on the 50-site ring (the uniform mode of the ring:
    W_EE 0.47, W_EI 0.44, W_IE 0.76, W_II 0.38), var = var_X + the 0.01 jitter.
    Stable on the published task inputs (see ``Baseline15``).
    """
    from .parameterizations import BASELINE15_DEFAULTS as b

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


@dataclasses.dataclass(frozen=True)
class Growing(Parameterization):
    """A size-varying SSN parameterization: n_e E cells then n_i I cells, everything free.

        W_ab = s_b w_abs_ab          (s_b = +1 E, -1 I: Dale's law; w_abs log-parameterized)
        Sigma_eta = L L^T             (L = ``mix`` (N, d_noise) mV, any sign)
        h = in_a [F h~ + in_b]_+^in_p (F = ``f_in`` (N, d_in), any sign; h~ (..., d_in))

    tau = tau_e (E), tau_i (I); tau_noise, k, n fixed (dataclass fields, as in
    ``Parameterization``).  Parameters, in theta order: ``w_abs`` (N, N) mV/Hz,
    ``mix`` (N, d_noise) mV, ``f_in`` (N, d_in), ``in_a in_b in_p``.

    ``d_noise`` (the number of noise sources) and ``d_in`` (the raw input dimension,
    e.g. ``task.n_net``) stay fixed while the network grows; choose d_noise >= the
    final N so that the final noise covariance can reach full rank.  The inherited
    field ``m`` is not used (it is set to n_e).

    :meth:`split` is :func:`split_neuron` at the parameter level: log-magnitudes
    log(w / 2) = log w - log 2 for the halved outgoing weights, copied rows of
    w_abs, ``mix`` and ``f_in``; so ``network(split(theta))`` = ``split_neuron(network(theta))``
    and ``inputs`` and ``noise_factor`` split like :func:`split_inputs` and
    :func:`split_noise_factor`.
    """

    n_e: int = 1
    n_i: int = 1
    d_in: int = 2
    d_noise: int = 2

    kind: ClassVar[str] = "growing"

    def __post_init__(self):
        for name, low in (("n_e", 1), ("n_i", 1), ("d_in", 1), ("d_noise", 1)):
            val = getattr(self, name)
            if isinstance(val, bool) or int(val) != val or int(val) < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {val!r}")
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
            Field("f_in", (N, self.d_in), "real", ""),
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
        """h = in_a [F h~ + in_b]_+^in_p (mV); h_raw (..., d_in) -> (..., N).  Traceable."""
        h_raw = jnp.asarray(h_raw)
        if h_raw.shape[-1:] != (self.d_in,):
            raise ValueError(f"h_raw must have shape (..., d_in={self.d_in}), got {h_raw.shape}")
        F = self.field(theta, "f_in")
        return input_nonlinearity(
            h_raw @ F.T, self.field(theta, "in_a"), self.field(theta, "in_b"), self.field(theta, "in_p")
        )

    # ---- initialization
    def init_params(self, seed: int = 0, scale: float = 0.0, e_inputs=None, i_inputs=None) -> Dict[str, object]:
        """Physical params of a network with Baseline15's summed weights, any size.

        Every E -> E weight is w_EE / n_e times exp(scale g) (g ~ N(0, 1)), and so on
        for the four blocks (w_XY from ``Baseline15``'s default network summed over the
        ring: 0.47, 0.44, 0.76, 0.38 mV/Hz), so the population-averaged network is the
        same at every size.  Row a of L is sqrt(var_X) times a random unit vector of
        R^d_noise (var_E = 3.01, var_I = 1.51 mV^2; every noise source used, nearly
        uncorrelated cells).  F selects one raw input per cell: ``e_inputs`` (n_e,) and
        ``i_inputs`` (n_i,) raw-input indices (default a mod d_in for cell a).
        in_a = 2 mV, in_b = 2, in_p = 1.  Deterministic given ``seed``.
        """
        d = _two_population_defaults()
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
        e_inputs = np.arange(ne) % self.d_in if e_inputs is None else np.asarray(e_inputs)
        i_inputs = (ne + np.arange(ni)) % self.d_in if i_inputs is None else np.asarray(i_inputs)
        sel = np.r_[e_inputs, i_inputs].astype(int)
        if sel.shape != (self.N,) or np.any(sel < 0) or np.any(sel >= self.d_in):
            raise ValueError(
                f"e_inputs/i_inputs must give {ne} + {ni} raw-input indices in [0, {self.d_in}), got {sel.tolist()}"
            )
        f_in = np.zeros((self.N, self.d_in))
        f_in[np.arange(self.N), sel] = 1.0
        return {"w_abs": w_abs, "mix": std[:, None] * dirs, "f_in": f_in,
                "in_a": d["in_a"], "in_b": d["in_b"], "in_p": d["in_p"]}

    def default_params(self) -> Dict[str, object]:
        """``init_params(seed=0, scale=0)``."""
        return self.init_params()

    # ---- growth
    def split(self, theta, i: int) -> Tuple["Growing", jax.Array]:
        """Split neuron i at the parameter level: (the grown parameterization, theta').

        In the unconstrained coordinates: w_abs rows and columns duplicated (P . P^T),
        then log w_abs[:, i] and [:, i+1] lowered by log 2 (the halved outgoing
        weights); ``mix`` and ``f_in`` rows duplicated; in_a, in_b, in_p unchanged.
        ``self.network`` of the result equals ``split_neuron(self.network(theta), i)``
        (up to rounding of exp), and the copy is E iff i < n_e.  Traceable in theta.
        """
        theta = self._check_theta(theta)
        i = _check_index(i, self.N)
        src = duplication_index(self.N, i)
        sl = self._slices()
        raw = {name: theta[a:b].reshape(f.shape) for name, (a, b, f) in sl.items()}
        shift = np.zeros(self.N + 1)
        shift[[i, i + 1]] = _LOG2
        w = raw["w_abs"][src][:, src] - jnp.asarray(shift, theta.dtype)[None, :]
        new = dataclasses.replace(self, n_e=self.n_e + (i < self.n_e), n_i=self.n_i + (i >= self.n_e))
        parts = [w, raw["mix"][src], raw["f_in"][src]] + [raw[f.name] for f in _INPUT_FIELDS]
        return new, jnp.concatenate([jnp.ravel(p) for p in parts])


# =========================================================================== growth


class SplitContext(NamedTuple):
    """What a split policy sees when it picks the cell to split (one split at a time).

    population: ``"E"`` or ``"I"``.
    candidates: indices of the cells of that population in ``net``.
    net: the current network.
    moments: its stationary closure moments on the task stimuli, mean (S, N), cov
        (S, N, N), or None when the network was not stable.
    assign: (n_e,) the target dimension of every E cell (network order).
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
    assign: Tuple[int, ...]
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
    err = _cell_errors(ctx, [ctx.new_target] * len(ctx.assign), LossWeights())
    return ctx.candidates[int(np.argmin(err))]


def _largest_error(ctx: SplitContext) -> int:
    if ctx.population == "I":
        return _partner(ctx)
    if ctx.moments is None:
        return _round_robin(ctx)
    err = _cell_errors(ctx, ctx.assign, LossWeights())
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
    targets: (n_e,) target dimension of every E cell (network order).
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
    splits: Tuple[Tuple[str, int, int], ...]
    train_history: Optional[list]
    wall_time_s: float


class GrowthResult(NamedTuple):
    """Output of :func:`grow`.

    param: the final :class:`Growing` parameterization (full size).
    theta: its (param.size,) parameters after the last stage's training.
    net: ``param.network(theta)``.
    targets: (n_e,) the target dimension of every E cell of ``net`` (network order).
    task: the task restricted and ordered to those targets (``task.target_mean[:, a]``
        is the target of E cell a): evaluate ``net`` on it.
    stages: list of :class:`GrowthStage`.
    wall_time_s: total seconds (this call; resumed stages keep their own times).
    """

    param: Growing
    theta: np.ndarray
    net: SSN
    targets: Tuple[int, ...]
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


def _subtask(task: Task, targets: Sequence[int]) -> Task:
    """The task restricted to the target dimensions ``targets`` (in that order)."""
    t = np.asarray(targets, dtype=int)
    return Task(
        inputs=task.inputs,
        target_mean=task.target_mean[:, t],
        target_cov=task.target_cov[:, t][:, :, t],
        contrasts=task.contrasts,
        n_exc=len(t),
        name=f"{task.name}[{len(t)} targets]",
    )


def _closure_check(param: Growing, theta, task: Task):
    """(loss, stable, max_real_eig, moments or None) of the stationary closure."""
    loss, aux = stationary_loss(param, jnp.asarray(theta), task.inputs, task.target_mean, task.target_cov)
    stable = bool(aux.stable)
    eig = float(np.max(np.asarray(aux.info.max_real_eig)))
    return float(loss), stable, eig, (aux.moments if stable else None)


def stable_initial_theta(
    task: Task,
    *,
    d_noise: int,
    first_target: int = 0,
    seed: int = 0,
    scale: float = 0.1,
    max_attempts: int = 5,
    constants: Optional[dict] = None,
) -> Tuple[Growing, jax.Array]:
    """A 1 E + 1 I :class:`Growing` network whose stationary closure is stable at every stimulus.

    Attempt a (a = 0, 1, ..) draws ``init_params(seed + a, scale / 2^a)`` (log-normal
    weight jitter of relative size ~scale around Baseline15's summed weights); the E
    cell reads raw input ``first_target`` (its target's input), the I cell the
    matching I input ``task.n_exc + first_target`` when the task has I inputs.
    The first attempt whose closure is stable (converged, Re eig J < 0) for every
    stimulus of ``task`` is returned.

    Raises:
        UnstableNetworkError: no stable start after ``max_attempts`` attempts (names the
            largest eigenvalue found).
    """
    from .errors import UnstableNetworkError

    if int(max_attempts) < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    param = Growing(n_e=1, n_i=1, d_in=task.n_net, d_noise=int(d_noise), **(constants or {}))
    n_i_inputs = task.n_net - task.n_exc
    i_in = task.n_exc + first_target % n_i_inputs if n_i_inputs > 0 else first_target
    sub = _subtask(task, [first_target])
    eigs = []
    for a in range(int(max_attempts)):
        params = param.init_params(seed + a, scale / 2.0**a, e_inputs=[first_target], i_inputs=[i_in])
        theta = param.to_theta(params)
        _, stable, eig, _ = _closure_check(param, theta, sub)
        if stable:
            return param, theta
        eigs.append(eig)
    raise UnstableNetworkError(
        f"no stable 1 E + 1 I initialization in {max_attempts} attempts (seeds {seed}..{seed + max_attempts - 1}); "
        f"largest real parts of the Jacobian's eigenvalues: {[round(e, 4) for e in eigs]} /ms",
        max_real_eig=float(max(eigs)),
    )


# ---- training


def _resolve_train_fn(train_fn, train_options):
    if callable(train_fn):
        if train_options:
            raise ValueError("train_options only apply to train_fn='bptt' or 'moments'")
        return train_fn
    if train_fn not in ("bptt", "moments"):
        raise ValueError(f"train_fn must be 'bptt', 'moments' or a callable, got {train_fn!r}")
    opts = dict(train_options or {})

    def default(param, task, theta, n_steps, seed):
        from . import train  # lazy: train depends on the simulator

        fn = train.train_bptt if train_fn == "bptt" else train.train_moments_adam
        kw = dict(opts)
        kw.setdefault("progress", False)
        return fn(param, task, theta0=theta, steps=n_steps, seed=seed, **kw)

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


def _save_stage(path: Path, param: Growing, theta, assign, stages, counts, next_stage: int) -> None:
    doc = {
        "format": 1,
        "kind": "momentssn.growth",
        "next_stage": next_stage,
        "constants": param.constants(),
        "theta": np.asarray(theta, np.float64).tolist(),
        "targets": list(assign),
        "counts": list(counts),
        "stages": [s._asdict() for s in stages],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _load_stage(path: Path):
    doc = json.loads(path.read_text())
    consts = doc["constants"]
    param = Growing(**consts)
    theta = jnp.asarray(np.asarray(doc["theta"], np.float64), jnp.result_type(float))
    stages = []
    for s in doc["stages"]:
        s["targets"] = tuple(s["targets"])
        s["splits"] = tuple(tuple(x) for x in s["splits"])
        stages.append(GrowthStage(**s))
    return param, theta, list(doc["targets"]), stages, list(doc["counts"]), int(doc["next_stage"])


# ---- the loop


def grow(
    task: Task,
    *,
    n_exc: Optional[int] = None,
    n_inh: Optional[int] = None,
    sizes: Optional[Sequence[Tuple[int, int]]] = None,
    steps_per_stage: Union[int, Sequence[int], Callable[[int, int, int], int]] = 100,
    split_policy: Union[str, Callable[[SplitContext], int]] = "nearest_target",
    target_order: Optional[Sequence[int]] = None,
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
    not split.  Every split is :meth:`Growing.split` (= :func:`split_neuron`), so the
    network's dynamics right after a split are those before it.

    Targets: E cells carry target dimensions; the initial E cell gets
    ``target_order[0]`` and each new E cell the next unused one, so a network with n
    E cells is trained on target_order[:n] (restricted ``target_mean``/``target_cov``,
    ordered like the E cells).  The new cell starts as an exact copy of its parent
    (same input row of F) and specializes in training.

    Which cell to split (``split_policy``):

    * ``"nearest_target"`` (default): the E cell whose current stationary moments are
      closest (mean and variance terms of eq. 7) to the new cell's target -- the copy
      starts as close to its target as the network allows;
    * ``"largest_error"``: the E cell with the largest error on its own target;
    * ``"round_robin"``: E cells (and I cells) in turn by position;
    * ``"random"``: uniformly, seeded by (seed, stage);
    * a callable ``policy(ctx: SplitContext) -> cell index`` (for E and I splits).

    With the two error-based policies an I split copies the *partner* of the E cell
    split in the same stage: the I cell inhibiting it most strongly (E/I pairs grow
    together).  E/I balance: the default ``sizes`` (:func:`growth_sizes`) split one E
    and one I cell per stage when n_inh = n_exc (I cells in proportion otherwise).

    Args:
        task: the full task (``task.inputs`` (S, d_in) are the raw inputs h~ of the
            :class:`Growing` input map, fixed during growth).
        n_exc: final number of E cells, <= task.n_targets (default task.n_targets).
        n_inh: final number of I cells (default task.n_net - task.n_exc, or n_exc if
            that is 0).
        sizes: the schedule, a list of (n_e, n_i) from (1, 1) to (n_exc, n_inh), growing
            at every stage (default :func:`growth_sizes`); e.g. doubling:
            [(1, 1), (2, 2), (4, 4)].
        steps_per_stage: training steps per stage: an int, a sequence (one per stage)
            or ``f(stage, n_e, n_i) -> int``.
        split_policy: see above.
        target_order: permutation (or subset of >= n_exc entries) of the target
            dimensions: the order in which E cells get targets (default 0, 1, 2, ..).
        train_fn: ``"bptt"`` (default: ``momentssn.train.train_bptt``, simulated
            moments, Adam), ``"moments"`` (``momentssn.train.train_moments_adam``,
            closure moments, Adam) or a callable
            ``train_fn(param, task, theta, n_steps, seed) -> theta`` (or an object with
            ``.theta`` and optionally ``.history``, e.g. a ``TrainResult``).
        train_options: keyword arguments for the ``"bptt"``/``"moments"`` trainers
            (e.g. ``learning_rate``, ``n_trials``, ``t_max``).
        d_noise: number of noise sources (columns of the noise factor), fixed during
            growth; default the final size n_exc + n_inh.
        seed: seeds the initialization, the training of stage s (seed + s) and the
            ``"random"`` policy.
        init_scale, max_init_attempts: see :func:`stable_initial_theta`.
        constants: fixed constants of :class:`Growing` (tau_e, tau_i, tau_noise, k, n).
        checkpoint_dir: if given, the state after every stage (parameters, targets,
            history) is written to ``checkpoint_dir/growth.json``.
        resume: continue from ``checkpoint_dir/growth.json`` if it exists.
        progress: print one line per stage.

    Returns:
        :class:`GrowthResult`.  A stage whose closure is not stable after training is
        recorded (``stable=False``) with a ``RuntimeWarning``.
    """
    t_start = time.perf_counter()
    if not isinstance(task, Task):
        raise ValueError(f"task must be a momentssn Task, got {type(task).__name__}")
    M = task.n_targets
    n_exc = M if n_exc is None else n_exc
    if isinstance(n_exc, bool) or int(n_exc) != n_exc or not 1 <= int(n_exc) <= M:
        raise ValueError(f"n_exc must be an integer in [1, {M}] (one target per E cell), got {n_exc!r}")
    n_exc = int(n_exc)
    if n_inh is None:
        n_inh = (task.n_net - task.n_exc) or n_exc
    if isinstance(n_inh, bool) or int(n_inh) != n_inh or int(n_inh) < 1:
        raise ValueError(f"n_inh must be an integer >= 1, got {n_inh!r}")
    n_inh = int(n_inh)
    sizes = growth_sizes(n_exc, n_inh) if sizes is None else _check_sizes(sizes, n_exc, n_inh)
    order = list(range(M)) if target_order is None else [int(x) for x in target_order]
    if len(set(order)) != len(order) or any(not 0 <= x < M for x in order) or len(order) < n_exc:
        raise ValueError(
            f"target_order must list >= n_exc={n_exc} distinct target dimensions in [0, {M}), got {target_order!r}"
        )
    if isinstance(split_policy, str):
        if split_policy not in _POLICIES:
            raise ValueError(f"split_policy must be one of {sorted(_POLICIES)} or a callable, got {split_policy!r}")
        policy = _POLICIES[split_policy]
    elif callable(split_policy):
        policy = split_policy
    else:
        raise ValueError(f"split_policy must be a string or a callable, got {split_policy!r}")
    train = _resolve_train_fn(train_fn, train_options)
    d_noise = n_exc + n_inh if d_noise is None else int(d_noise)
    if d_noise < 1:
        raise ValueError(f"d_noise must be >= 1, got {d_noise}")
    for s in range(len(sizes)):  # validate the whole schedule before any work
        _steps_for(steps_per_stage, s, *sizes[s])
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")

    ckpt = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        ckpt = Path(checkpoint_dir) / "growth.json"

    if resume and ckpt.exists():
        param, theta, assign, stages, counts, start = _load_stage(ckpt)
        if start < len(sizes) and (param.n_e, param.n_i) != sizes[start]:
            raise ValueError(
                f"the checkpoint in {checkpoint_dir} is at size {(param.n_e, param.n_i)}, "
                f"which is not stage {start} of this schedule ({sizes[start]})"
            )
        if progress:
            print(f"grow: resumed from {ckpt} at stage {start}/{len(sizes)}", flush=True)
    else:
        param, theta = stable_initial_theta(
            task, d_noise=d_noise, first_target=order[0], seed=seed, scale=init_scale,
            max_attempts=max_init_attempts, constants=constants,
        )
        assign, stages, counts, start = [order[0]], [], [0, 0], 0

    for s in range(start, len(sizes)):
        t0 = time.perf_counter()
        sub = _subtask(task, assign)
        stage_targets = tuple(assign)
        n_steps = _steps_for(steps_per_stage, s, param.n_e, param.n_i)
        history = None
        if n_steps > 0:
            out = train(param, sub, theta, n_steps, seed + s)
            if hasattr(out, "theta"):
                history = getattr(out, "history", None)
                out = out.theta
            theta = jnp.asarray(out, jnp.result_type(float))
            if theta.shape != (param.size,):
                raise ValueError(f"train_fn returned theta of shape {theta.shape}, expected ({param.size},)")
        loss, stable, eig, moments = _closure_check(param, theta, sub)
        if not stable:
            warnings.warn(
                f"grow: after training stage {s} ({param.n_e} E + {param.n_i} I) the stationary closure "
                f"is not stable for every stimulus (largest Re eig {eig:.4g} /ms)",
                RuntimeWarning,
                stacklevel=2,
            )
        splits = []
        if s + 1 < len(sizes):
            net = param.network(theta)
            rng = np.random.default_rng([seed, s])
            target_e, target_i = sizes[s + 1]
            e_parent = None
            while param.n_e < target_e or param.n_i < target_i:
                pop = "E" if param.n_e < target_e else "I"
                cand = tuple(range(param.n_e)) if pop == "E" else tuple(range(param.n_e, param.N))
                new_target = order[len(assign)] if pop == "E" else None
                ctx = SplitContext(pop, cand, net, moments, tuple(assign), new_target, e_parent,
                                   counts[pop == "I"], rng, task)
                i = policy(ctx)
                if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or int(i) not in cand:
                    raise ValueError(f"split_policy returned {i!r}, not one of the {pop} cells {cand}")
                i = int(i)
                param, theta = param.split(theta, i)
                net = split_neuron(net, i)
                if moments is not None:
                    moments = split_moments(moments, i)
                if pop == "E":
                    assign.insert(i + 1, new_target)
                    e_parent = i
                elif e_parent is not None and e_parent > i:  # (E cells precede I cells: never)
                    e_parent += 1
                counts[pop == "I"] += 1
                splits.append((pop, i, i + 1))
        stage = GrowthStage(
            n_e=sizes[s][0], n_i=sizes[s][1], steps=n_steps, loss=loss, stable=stable, max_real_eig=eig,
            targets=stage_targets, splits=tuple(splits),
            train_history=_plain(history), wall_time_s=time.perf_counter() - t0,
        )
        stages.append(stage)
        if progress:
            print(
                f"grow: stage {s + 1}/{len(sizes)} {stage.n_e} E + {stage.n_i} I, {n_steps} steps, "
                f"closure loss {loss:.4g}{'' if stable else ' (UNSTABLE)'}, {stage.wall_time_s:.1f} s",
                file=sys.stdout, flush=True,
            )
        if ckpt is not None:
            _save_stage(ckpt, param, theta, assign, stages, counts, s + 1)

    theta = np.asarray(theta, np.float64)
    final = jnp.asarray(theta, jnp.result_type(float))
    return GrowthResult(
        param=param, theta=theta, net=param.network(final), targets=tuple(assign),
        task=_subtask(task, assign), stages=stages, wall_time_s=time.perf_counter() - t_start,
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
