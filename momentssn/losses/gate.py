"""Losses that are safe for line searches: +inf and an exact zero gradient where the
moments cannot be trusted.

A loss over S stimuli computes per-stimulus values ``per`` (S,) and a flag ``ok`` (S,)
(a stable fixed point, a finite trajectory, no diverged trial).  Then

    loss = mean_s per_s      if every ok_s,   +inf otherwise;
    d loss / d theta = 0     (exactly, never NaN) when some ok_s is False.

A masked ``jnp.where`` alone is not enough: NaN produced inside the backward pass of a
solver at a diverged state would still leak into the gradient, so :func:`gated` acts
on the *results* of that backward pass inside a ``jax.custom_vjp``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .moment import LossAux

__all__ = ["gated", "finish"]


def gated(fun: Callable):
    """Make fun(*args) -> (per, ok, aux) safe for line searches.

    Returns g(*args) -> (where(ok, per, inf), ok, aux) whose VJP is that of ``per``
    when every entry of ``ok`` is True and exactly 0 (for every argument) otherwise.
    The gate acts on the *results* of fun's backward pass, so NaN produced inside it
    (e.g. by a solver's adjoint at a diverged state) cannot leak out.  ``ok`` and the
    leaves of ``aux`` come back as floats (bool/int outputs of a ``custom_vjp`` would
    be differentiated) under ``stop_gradient``: they carry no gradient.
    """

    def split(*args):
        per, ok, aux = fun(*args)
        return per, (ok, aux)

    def fwd(*args):
        per, vjp_fn, (ok, aux) = jax.vjp(split, *args, has_aux=True)
        all_ok = jnp.all(ok)
        as_float = lambda x: jnp.asarray(x).astype(per.dtype)  # noqa: E731
        out = (jnp.where(ok, per, jnp.inf), as_float(ok), jax.tree_util.tree_map(as_float, aux))
        return out, (vjp_fn, all_ok)

    def bwd(res, cts):
        vjp_fn, all_ok = res
        ct_per = jnp.where(all_ok, cts[0], 0.0)
        grads = vjp_fn(ct_per)
        return jax.tree_util.tree_map(lambda g: jnp.where(all_ok, g, jnp.zeros_like(g)), grads)

    @jax.custom_vjp
    def gated(*args):
        return fwd(*args)[0]

    gated.defvjp(fwd, bwd)

    def call(*args):
        per, ok, aux = gated(*args)
        ok = jax.lax.stop_gradient(ok) > 0.5
        return per, ok, jax.tree_util.tree_map(jax.lax.stop_gradient, aux)

    return call


def finish(per, ok, moments, info=None, n_diverged=None):
    """(loss, LossAux) from the gated per-stimulus losses: the mean over stimuli if
    every ``ok`` (S,) holds, +inf otherwise."""
    stable = jnp.all(ok)
    loss = jnp.where(stable, jnp.mean(jnp.where(ok, per, 0.0)), jnp.inf)
    return loss, LossAux(per, moments, stable, ok, info, n_diverged)
