"""A differentiable continuous-time Lyapunov solver that runs on CPU and GPU.

Solves, for a stable (Hurwitz) matrix A (N, N) and a matrix Q (N, N),

    A X + X A^T + Q = 0.

The forward solve is the matrix-sign-function iteration of Roberts (1980) with
determinant scaling (Byers 1987); it needs only LU inverses and matrix products, so
it runs on any JAX backend (unlike ``jax.scipy.linalg.solve_sylvester``, which is a
CPU-only Schur method without derivative rules)::

    Z_0 = A,  Y_0 = Q
    c_k = |det Z_k|^(-1/N)
    Z_{k+1} = (c_k Z_k + (c_k Z_k)^-1) / 2          -> sign(A) = -I
    Y_{k+1} = (c_k Y_k + c_k^-1 Z_k^-1 Y_k Z_k^-T) / 2 -> 2 X

Derivatives never unroll that iteration.  The solve is wrapped in
``jax.lax.custom_linear_solve`` for the linear operator L(X) = A X + X A^T, so
forward and reverse mode are implicit:

    dX     = L^-1(-(dA X + X dA^T + dQ))             (tangent: another Lyapunov solve)
    Q_bar  = Y,  A_bar = Y X^T + Y^T X,  with  A^T Y + Y A + X_bar = 0
                                                     (adjoint: a Lyapunov solve with A^T)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ..model import check_finite

__all__ = ["solve_lyapunov", "lyapunov_known_solution"]

_MAX_ITERS = 60


def _sign_iteration(A: jax.Array, Q: jax.Array) -> jax.Array:
    """X with A X + X A^T + Q = 0 (A Hurwitz) by the scaled sign-function iteration.

    Returns NaN entries if A is not Hurwitz (the iteration then converges to a
    sign matrix != -I); callers check stability themselves.
    """
    n = A.shape[-1]
    eye = jnp.eye(n, dtype=A.dtype)
    tol = 10 * n * jnp.finfo(A.dtype).eps

    def cond(state):
        k, Z, _, err = state
        return (k < _MAX_ITERS) & (err > tol)

    def body(state):
        k, Z, Y, _ = state
        Zi = jnp.linalg.inv(Z)
        # Determinant scaling while far from convergence; plain Newton near it.
        _, logdet = jnp.linalg.slogdet(Z)
        c = jnp.where(k < 8, jnp.exp(-logdet / n), 1.0)
        Zn = 0.5 * (c * Z + Zi / c)
        Yn = 0.5 * (c * Y + (Zi @ Y @ Zi.T) / c)
        err = jnp.max(jnp.sum(jnp.abs(Zn - Z), axis=0)) / jnp.maximum(
            1.0, jnp.max(jnp.sum(jnp.abs(Zn), axis=0))
        )
        return k + 1, Zn, Yn, err

    init = (jnp.asarray(0), A, Q, jnp.asarray(jnp.inf, A.dtype))
    k, Z, Y, err = lax.while_loop(cond, body, init)
    X = 0.5 * Y
    # Z must have converged to -I (A Hurwitz); otherwise flag the result.
    ok = jnp.max(jnp.abs(Z + eye)) < 1e-6
    return jnp.where(ok, X, jnp.nan)


def solve_lyapunov(A: jax.Array, Q: jax.Array) -> jax.Array:
    """Solve ``A X + X A^T + Q = 0`` for X, with implicit derivatives.

    Args:
        A: (N, N) Hurwitz matrix (every eigenvalue has negative real part).
        Q: (N, N) right-hand side (symmetric Q gives a symmetric X).

    Returns:
        X: (N, N).  NaN if A is not Hurwitz (check stability before calling: this
        primitive is used inside solvers that test trial points this way).

    Raises:
        ValueError: A or Q not (N, N) or (values checked outside ``jit``) not finite.

    Differentiable in A and Q in forward and reverse mode; each tangent or
    cotangent costs one more Lyapunov solve (with A, resp. A^T).  Batch with vmap.
    """
    if jnp.ndim(A) != 2 or jnp.shape(A)[0] != jnp.shape(A)[1] or jnp.shape(A)[0] == 0:
        raise ValueError(f"A must be a square (N, N) matrix, got shape {jnp.shape(A)}")
    if jnp.shape(Q) != jnp.shape(A):
        raise ValueError(f"Q must have the shape of A {jnp.shape(A)}, got {jnp.shape(Q)}")
    check_finite("A", A)
    check_finite("Q", Q)
    return _solve(A, Q)


def _solve(A: jax.Array, Q: jax.Array) -> jax.Array:
    """``solve_lyapunov`` without the checks (NaN entries if A is not Hurwitz)."""

    def matvec(X):  # L(X) = A X + X A^T
        return A @ X + X @ A.T

    def solve(_, B):  # L(X) = B  <=>  A X + X A^T + (-B) = 0
        return _sign_iteration(A, -B)

    def transpose_solve(_, B):  # L^T(Y) = A^T Y + Y A = B
        return _sign_iteration(A.T, -B)

    return lax.custom_linear_solve(matvec, -Q, solve, transpose_solve)


@jax.custom_vjp
def lyapunov_known_solution(A: jax.Array, Q: jax.Array, X: jax.Array) -> jax.Array:
    """X, already known to solve ``A X + X A^T + Q = 0``, with the reverse-mode
    derivatives of ``solve_lyapunov(A, Q)`` (a backward pass that has kept the
    solution skips the forward solve).

    Args:
        A: (N, N) Hurwitz matrix.
        Q: (N, N) right-hand side.
        X: (N, N) the solution (not checked; it gets no cotangent).

    Returns:
        X.  Reverse mode only (forward mode raises): with A^T Y + Y A = X_bar,
        A_bar = -(Y X^T + Y^T X), Q_bar = -Y (one Lyapunov solve with A^T).
    """
    return X


def _known_fwd(A, Q, X):
    return X, (A, X)


def _known_bwd(res, X_bar):
    A, X = res
    Y = _solve(A.T, -X_bar)  # A^T Y + Y A = X_bar
    return -(Y @ X.T + Y.T @ X), -Y, jnp.zeros_like(X)


lyapunov_known_solution.defvjp(_known_fwd, _known_bwd)
