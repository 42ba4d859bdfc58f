"""The split algebra of dynamics-neutral growth (Soo & Lengyel, NeurIPS 2022).

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

The same split at the parameter level is ``momentssn.params.growing.Growing.split``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._util import is_traced
from ..model import SSN
from ..moments import Moments

__all__ = [
    "check_neuron_index",
    "duplication_index",
    "split_neuron",
    "split_inputs",
    "split_noise_factor",
    "split_moments",
]


def check_neuron_index(i, N: int, name: str = "i") -> int:
    """``i`` as a Python int, or ``ValueError`` (naming ``name``) unless 0 <= i < N is an int."""
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
    i = check_neuron_index(i, N)
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
    i = check_neuron_index(i, N)
    src = duplication_index(N, i)
    half = np.ones(N + 1)
    half[[i, i + 1]] = 0.5  # D: halve the two copies' outgoing columns (exact in binary)
    W = net.W[src][:, src] * jnp.asarray(half, net.W.dtype)[None, :]
    n_exc = net.n_exc
    if n_exc is not None and i < n_exc:
        n_exc = n_exc + 1
    leaves = (W, net.tau[src], net.noise_cov[src][:, src], net.tau_noise, net.k, net.n)
    if is_traced(leaves):
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
        raise ValueError("h must have shape (..., N), got a scalar")
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
