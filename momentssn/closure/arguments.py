"""Argument checks shared by the public functions of ``momentssn.closure``.

Every check raises ``ValueError`` naming the argument and the problem.  Shapes are
always checked; values (NaN/inf, sign) only when the array is concrete, so the
checks cost nothing inside ``jit``/``grad``/``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._util import is_concrete
from ..model import SSN, check_finite
from ..moments import Moments

__all__ = ["check_net", "check_stimulus", "check_scalar", "check_vector", "check_moments"]


def check_net(net) -> SSN:
    """``net`` must be an ``SSN`` (its constructor checked the values)."""
    if not isinstance(net, SSN):
        raise ValueError(f"net must be an SSN, got {type(net).__name__}")
    return net


def check_stimulus(net: SSN, h, name: str = "h") -> jax.Array:
    """h as an array of the network's dtype, shape (N,) or (B, N), finite (mV)."""
    check_net(net)
    h = jnp.asarray(h, dtype=net.W.dtype)
    if h.ndim not in (1, 2) or h.shape[-1] != net.N:
        raise ValueError(f"{name} must have shape ({net.N},) or (B, {net.N}), got {h.shape}")
    if h.ndim == 2 and h.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one stimulus, got shape {h.shape}")
    check_finite(name, h)
    return h


def check_scalar(name: str, x, *, positive: bool = False, unit: str = "") -> float:
    """A finite real number (> 0 if ``positive``) -> float."""
    unit = f" ({unit})" if unit else ""
    if jnp.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar{unit}, got shape {jnp.shape(x)}")
    try:
        v = float(x)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise ValueError(f"{name} must be a concrete real number{unit}, got {x!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite{unit}, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0{unit}, got {v}")
    return v


def check_vector(name: str, x, dtype, *, increasing: bool = False) -> jax.Array:
    """A non-empty finite 1-D array (strictly increasing if ``increasing``)."""
    x = jnp.asarray(x, dtype)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    check_finite(name, x)
    if increasing and is_concrete(x) and np.any(np.diff(np.asarray(x)) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    return x


def check_moments(net: SSN, moments, batch: tuple, name: str = "moments") -> Moments:
    """Moments(mean batch + (N,), cov batch + (N, N)) of the network's dtype, finite."""
    if not isinstance(moments, Moments):
        raise ValueError(f"{name} must be a Moments(mean, cov), got {type(moments).__name__}")
    mean = jnp.asarray(moments.mean, net.W.dtype)
    cov = jnp.asarray(moments.cov, net.W.dtype)
    N = net.N
    if mean.shape != batch + (N,) or cov.shape != batch + (N, N):
        raise ValueError(
            f"{name} must have mean {batch + (N,)} and cov {batch + (N, N)}, "
            f"got {mean.shape} and {cov.shape}"
        )
    check_finite(f"{name}.mean", mean)
    check_finite(f"{name}.cov", cov)
    return Moments(mean, cov)
