"""Shared reference networks and numpy reference implementations for the tests."""

import numpy as np
from scipy.stats import norm

import momentssn as ms
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


# The published Baseline15 parameters of Echeveste et al. (2020), from the authors'
# released parameter files (SSN/parameter_files/*_learn).
PUBLISHED_BASELINE15 = dict(
    a_ee=0.331089168896709307, d_ee=0.802756367925039016, a_ei=0.081307171738997791,
    d_ei=0.568730595704363684, a_ie=0.363214560956081789, d_ie=0.859828425651255390,
    a_ii=0.073595337344484008, d_ii=0.629804883130465232, var_e=6.399186720550809504,
    var_i=3.533514014946008697, ell_eta=0.477952645032425183, rho=0.992852418877574472,
    in_a=1.955517265245506842, in_b=0.103232893380230673, in_p=2.034269617565710231,
)
