"""Shared reference networks and numpy reference implementations for the tests."""

import functools

import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

import momentssn as ms
from momentssn.datasets import ECHEVESTE2020_PARAMS
from momentssn.networks import random_ei_network  # noqa: F401  (re-exported for tests)


def ou_stationary_cov(tau, noise_cov, tau_noise):
    """Exact stationary Cov(u) for W = 0: tau_i du_i = (-u_i + eta_i) dt, eta OU(tau_noise, Sigma).

    Cov(u_i, eta_j) = Sigma_ij tau_eta / (tau_i + tau_eta), and from the Lyapunov equation
    S_ij = tau_i tau_j / (tau_i + tau_j) * (X_ij / tau_j + X_ji / tau_i)   (X_ij = Cov(u_i, eta_j)).
    """
    tau = np.asarray(tau, float)
    X = noise_cov * tau_noise / (tau[:, None] + tau_noise)
    return tau[:, None] * tau[None, :] / (tau[:, None] + tau[None, :]) * (
        X / tau[None, :] + X.T / tau[:, None]
    )


def closure_rhs_numpy(net, h):
    """The moment ODEs for n = 2 in plain numpy (independent of momentssn.closure.equations)."""
    W, tau, Sig = np.asarray(net.W), np.asarray(net.tau), np.asarray(net.noise_cov)
    tn, k = float(net.tau_noise), float(net.k)
    N = len(tau)

    def f(t, y):
        mu, S, X = y[:N], y[N : N + N * N].reshape(N, N), y[N + N * N :].reshape(N, N)
        sd = np.sqrt(np.maximum(np.diag(S), 1e-300))
        a = mu / sd
        nu = k * ((mu**2 + sd**2) * norm.cdf(a) + mu * sd * norm.pdf(a))
        gam = 2 * k * (mu * norm.cdf(a) + sd * norm.pdf(a))
        J = (-np.eye(N) + W * gam[None, :]) / tau[:, None]
        dmu = (-mu + h + W @ nu) / tau
        Q = (X / tau[None, :]) + (X / tau[None, :]).T
        dS = J @ S + S @ J.T + Q
        dX = J @ X - X / tn + Sig / tau[:, None]
        return np.concatenate([dmu, dS.ravel(), dX.ravel()])

    return f


# The published Baseline15 parameters of Echeveste et al. (2020) (shipped with momentssn).
PUBLISHED_BASELINE15 = dict(ECHEVESTE2020_PARAMS)


#: Simulation settings of the correction tests (shared so their compiled simulation is reused).
CORRECTION_SIM = ms.SimulationSettings(n_trials=64, t_max=2500.0, burn_in=500.0, dt=0.5)


def teacher_theta(M: int = 2):
    """The published Baseline15 with its couplings scaled up 10x (m = 2: 25x fewer
    presynaptic cells than m = 50): (param, theta)."""
    param = ms.get_parameterization("baseline15", m=M)
    p = dict(ECHEVESTE2020_PARAMS)
    for k in ("a_ee", "a_ei", "a_ie", "a_ii"):
        p[k] *= 10.0
    return param, param.to_theta(p)


@functools.lru_cache(maxsize=2)
def teacher_task(M: int = 2):
    """Targets: the *simulated* moments (long run, small step) of ``teacher_theta`` at three
    ring inputs; its E means (1.8-4.4 mV) are near threshold, where the Gaussian closure is
    wrong, so a closure fit settles away from where simulation matches."""
    param, teacher = teacher_theta(M)
    bump = np.exp((np.cos(2 * (np.arange(M) / M * np.pi - np.pi / 2)) - 1) / 0.4)
    raw = np.concatenate([np.array([0.0, 1.3, 5.2])[:, None] * bump[None]] * 2, axis=1)
    h = param.inputs(teacher, jnp.asarray(raw))
    run = ms.simulate(param.network(teacher), h, 8000.0, 0.25, 64, seed=99, burn_in=500.0)
    return ms.tasks.Task(inputs=raw, target_mean=np.asarray(run.moments.mean[:, :M]),
                         target_cov=np.asarray(run.moments.cov[:, :M, :M]), n_exc=M, name="teacher")
