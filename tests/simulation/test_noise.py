"""Counter-based noise: refinement gives the same OU path at every step size."""

import jax
import jax.numpy as jnp
import numpy as np

from momentssn.simulation.noise import ou_noise_normals, step_normals, trial_key_data


def test_aggregated_normals_give_the_fine_ou_path_at_coarse_times():
    """eta from R fine OU steps of dt/R equals eta from one coarse step of dt driven by the
    aggregated normal, and the aggregate is standard normal (weights of unit norm)."""
    keys = trial_key_data(jax.random.key(3), 5)
    dt, tau, R, K, N = 0.7, 20.0, 4, 6, 3
    rho_f = np.exp(-dt / (R * tau))
    normals = jax.jit(step_normals, static_argnums=(2, 3, 4))  # one compilation per R
    fine = np.asarray(normals(keys, jnp.arange(K * R), N, jnp.float64, 1, 1.0))  # (K R, T, N)
    coarse = np.asarray(normals(keys, jnp.arange(K), N, jnp.float64, R, rho_f))  # (K, T, N)
    eta_f = np.ones((5, N))
    eta_c = np.ones((5, N))
    cf, rho_c = np.sqrt(1 - rho_f**2), rho_f**R
    for s in range(K):
        for j in range(R):
            eta_f = rho_f * eta_f + cf * fine[s * R + j]
        eta_c = rho_c * eta_c + np.sqrt(1 - rho_c**2) * coarse[s]
        np.testing.assert_allclose(eta_c, eta_f, rtol=1e-12, atol=1e-12)
    # R = 1 is the plain stream; aggregated normals are N(0, 1)
    np.testing.assert_array_equal(np.asarray(ou_noise_normals(keys, jnp.arange(K), N, jnp.float64)), fine[:K])
    big = np.asarray(normals(trial_key_data(jax.random.key(4), 2000), jnp.arange(K), 2, jnp.float64, R, 0.9))
    assert abs(big.mean()) < 0.02 and abs(big.std() - 1) < 0.02
