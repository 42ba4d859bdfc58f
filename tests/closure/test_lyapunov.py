"""The differentiable Lyapunov solver against scipy and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from momentssn.closure.lyapunov import lyapunov_known_solution, solve_lyapunov


def _stable(rng, n, nonnormal=2.0):
    A = nonnormal * rng.normal(size=(n, n)) / np.sqrt(n)
    A = A - (np.linalg.eigvals(A).real.max() + 0.3) * np.eye(n)
    return A / 10.0  # rates ~ 1/ms scale of the SSN


@pytest.mark.parametrize("n", [1, 3, 40])
def test_matches_scipy(n):
    rng = np.random.default_rng(n)
    A = _stable(rng, n)
    Q = rng.normal(size=(n, n))
    Q = Q @ Q.T
    X = np.asarray(solve_lyapunov(jnp.asarray(A), jnp.asarray(Q)))
    ref = scipy.linalg.solve_continuous_lyapunov(A, -Q)
    assert np.max(np.abs(X - ref)) <= 1e-11 * np.max(np.abs(ref))
    assert np.max(np.abs(A @ X + X @ A.T + Q)) <= 1e-11 * np.max(np.abs(Q))


def test_unstable_matrix_gives_nan():
    A = jnp.array([[0.1, 0.0], [0.0, -1.0]])
    X = solve_lyapunov(A, jnp.eye(2))
    assert np.all(np.isnan(np.asarray(X)))


def _problem(rng, n):
    """A stable A (1/ms rates ~ 0.1-1) and a symmetric PSD Q, each (n, n)."""
    A = jnp.asarray(_stable(rng, n) * 10)
    Q = rng.normal(size=(n, n))
    return A, jnp.asarray(Q @ Q.T)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    n = 4
    A, Q = _problem(rng, n)
    f = lambda A, Q: jnp.sum(jnp.sin(solve_lyapunov(A, Q)))  # noqa: E731
    gA, gQ = jax.grad(f, argnums=(0, 1))(A, Q)
    dA, dQ = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    eps = 1e-6
    fd_A = (f(A + eps * dA, Q) - f(A - eps * dA, Q)) / (2 * eps)
    fd_Q = (f(A, Q + eps * dQ) - f(A, Q - eps * dQ)) / (2 * eps)
    assert np.isclose(np.sum(gA * dA), fd_A, rtol=1e-7, atol=1e-10)
    assert np.isclose(np.sum(gQ * dQ), fd_Q, rtol=1e-7, atol=1e-10)
    # forward mode too
    jv = jax.jvp(lambda A: solve_lyapunov(A, Q), (A,), (jnp.asarray(dA),))[1]
    fd = (solve_lyapunov(A + eps * dA, Q) - solve_lyapunov(A - eps * dA, Q)) / (2 * eps)
    assert np.max(np.abs(jv - fd)) <= 1e-7 * np.max(np.abs(fd))


def test_known_solution_has_the_derivatives_of_the_solve():
    rng = np.random.default_rng(1)
    n = 5
    A, Q = _problem(rng, n)
    X = solve_lyapunov(A, Q)
    w = jnp.asarray(rng.normal(size=(n, n)))
    f_solve = lambda A, Q: jnp.sum(w * jnp.sin(solve_lyapunov(A, Q)))  # noqa: E731
    f_known = lambda A, Q: jnp.sum(w * jnp.sin(lyapunov_known_solution(A, Q, X)))  # noqa: E731
    assert f_known(A, Q) == f_solve(A, Q)
    for g_known, g_solve in zip(jax.grad(f_known, (0, 1))(A, Q), jax.grad(f_solve, (0, 1))(A, Q)):
        assert np.max(np.abs(g_known - g_solve)) <= 1e-12 * np.max(np.abs(g_solve))


def test_vmap_batches():
    rng = np.random.default_rng(3)
    As = jnp.stack([jnp.asarray(_stable(rng, 5)) for _ in range(3)])
    Q = jnp.eye(5)
    X = jax.vmap(solve_lyapunov, in_axes=(0, None))(As, Q)
    for b in range(3):
        ref = scipy.linalg.solve_continuous_lyapunov(np.asarray(As[b]), -np.eye(5))
        assert np.allclose(X[b], ref, rtol=1e-10, atol=1e-12)
