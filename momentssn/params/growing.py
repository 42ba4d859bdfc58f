"""The ``Growing`` parameterization: a size-varying SSN for dynamics-neutral growth.

n_e E cells then n_i I cells with every weight, noise-mixing entry and input-mixing
entry free; :meth:`Growing.split` is ``momentssn.growth.split.split_neuron`` at the
parameter level, so ``momentssn.growth.grow`` can train, split and train again in
one parameterization.  Registered as ``"growing"`` (``get_parameterization``,
``parameterization_from_json``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ..growth.split import check_neuron_index, duplication_index
from .base import INPUT_FIELDS, DaleMixing, Field, Parameterization, register_parameterization
from .ring import BASELINE15_DEFAULTS, von_mises_kernel

__all__ = ["Growing", "two_population_defaults"]

_LOG2 = math.log(2.0)


def two_population_defaults() -> Dict[str, float]:
    """Summed weights (mV/Hz) and noise variances (mV^2) of Baseline15's default network.

    w_XY = a_XY sum_j K_0j(d_XY) on the 50-site ring (the uniform mode of the ring:
    W_EE 0.47, W_EI 0.44, W_IE 0.76, W_II 0.38), var = var_X + the 0.01 jitter; the
    input map's in_a, in_b, in_p.  Stable on the published task inputs (see
    ``Baseline15``).  A new dict at every call.
    """
    return dict(_two_population_defaults())


@functools.lru_cache(maxsize=1)
def _two_population_defaults() -> Dict[str, float]:
    b = BASELINE15_DEFAULTS
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
class Growing(DaleMixing, Parameterization):
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

    :meth:`split` is ``momentssn.growth.split.split_neuron`` at the parameter level (see there).
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
    def n_exc(self) -> int:
        """Number of E cells, n_e."""
        return self.n_e

    @property
    def n_inh(self) -> int:
        """Number of I cells, n_i."""
        return self.n_i

    @property
    def fields(self) -> Tuple[Field, ...]:
        N = self.N
        return (
            Field("w_abs", (N, N), "positive", "mV/Hz"),
            Field("mix", (N, self.d_noise), "real", "mV"),
            Field("f_in", (N, N), "real", ""),
        ) + INPUT_FIELDS

    # ---- network and input (connectivity, noise_covariance: DaleMixing)
    def noise_factor(self, theta) -> jax.Array:
        """L = ``mix`` (N, d_noise), L L^T = noise_cov: for ``simulate(..., noise_factor=L)``."""
        return self.field(theta, "mix")

    def raw_drive(self, theta, h_raw) -> jax.Array:
        """G h~ (..., N), G = ``f_in``: the input map reads h = in_a [G h~ + in_b]_+^in_p (mV)."""
        return h_raw @ self.field(theta, "f_in").T

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
        d = two_population_defaults()
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
        new = self.grown(i)
        return new, _split_theta(self, new, theta, i)

    def grown(self, i: int) -> "Growing":
        """The parameterization after splitting neuron i: one more E cell if i < n_e, else I."""
        i = check_neuron_index(i, self.N)
        return dataclasses.replace(self, n_e=self.n_e + (i < self.n_e), n_i=self.n_i + (i >= self.n_e))


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _split_theta(param: Growing, new: Growing, theta: jax.Array, i: int) -> jax.Array:
    """theta' of :meth:`Growing.split` (compiled once per size and i: eager gathers at
    ever new shapes would each compile)."""
    src = duplication_index(param.N, i)
    t = param.theta_parts(theta)
    shift = np.zeros(param.N + 1)
    shift[[i, i + 1]] = _LOG2
    w = t["w_abs"][src][:, src] - jnp.asarray(shift, theta.dtype)[None, :]
    G = t["f_in"][src][:, src].at[:, i + 1].set(0.0)
    return new.theta_from_parts(dict(t, w_abs=w, mix=t["mix"][src], f_in=G))
