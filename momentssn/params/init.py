"""The growth paper's random start of an unstructured SSN (Soo & Lengyel 2022, Table S1).

Direct training of the full network, the baseline that growth is compared with, starts
from random connectivity with Dale's signs and a fixed noise factor::

    W_ij = s_j |w_ij|,   w_ij ~ N(0, 1/N)              (mV/Hz; s_j = +1 for E columns, -1 for I)
    L = 0.9 I + 0.1 1 1^T,  Sigma_eta = L L^T          (L in mV; N x N)

so each weight's magnitude is half-normal with mean sqrt(2 / (pi N)) mV/Hz, and the noise
has variance 0.81 + 0.18 + 0.01 N mV^2 per cell, covariance 0.19 + 0.01 N mV^2 between
cells.  The paper's supplement is not at hand here; these are the values of the authors'
released code (github.com/wmws2/deeplearningSSN: ``mnistmodel/2_initialization.py`` draws
W ~ N(0, 1/N) and takes |W| times the Dale mask; ``samplingmodel/ssn_4_networkgrowth.py``
and ``mnistmodel/3_networkgrowth.py`` start the noise matrix at 0.9 I + 0.1 1 1^T, with
eta = L xi).  The input map (``in_a in_b in_p``) starts at the parameterization's default
(Baseline15's: 2 mV, 2, 1), the published task's scaling of h~ (the authors' code draws
their own parameterization of it at random).

:func:`paper_theta` has the signature ``init(param, seed) -> theta`` of the ``init``
option of ``momentssn.experiments.compare.train_run``.  Many draws are unstable (at
N = 8 on the natural-image task, 8 of 10 seeds have no stable fixed point of the
closure for some stimulus), so, as the authors' code does ("rerolling parameters" until
the simulation stays finite), :class:`PaperInit` with the task's raw inputs redraws until
the stationary closure is stable at every stimulus; :func:`stable_paper_theta` also
says how many draws that took.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ..closure.stationary import stationary_solve
from ..errors import UnstableNetworkError
from .base import Parameterization

__all__ = ["paper_params", "paper_theta", "stable_paper_theta", "PaperInit", "NOISE_DIAGONAL", "NOISE_OFFSET"]

#: L = NOISE_DIAGONAL I + NOISE_OFFSET 1 1^T (mV), the authors' start of the noise matrix.
NOISE_DIAGONAL = 0.9
NOISE_OFFSET = 0.1


def _check(param: Parameterization) -> None:
    shapes = {f.name: (f.shape, f.constraint) for f in param.fields}
    N = param.N
    if shapes.get("w_abs") != ((N, N), "positive") or shapes.get("mix", ((),))[0][:1] != (N,):
        raise ValueError(
            f"param must be an unstructured parameterization with fields w_abs (N, N) and mix (N, d) "
            f"(e.g. General), got {type(param).__name__} with fields {sorted(shapes)}"
        )


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def paper_params(param: Parameterization, seed: int = 0, draw: int = 0) -> Dict[str, object]:
    """Physical params of the paper's random start (module docstring) for ``param``.

    param: ``General`` (or any parameterization with fields ``w_abs`` (N, N) and
        ``mix`` (N, d), d >= 1; for d < N the noise factor is the first d columns of
        0.9 I + 0.1 1 1^T).  The other fields take ``param.default_params()``'s values.
    seed, draw: ints >= 0; deterministic given them (numpy ``default_rng([seed, draw])``;
        draw = 0 is ``default_rng(seed)``).
    Returns a new dict of floats and numpy arrays (``param.to_theta`` takes it).
    """
    _check(param)
    seed, draw = _check_int("seed", seed, 0), _check_int("draw", draw, 0)
    N = param.N
    d = dict(param.shapes)["mix"][1]
    rng = np.random.default_rng(seed if draw == 0 else [seed, draw])
    w = np.abs(rng.normal(0.0, 1.0 / np.sqrt(N), size=(N, N)))
    L = NOISE_DIAGONAL * np.eye(N) + NOISE_OFFSET * np.ones((N, N))
    out = dict(param.default_params())
    out["w_abs"] = np.maximum(w, 1e-300)  # |w| > 0 (log map); a draw of exactly 0 has probability 0
    out["mix"] = L[:, :d]
    return out


def paper_theta(param: Parameterization, seed: int = 0, draw: int = 0) -> jax.Array:
    """theta of :func:`paper_params` (``param.to_theta``): one draw, stable or not."""
    return param.to_theta(paper_params(param, seed, draw))


def _stable(param: Parameterization, theta, h_raw) -> Tuple[bool, float]:
    """Whether the stationary closure of ``param.network(theta)`` is stable at every
    stimulus of ``h_raw`` (S, N), and its largest Re eig (1/ms)."""
    info = stationary_solve(param.network(theta), param.inputs(theta, jnp.asarray(h_raw, theta.dtype)))[1]
    ok = bool(np.all(np.asarray(info.stable)) and np.all(np.asarray(info.converged)))
    return ok, float(np.max(np.asarray(info.max_real_eig)))


def stable_paper_theta(param: Parameterization, h_raw, seed: int = 0, max_draws: int = 100
                       ) -> Tuple[jax.Array, int]:
    """The first draw of the paper's start whose stationary closure is stable at every stimulus.

    h_raw: (S, N) raw inputs h~ of the stimuli (a task's ``inputs``).  Draws
    ``paper_theta(param, seed, draw)`` for draw = 0, 1, .. and returns (theta, number of
    draws taken).  Raises ``UnstableNetworkError`` after ``max_draws`` unstable draws.
    """
    max_draws = _check_int("max_draws", max_draws, 1)
    h_raw = np.asarray(h_raw, np.float64)
    if h_raw.ndim != 2 or h_raw.shape[1] != param.N:
        raise ValueError(f"h_raw must have shape (S, {param.N}), got {h_raw.shape}")
    worst = -np.inf
    for draw in range(max_draws):
        theta = paper_theta(param, seed, draw)
        ok, eig = _stable(param, theta, h_raw)
        if ok:
            return theta, draw + 1
        worst = max(worst, eig)
    raise UnstableNetworkError(
        f"no stable draw of the paper's start in {max_draws} draws (seed {seed}; largest Re eig of J "
        f"{worst:.4g} /ms)", max_real_eig=float(worst))


class PaperInit(NamedTuple):
    """``init(param, seed) -> theta`` for ``train_run``: the paper's start, redrawn until
    stable on the raw inputs ``h_raw`` (S, N) (:func:`stable_paper_theta`); with
    ``h_raw=None``, one draw (:func:`paper_theta`) whatever its stability."""

    h_raw: Optional[np.ndarray] = None
    max_draws: int = 100

    def __call__(self, param: Parameterization, seed: int) -> jax.Array:
        if self.h_raw is None:
            return paper_theta(param, seed)
        return stable_paper_theta(param, self.h_raw, seed, self.max_draws)[0]
