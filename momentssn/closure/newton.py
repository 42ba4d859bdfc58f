"""Damped chord-Newton with backtracking, as one ``lax.while_loop`` (knows no SSN).

Solves r(z) = 0 for z (n,) given two callables:

    evaluate(z)                          -> (r (n,), scaled r (n,), aux)
    direction(z, r, aux, extra, refresh) -> (dz (n,), extra, fresh)

``evaluate`` returns the residual, the residual relative to the size of the
unknowns (tolerances and the merit use it) and whatever the direction needs at z
(``aux``).  ``direction`` returns the Newton direction dz = -(dr/dz)^-1 r; an
expensive part of the Jacobian is recomputed when ``refresh`` and may otherwise be
reused from ``extra`` (then ``fresh`` is False: a chord step).  The merit is

    f(z) = 0.5 |scaled r(z)|^2

and a trial point z + alpha dz is accepted on Armijo decrease,
f_try < (1 - 1e-4 alpha) f.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["NewtonState", "damped_newton"]

MAX_BACKTRACK = 30  # the loop stops when the step length falls below 2^-MAX_BACKTRACK


class NewtonState(NamedTuple):
    """The loop state; after the loop, ``z``/``r``/``f``/``aux`` describe the solution."""

    k: jax.Array  # loop iterations (trial points evaluated)
    z: jax.Array  # current accepted point
    r: jax.Array  # residual at z
    f: jax.Array  # merit 0.5 |scaled r|^2 at z
    aux: object  # what ``evaluate`` returned at z
    extra: object  # what ``direction`` returned at z (e.g. a reusable Jacobian part)
    dz: jax.Array  # search direction from z
    fresh: jax.Array  # dz was computed with a fresh (exact) Jacobian
    alpha: jax.Array  # current step length along dz
    step: jax.Array  # size of the last accepted step, relative to 1 + |z|
    done: jax.Array


def _select(pred, new, old):
    """``new`` where ``pred`` else ``old``, leaf by leaf (pytrees of equal structure)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def damped_newton(evaluate, direction, z0, aux0, extra0, tol, max_iter, reuse=0.1, refresh0=True):
    """Damped (chord-)Newton with backtracking from z0 (n,); -> the final ``NewtonState``.

    ``aux0``/``extra0``: placeholders with the structure of ``evaluate``'s aux and
    ``direction``'s extra (``extra0`` is also the reusable part the first direction
    may start from).  Each iteration evaluates the residual at z + alpha dz.  An
    accepted point gets a new direction (alpha = 1); the Jacobian is refreshed there
    unless the step was a full step that cut f by at least the factor ``reuse`` (the
    chord step contracts well, so the stale part is good enough).  A rejected stale
    step is retried from z along a fresh direction; a rejected fresh step halves
    alpha.  Iteration 0 evaluates z0 itself; its direction is refreshed iff
    ``refresh0`` (False: start with the reusable part in ``extra0``).  It stops after
    ``max_iter`` evaluations, or at an accepted point whose new direction (the Newton
    increment, its error estimate) or whose last step is below ``tol`` relative to
    1 + |z|, or whose residual is at round-off, or when alpha < 2^-MAX_BACKTRACK.
    Every callable is traced once, which keeps compilation small.
    """
    dt = z0.dtype
    f_tiny = 0.5 * z0.size * (4 * jnp.finfo(dt).eps) ** 2  # rms scaled residual <= 4 eps: round-off

    def body(st: NewtonState) -> NewtonState:
        z_try = st.z + st.alpha * st.dz
        r, rs, aux = evaluate(z_try)
        f_try = 0.5 * jnp.sum(rs * rs)
        f_try = jnp.where(jnp.isfinite(f_try), f_try, jnp.inf)
        accept = f_try < (1.0 - 1e-4 * st.alpha) * st.f
        need_dir = accept | ~st.fresh  # accepted, or a stale step failed: new direction
        refresh = jnp.where(
            st.k == 0, refresh0, ~accept | (st.alpha < 1.0) | (f_try > reuse * st.f)
        )
        z_new, r_new, aux_new = _select(accept, (z_try, r, aux), (st.z, st.r, st.aux))

        def new_direction(_):
            dz, extra, fresh = direction(z_new, r_new, aux_new, st.extra, refresh)
            return jnp.where(jnp.all(jnp.isfinite(dz)), dz, 0.0), extra, jnp.asarray(fresh, bool)

        dz, extra, fresh = lax.cond(need_dir, new_direction, lambda _: (st.dz, st.extra, st.fresh), None)
        moved = accept & (st.k > 0)
        step = jnp.where(
            moved, jnp.max(jnp.abs(st.alpha * st.dz) / (1.0 + jnp.abs(st.z))), st.step
        )
        alpha = jnp.where(need_dir, 1.0, 0.5 * st.alpha).astype(dt)
        # The Newton increment from the accepted point estimates its error when the
        # Jacobian is trusted: fresh, or stale but just seen to contract (else refreshed);
        # not a warm-start Jacobian that has not yet taken a step.
        trusted = accept & ((st.k > 0) | refresh0)
        increment = jnp.max(jnp.abs(dz) / (1.0 + jnp.abs(z_new)))
        done = (
            (moved & (step < tol)) | (trusted & (increment < tol)) | (accept & (f_try <= f_tiny))
            | (alpha < 2.0**-MAX_BACKTRACK)
        )
        return NewtonState(
            st.k + 1, z_new, r_new, jnp.where(accept, f_try, st.f), aux_new,
            extra, dz, fresh, alpha, step, done,
        )

    init = NewtonState(
        k=jnp.asarray(0), z=z0, r=jnp.zeros_like(z0), f=jnp.asarray(jnp.inf, dt), aux=aux0,
        extra=extra0, dz=jnp.zeros_like(z0), fresh=jnp.asarray(True), alpha=jnp.asarray(0.0, dt),
        step=jnp.asarray(jnp.inf, dt), done=jnp.asarray(False),
    )
    return lax.while_loop(lambda st: (st.k < max_iter) & ~st.done, body, init)
