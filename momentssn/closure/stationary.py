"""Stationary moments of the Gaussian closure, by Newton's method, with implicit gradients.

The stationary point (see ``momentssn.closure.equations``) couples the mean mu (N,) and the
covariance S (N, N) only through the variances s = diag(S) (N,): given (mu, s),
the gains gamma fix J, the cross-covariance X is a linear solve and S a Lyapunov
solve.  We therefore solve the reduced 2N-dimensional root problem

    r1(mu, s) = -mu + h + W nu(mu, s)               = 0      (mean, mV)
    r2(mu, s) = s - diag S(gamma(mu, s))            = 0      (variances, mV^2)

by damped chord-Newton (``momentssn.closure.newton``: backtracking on |r|^2) with the
Jacobian

    dr/dz = [[-I + W diag(nu_mu),      W diag(nu_s)         ],
             [-K diag(gamma_mu),       I - K diag(gamma_s)  ]],   K = d diag(S) / d gamma.

K comes from one eigendecomposition J = V Lambda V^-1: with A = T^-1 W,
B = (J - I/tau_eta)^-1 A, X' = T^-1 X^T and C_jk = -1/(lambda_j + lambda_k),

    K_im = 2 Re sum_jk V_ij V_ik C_jk [(V^-1 A)_jm (V^-1 S)_km - (V^-1 X')_jm (V^-1 B)_km],

the derivative of the Lyapunov solution along dJ = A[:, m] e_m^T (with the induced
change of X).  K (an eigendecomposition and an O(N^4) contraction) dominates the cost
of an iteration, so it is reused from one iterate to the next while the steps contract
the merit by 10x or more (a chord method; the other blocks are exact at every
iterate), and recomputed otherwise: from the default start, random E/I networks of
N = 50-200 take 1 K and 4-5 residuals (exact Newton: a K at each of those iterates).
A ``WarmStart`` can also hand in the K of a nearby solve (``info.warm_start``, e.g.
the previous evaluation of a fit): then a solve typically needs no K at all.  The
residual itself always uses the sign-function Lyapunov solver (``closure.lyapunov``),
so the final accuracy does not depend on the conditioning of V.  The mean is first
brought near its fixed point by Newton on r1 alone with s fixed at the noise-only
variances (cheap: no Lyapunov solve).

That start can lie outside the basin of the fixed point the network actually
reaches: in strongly coupled networks (the published Echeveste et al. 2020 network
is one) the noise-only variances make J unstable there, or the mean-only problem
has no nearby root.  When Newton from the default start finds no stable fixed
point, the moment ODE (``closure.transient``) is relaxed from rest for 50 RK4
steps of min(tau, tau_eta) / 5 and Newton is run again from there, so the answer is
the stationary state that the dynamics from rest settle into.  The relaxation only
supplies a start; the root itself is still found by Newton to round-off.

Gradients (``jax.custom_vjp``) are implicit, never unrolled: with z* the root,
w = (dF/dz)^T out_bar for the outputs F = (mu, S(z, theta)), and lambda solving
(dr/dz)^T lambda = w,

    theta_bar = (dF/dtheta)^T out_bar - (dr/dtheta)^T lambda,

which costs one exact Jacobian at the root, two adjoint Lyapunov solves (with J^T)
and one dense 2N solve.  The exact K at the root is computed by the forward pass of a
differentiated solve (unless Newton's last K was already computed there), so it is
also the K that ``info.warm_start`` hands to the next solve.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import equations as closure
from ..errors import UnstableNetworkError
from .lyapunov import lyapunov_known_solution, solve_lyapunov
from .newton import damped_newton
from .._util import is_traced
from ..model import SSN
from .arguments import check_moments, check_net, check_stimulus
from ..moments import Moments, symmetrize
from .transient import relax_from_rest

__all__ = [
    "SolveInfo",
    "WarmStart",
    "stationary_moments",
    "stationary_solve",
    "noise_only_variance",
    "cross_covariance",
    "raise_if_unstable",
]

_MAX_NEWTON = 40
_AT_ROOT = 1e-10  # a K computed this close (relative) to the root is used as the exact one
_MAX_FIRST = 16  # residual evaluations from the default start, before falling back ...
_MAX_ITER = _MAX_NEWTON  # ... and from the relaxed start (a failed trial point in a fit
# costs both, so they are kept short: from a start in the basin Newton needs <= ~15)
_RELAX_STEPS = 50  # RK4 steps of the moment ODE from rest for the fallback start


class WarmStart(NamedTuple):
    """Where the stationary solver starts (one row per stimulus for batches).

    z: (.., 2N) means and variances (mu, diag S) (mV, mV^2).
    sensitivity: (.., N, N) K = d diag(S) / d gamma (mV^3 s) for Newton's Jacobian
        from the first iterate on; NaN: computed at the first iterate.  A K from a
        nearby solve (the previous evaluation of a fit) saves that computation, the
        most expensive part of an iteration; a poor one only costs a recomputation.
    """

    z: jax.Array
    sensitivity: jax.Array


class SolveInfo(NamedTuple):
    """Diagnostics of a stationary solve (one entry per stimulus for batches).

    converged: bool, Newton met its tolerance.
    iterations: number of coupled Newton iterations.
    residual: max |r| of the final point, relative (mean: to 1 + |mu|; variances: to s).
    max_real_eig: largest real part of the eigenvalues of J at the solution (1/ms);
        the fixed point is stable iff < 0.
    warm_start: ``WarmStart`` at the solution (its K is the one of Newton's last
        Jacobian, exact at the solution when the solve was differentiated): pass it
        as ``init`` to the next solve at nearby parameters.
    mean_residual: max |-mu + h + W nu| / (1 + |mu|) at Newton's final iterate of a
        failed solve; ~0 when that iterate is a fixed point of the mean (then an
        unconverged solve with max_real_eig >= 0 means: the fixed point is unstable,
        no stationary covariance exists there).  0 for a stable converged solve (a
        root is a fixed point of the mean); None when not computed.
    """

    converged: jax.Array
    iterations: jax.Array
    residual: jax.Array
    max_real_eig: jax.Array
    warm_start: Optional[WarmStart] = None
    mean_residual: Optional[jax.Array] = None

    @property
    def stable(self) -> jax.Array:
        return self.converged & (self.max_real_eig < 0)


def noise_only_variance(net: SSN) -> jax.Array:
    """Stationary Var(u_i) for W = 0: Sigma_ii tau_eta / (tau_i + tau_eta), (N,) mV^2."""
    check_net(net)
    Sig = jnp.diagonal(net.noise_cov)
    return Sig * net.tau_noise / (net.tau + net.tau_noise)


# --------------------------------------------------------------------------- closure at z
def _closure_at(net: SSN, z: jax.Array, S_known=None):
    """The closure at z = (mu, s) (2N,): everything the residual and Jacobian need.

    Returns a dict: nu, gamma, their elementwise derivatives d/dmu and d/ds (one
    expectation call for values and both tangents), J, X and S.  ``S_known``: the
    Lyapunov solution at z, already computed (then it is not solved for again; its
    reverse-mode derivatives are those of the solve).
    """
    N = net.N
    mu, s = z[:N], z[N:]
    nu, gamma, d_mu, d_s = closure.expectations_with_derivatives(net, mu, s)
    J = closure.effective_jacobian(net, gamma)
    X = closure.stationary_cross_cov(net, J)
    Q = closure.lyapunov_rhs(net, X)
    S = solve_lyapunov(J, Q) if S_known is None else lyapunov_known_solution(J, Q, S_known)
    return dict(nu=nu, gamma=gamma, d_mu=d_mu, d_s=d_s, J=J, X=X, S=symmetrize(S))


def _residual(net: SSN, h: jax.Array, z: jax.Array, S_known=None):
    """r(z) (2N,) and the closure at z = (mu, s) (see ``_closure_at``)."""
    N = net.N
    c = _closure_at(net, z, S_known)
    r = jnp.concatenate([-z[:N] + h + net.W @ c["nu"], z[N:] - jnp.diagonal(c["S"])])
    return r, c


def _scaled(r: jax.Array, z: jax.Array, N: int) -> jax.Array:
    """Residual relative to the size of the unknowns (used for tolerances and merit)."""
    scale = jnp.concatenate([1.0 + jnp.abs(z[:N]), jnp.maximum(jnp.abs(z[N:]), 1e-8)])
    return r / scale


def _variance_sensitivity(net: SSN, J, S, X):
    """K = d diag(S) / d gamma (N, N) and the eigenvalues of J (see module docstring)."""
    N = net.N
    lam, V = jnp.linalg.eig(J)
    Vi = jnp.linalg.inv(V)
    C = -1.0 / (lam[:, None] + lam[None, :])
    A = net.W / net.tau[:, None]
    B = jnp.linalg.solve(J - jnp.eye(N, dtype=J.dtype) / net.tau_noise, A)
    R = jnp.concatenate([A, S, X.T / net.tau[:, None], B], axis=1)  # (N, 4N) real
    Rt = lax.complex(Vi.real @ R, Vi.imag @ R)  # V^-1 [A, S, X', B]: real matmuls
    At, St, Xt, Bt = jnp.split(Rt, 4, axis=1)
    # T_ijk = V_ij V_ik C_jk is symmetric in (j, k): sum over j <= k only (half the work),
    # with weight 2 off the diagonal and the (j, k)-symmetrized G.  Pairs index rows
    # (row gathers are much faster than column gathers on CPU).
    iu, ju = np.triu_indices(N)
    w = np.where(iu == ju, 1.0, 2.0)
    Vt = V.T
    Tt = Vt[iu] * Vt[ju] * (C[iu, ju] * w)[:, None]  # (P, N), P = N (N + 1) / 2
    G = 0.5 * (At[iu] * St[ju] + At[ju] * St[iu] - Xt[iu] * Bt[ju] - Xt[ju] * Bt[iu])  # (P, N)
    # K = 2 Re(T^T G) = 2 (Re T^T Re G - Im T^T Im G): one real contraction, half the
    # flops of a complex product whose imaginary part would be thrown away
    Tr = jnp.concatenate([Tt.real, -Tt.imag], axis=0)
    Gr = jnp.concatenate([G.real, G.imag], axis=0)
    K = 2.0 * jnp.einsum("pi,pm->im", Tr, Gr)
    return K, lam


def _jacobian(net: SSN, c, K):
    """dr/dz (2N, 2N) from the closure ``c`` at z and K = d diag(S) / d gamma.

    Exact when K is that of z (``_variance_sensitivity``); with a K from an earlier
    iterate it is the chord Jacobian.
    """
    N = net.N
    nu_mu, g_mu = c["d_mu"]
    nu_s, g_s = c["d_s"]
    eye = jnp.eye(N, dtype=c["J"].dtype)
    top = jnp.concatenate([-eye + net.W * nu_mu[None, :], net.W * nu_s[None, :]], axis=1)
    bot = jnp.concatenate([-K * g_mu[None, :], eye - K * g_s[None, :]], axis=1)
    return jnp.concatenate([top, bot], axis=0)


# --------------------------------------------------------------------------- Newton
def _mean_newton(net: SSN, h, mu0, s):
    """Newton on r1(mu) = -mu + h + W nu(mu, s) with s fixed (no Lyapunov solve); -> mu."""
    N = net.N
    eye = jnp.eye(N, dtype=mu0.dtype)

    def evaluate(m):
        nu, gamma = closure.expectations(net, m, s)
        r = -m + h + net.W @ nu
        return r, r / (1.0 + jnp.abs(m)), gamma

    def direction(m, r, gamma, extra, refresh):  # d nu / d mu = gamma (Stein's lemma)
        return jnp.linalg.solve(-eye + net.W * gamma[None, :], -r), (), True

    st = damped_newton(evaluate, direction, mu0, jnp.zeros_like(mu0), (), 1e-8, _MAX_NEWTON)
    return st.z


def _newton(net: SSN, h, z0, K0, tol, max_iter):
    """Coupled damped chord-Newton on r(z) = 0 (module docstring).

    The Jacobian's mean rows and the gain derivatives are exact at every iterate; K
    (an eigendecomposition and an O(N^4) contraction, the expensive part) is
    recomputed only when the previous step contracted poorly.  A finite K0 (e.g. from
    the previous solve of a fit) is used from the first iterate on; NaN: computed there.

    Returns (state, converged, rms scaled residual); ``state.aux`` is the closure at
    the solution and ``state.extra`` = (K, eigenvalues of J, z where they were computed).
    """
    N = net.N
    dt = z0.dtype

    def evaluate(z):
        r, c = _residual(net, h, z)
        return r, _scaled(r, z, N), c

    def direction(z, r, c, old, refresh):
        def fresh_K():
            K, lam = _variance_sensitivity(net, c["J"], c["S"], c["X"])
            return K, lam, z

        K, lam, zK = lax.cond(refresh, fresh_K, lambda: old)
        return jnp.linalg.solve(_jacobian(net, c, K), -r), (K, lam, zK), refresh

    aux0 = jax.eval_shape(lambda z: _residual(net, h, z)[1], z0)
    aux0 = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), aux0)
    cdt = jnp.result_type(dt, jnp.complex64)
    # (K, eigenvalues of J, the point where both were computed; NaN: nowhere yet)
    have_K0 = jnp.all(jnp.isfinite(K0))
    extra0 = (jnp.where(have_K0, K0, 0.0), jnp.zeros((N,), cdt), jnp.full_like(z0, jnp.nan))
    st = damped_newton(evaluate, direction, z0, aux0, extra0, tol, max_iter, refresh0=~have_K0)
    res = jnp.sqrt(2.0 * st.f / (2 * N))  # rms scaled residual
    converged = jnp.isfinite(st.f) & (res < jnp.sqrt(tol))
    return st, converged, res


def _initial_guess(net: SSN, h):
    """Default Newton start (2N,): the mean fixed point at the noise-only variances."""
    s0 = noise_only_variance(net)
    mu0 = _mean_newton(net, h, h, s0)
    return jnp.concatenate([mu0, s0])


def _tolerance(dtype) -> float:
    return 1e-13 if dtype == jnp.float64 else 1e-6


# --------------------------------------------------------------------------- implicit VJP
@jax.custom_vjp
def _solve_core(net: SSN, h: jax.Array, z0: jax.Array, K0: jax.Array):
    """(mu, S, aux, K): aux = [converged, iterations, residual, max_real_eig,
    mean_residual] (floats);
    K (N, N) the variance sensitivity of the last Newton Jacobian, a warm start for the
    next solve (at the root when differentiated, see ``_solve``)."""
    out, _ = _solve(net, h, z0, K0, exact_K=False)
    return out


def _attempt(net, h, z0, K0, max_iter, exact_K: bool):
    """Newton from z0 -> (state, converged, residual, K, eigenvalues of J at the end).

    ``exact_K``: return K at the final iterate (what the implicit gradient needs; its
    eigendecomposition gives the eigenvalues too); otherwise the last K Newton used,
    and only the eigenvalues at the final iterate."""
    N = net.N
    st, converged, res = _newton(net, h, z0, K0, _tolerance(z0.dtype), max_iter)
    z, c = st.z, st.aux
    K, lam, zK = st.extra
    # K and the eigenvalues are those of the final iterate when they were computed
    # within round-off of it (typical from a warm start); otherwise recompute what is
    # needed.  Stability is judged at the last iterate also when Newton failed, or
    # when the Lyapunov solve never succeeded because J was unstable from the start.
    at_root = jnp.max(jnp.abs(z - zK) / (1.0 + jnp.abs(z))) <= _AT_ROOT  # False if zK is NaN
    # J from z itself: ``c`` is only a placeholder if no point was ever accepted
    J_end = lambda: closure.jacobian_at(net, z[:N], z[N:])  # noqa: E731
    if exact_K:
        K, lam = lax.cond(at_root, lambda: (K, lam), lambda: _variance_sensitivity(net, J_end(), c["S"], c["X"]))
    else:
        lam = lax.cond(at_root, lambda: lam, lambda: jnp.linalg.eigvals(J_end()).astype(lam.dtype))
    return st, converged, res, K, lam


def _from_rest(net, h):
    """Start (2N,) = (mu, diag S) after relaxing the moment ODE from rest for
    ``_RELAX_STEPS`` RK4 steps of min(tau, tau_eta) / 5 (10 min(tau) ms in all)."""
    dt = jnp.minimum(jnp.min(net.tau), net.tau_noise) / 5.0
    mu, S, _ = relax_from_rest(net, h, _RELAX_STEPS, dt)
    return jnp.concatenate([mu, jnp.diagonal(S)])


def _mean_residual(net: SSN, h, z) -> jax.Array:
    """max |-mu + h + W nu(mu, s)| / (1 + |mu|) at z = (mu, s) (2N,): ~0 at a fixed
    point of the mean (one expectation, no Lyapunov solve)."""
    mu, s = z[: net.N], z[net.N :]
    nu, _ = closure.expectations(net, mu, s)
    return jnp.max(jnp.abs(-mu + h + net.W @ nu) / (1.0 + jnp.abs(mu)))


def _solve(net, h, z0, K0, exact_K: bool):
    """The forward solve; -> ((mu, S, aux, K), residuals for the backward pass)."""
    N = net.N
    z0, K0 = lax.stop_gradient((z0, K0))
    # Attempt 0: Newton from z0.  Attempt 1, only when attempt 0 found no stable fixed
    # point (strong networks can have a mean-only guess far outside the basin, or a
    # stationary Lyapunov problem that is unstable there, although the dynamics from
    # rest settle): relax the moment ODE from rest into that basin and solve again
    # (with a fresh K).  If that fails too, attempt 0 is reported (as without the
    # fallback): its iterate lies near the mean fixed point, whose eigenvalues say more
    # than wherever a failed relaxation stopped.  One loop over the attempts traces
    # Newton only once.
    def stable(r):
        return r[1] & (jnp.max(jnp.real(r[4])) < 0)

    def body(carry):
        k, best, iters = carry
        start = lax.cond(k == 0, lambda: z0, lambda: _from_rest(net, h))
        K_start = jnp.where(k == 0, K0, jnp.nan)
        new = _attempt(net, h, start, K_start, jnp.where(k == 0, _MAX_FIRST, _MAX_ITER), exact_K)
        take = (k == 0) | stable(new)
        best = jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), new, best)
        return k + 1, best, iters + new[0].k

    shapes = jax.eval_shape(lambda: _attempt(net, h, z0, K0, _MAX_FIRST, exact_K))
    empty = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    _, best, iters = lax.while_loop(
        lambda c: (c[0] == 0) | ((c[0] == 1) & ~stable(c[1])), body, (jnp.asarray(0), empty, jnp.asarray(0))
    )
    st, converged, res, K, lam_end = best
    z = st.z
    max_eig = jnp.max(jnp.real(lam_end)).astype(z.dtype)
    # only a failed solve needs it (for its error message): no cost on success
    mean_res = lax.cond(converged & (max_eig < 0), lambda: jnp.zeros((), z.dtype),
                        lambda: _mean_residual(net, h, z).astype(z.dtype))
    aux = jnp.stack([converged.astype(z.dtype), iters.astype(z.dtype), res, max_eig, mean_res])
    return (z[:N], st.aux["S"], aux, K), (net, h, z, st.aux, K)


def _solve_fwd(net, h, z0, K0):
    return _solve(net, h, z0, K0, exact_K=True)


def _solve_bwd(saved, cts):
    net, h, z, c, K = saved  # K is exact at the root z
    mu_bar, S_bar, _, _ = cts
    N = net.N
    Jz = _jacobian(net, c, K)

    def outputs(z_, net_, h_):  # (mu, S) and the residual r, from one closure evaluation
        r, c_ = _residual(net_, h_, z_, S_known=c["S"])  # S at the root: no forward solve
        return z_[:N], c_["S"], r

    # one linearization, pulled back twice: the outputs' cotangent, then lambda on r
    (_, S0, r0), vjp = jax.vjp(outputs, z, net, h)
    w_z, w_net, w_h = vjp((mu_bar, S_bar, jnp.zeros_like(r0)))
    lam = jnp.linalg.solve(Jz.T, w_z)
    _, r_net, r_h = vjp((jnp.zeros_like(mu_bar), jnp.zeros_like(S0), lam))
    net_bar = jax.tree_util.tree_map(lambda a, b: a - b, w_net, r_net)
    return net_bar, w_h - r_h, jnp.zeros_like(z), jnp.zeros_like(K)


_solve_core.defvjp(_solve_fwd, _solve_bwd)


def _solve_one(net: SSN, h: jax.Array, init: Optional[WarmStart]):
    # The starting point carries no derivative information (implicit VJP).
    guess = lambda: _initial_guess(*lax.stop_gradient((net, h)))  # noqa: E731
    if init is None:
        z0, K0 = guess(), jnp.full((net.N, net.N), jnp.nan, h.dtype)
    else:  # a warm start with non-finite entries means "no warm start" (K: "compute it")
        z0 = lax.cond(jnp.all(jnp.isfinite(init.z)), lambda: init.z, guess)
        K0 = init.sensitivity
    mu, S, aux, K = _solve_core(net, h, z0, K0)
    # diagnostics and warm starts carry no derivative (and stay concrete in eager grad)
    aux, warm = lax.stop_gradient((aux, WarmStart(jnp.concatenate([mu, jnp.diagonal(S)]), K)))
    info = SolveInfo(aux[0] > 0.5, aux[1].astype(jnp.int32), aux[2], aux[3], warm, aux[4])
    return Moments(mu, S), info


@functools.partial(jax.jit, static_argnames=("has_init",))
def _solve_batched(net: SSN, h: jax.Array, init, has_init: bool):
    """One stimulus, or a batch solved one after the other with ``lax.map``.

    Stimuli are mapped sequentially rather than vmapped: a vmapped Newton loop runs
    every stimulus for as many iterations as the slowest one (and both branches of
    its ``cond``), and vmapped nested while loops have been seen to wedge XLA's CPU
    thread pool.
    """
    if h.ndim == 1:
        return _solve_one(net, h, init if has_init else None)
    if has_init:
        return lax.map(lambda a: _solve_one(net, a[0], a[1]), (h, init))
    return lax.map(lambda hh: _solve_one(net, hh, None), h)


def _warm_start(net: SSN, h, init) -> Optional[WarmStart]:
    """``init`` as a WarmStart: a WarmStart, a Moments (mean, cov) or a (.., 2N) vector
    (mu, s) (the last two with K = NaN: computed at the first iterate)."""
    if init is None:
        return None
    K = None
    if isinstance(init, WarmStart):
        init, K = init.z, jnp.asarray(init.sensitivity, dtype=net.W.dtype)
    elif isinstance(init, Moments):
        s = jnp.diagonal(init.cov, axis1=-2, axis2=-1)
        init = jnp.concatenate([init.mean, s], axis=-1)
    init = jnp.asarray(init, dtype=net.W.dtype)
    if init.shape != h.shape[:-1] + (2 * net.N,):
        raise ValueError(f"init must have shape {h.shape[:-1] + (2 * net.N,)}, got {init.shape}")
    shape_K = h.shape[:-1] + (net.N, net.N)
    if K is None:
        K = jnp.full(shape_K, jnp.nan, dtype=net.W.dtype)
    elif K.shape != shape_K:
        raise ValueError(f"init.sensitivity must have shape {shape_K}, got {K.shape}")
    return WarmStart(init, K)


def stationary_solve(net: SSN, h, init=None):
    """Stationary moments and solver diagnostics, never raising on instability.

    Args:
        net: the network (float64 leaves recommended; see the package docstring).
        h: (N,) or (B, N) feedforward input (mV).
        init: optional warm start: a ``WarmStart`` (e.g. ``info.warm_start`` of a
            solve at nearby parameters: the fastest), a ``Moments`` or a (.., 2N)
            array (mu, diag S); a stimulus whose start has non-finite entries uses the
            default start.

    Returns:
        (Moments(mean (.., N), cov (.., N, N)), SolveInfo) — check ``info.stable``;
        the moments of unstable/unconverged stimuli are meaningless.  Usable inside
        ``jit``/``grad``/``vmap`` (this is what fitting uses).

    Raises:
        ValueError: net not an SSN, h not (N,) or (B, N) (B >= 1) or (outside
            ``jit``) not finite, init of the wrong shape.
    """
    h = check_stimulus(net, h)
    init = _warm_start(net, h, init)
    return _solve_batched(net, h, init, init is not None)


def stationary_moments(net: SSN, h, init=None) -> Moments:
    """Stationary mean and covariance of u under the Gaussian closure.

    Solves the joint fixed point of the mean equation and the Lyapunov equation
    (module docstring) to ~1e-13 relative accuracy in float64.

    Args:
        net: the network.
        h: (N,) or (B, N) feedforward input (mV).
        init: optional warm start (``WarmStart``, ``Moments`` or (.., 2N) array
            (mu, diag S); see ``stationary_solve``).

    Returns:
        ``Moments(mean (.., N) mV, cov (.., N, N) mV^2)``.  Differentiable w.r.t.
        every leaf of ``net`` and ``h`` by implicit differentiation.

    Raises:
        ValueError: a bad argument (see ``stationary_solve``).
        UnstableNetworkError: no stable fixed point; the message says which: Newton
            found no fixed point (the mean dynamics may diverge), or the fixed point
            is unstable (J has an eigenvalue with real part >= 0, given).  Only when
            called eagerly; inside ``jit``/``grad`` use ``stationary_solve`` and its
            ``SolveInfo``.
    """
    m, info = stationary_solve(net, h, init)
    if not is_traced(info):
        raise_if_unstable(info)
    return m


def raise_if_unstable(info: SolveInfo) -> None:
    """Raise ``UnstableNetworkError`` for the first stimulus in ``info`` without a
    stable fixed point, saying what failed: the fixed point is unstable (with the
    largest real part of J's eigenvalues; also when Newton stopped at a fixed point
    of the mean where J is unstable, so that no stationary covariance exists), or
    Newton found no fixed point."""
    conv = np.atleast_1d(np.asarray(info.converged))
    eig = np.atleast_1d(np.asarray(info.max_real_eig, dtype=float))
    res = np.atleast_1d(np.asarray(info.residual, dtype=float))
    iters = np.atleast_1d(np.asarray(info.iterations))
    mean_res = np.atleast_1d(np.asarray(
        np.inf if info.mean_residual is None else info.mean_residual, dtype=float))
    for b in range(conv.size):
        if conv[b] and eig[b] < 0:
            continue
        unstable_J = f"largest real part of the eigenvalues of J = {eig[b]:+.4g} /ms"
        if conv[b]:
            what = unstable_J if np.isfinite(eig[b]) else "the eigenvalues of J are not finite"
            msg = f"the fixed point for stimulus {b} is unstable: {what}"
        elif eig[b] >= 0 and mean_res[b if mean_res.size > 1 else 0] < 1e-6:
            msg = (f"the fixed point for stimulus {b} is unstable: {unstable_J} at the fixed "
                   f"point of the mean that Newton reached (so no stationary covariance exists)")
        else:
            at_end = f"; at its last iterate J is unstable ({unstable_J})" if eig[b] >= 0 else ""
            msg = (f"Newton found no fixed point for stimulus {b} (relative residual {res[b]:.3g} "
                   f"after {int(iters[b])} iterations): the mean dynamics may diverge for this "
                   f"input{at_end}")
        raise UnstableNetworkError(msg, max_real_eig=float(eig[b]), stimulus=b)


def cross_covariance(net: SSN, moments: Moments) -> jax.Array:
    """Stationary Cov(u, eta) (.., N, N) at given stationary moments (mV^2).

    ``moments``: ``Moments(mean (N,) or (B, N), cov (.., N, N))``, finite.
    """
    check_net(net)
    batch = tuple(jnp.shape(moments.mean)[:-1]) if isinstance(moments, Moments) else ()
    if len(batch) > 1:
        raise ValueError(f"moments.mean must have shape ({net.N},) or (B, {net.N}), got "
                         f"{jnp.shape(moments.mean)}")
    moments = check_moments(net, moments, batch)

    def one(mu, S):
        return closure.stationary_cross_cov(net, closure.jacobian_at(net, mu, jnp.diagonal(S)))

    if moments.mean.ndim == 2:
        return jax.vmap(one)(moments.mean, moments.cov)
    return one(moments.mean, moments.cov)

