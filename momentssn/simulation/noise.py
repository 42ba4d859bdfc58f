"""Counter-based Gaussian noise for the OU input: every normal is a pure function of
(seed, trial index, step index, neuron index).

The input noise follows the *exact* OU transition over a step dt::

    eta_{s+1} = rho eta_s + sqrt(1 - rho^2) L xi_s,    rho = exp(-dt / tau_eta),  xi_s ~ N(0, I_D)

so its statistics do not depend on dt, and the normals xi_s depend on no run option
(device count, chunk size, number of trials, batch of stimuli, integrator).

Refinement (common random numbers across steps).  With ``substeps = R`` the normal of
coarse step s is the exact aggregate of the R fine normals xi_{Rs} .. xi_{Rs+R-1} of a
run at dt / R::

    xi^c_s = sum_j rho_f^(R-1-j) xi_{Rs+j} / sqrt(sum_j rho_f^(2(R-1-j))),   rho_f = exp(-dt / (R tau_eta))

(still N(0, I)), so a run at dt with R substeps visits the *same* eta path at its grid
times as a run at dt / R: step doubling measures the integrator's error alone.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["threefry2x32", "ou_noise_normals", "step_normals", "base_key", "trial_key_data",
           "STATIONARY_INDEX"]

# stream index of the normals of the stationary start eta_0 (never a real step index)
STATIONARY_INDEX = 0xFFFFFFFF


def threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 hash (20 rounds), elementwise on broadcastable uint32 arrays.

    Bit-identical to JAX's ``threefry2x32_p`` (the hash behind ``jax.random``), written
    out unrolled so that XLA fuses it into one elementwise kernel: on CPU, JAX's own
    lowering is a rolled 5-iteration loop that materializes every intermediate.
    Returns the two output words.
    """
    rot = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in rot[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))
            x1 = x0 ^ x1
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _uniform_to_normal(mant_bits, nbits, dtype):
    """Mantissa bits (uint, top ``nbits`` used) -> standard normals of ``dtype``.

    f = 1.m - 1 in [0, 1) on a grid of 2^-nbits; v = 2 f - 1 + 2^-nbits is symmetric
    about 0 and never +-1; z = sqrt(2) erfinv(v).
    """
    if dtype == jnp.float32:
        one = jnp.uint32(0x3F800000)
        f = lax.bitcast_convert_type(mant_bits | one, jnp.float32) - 1.0
    else:
        one = jnp.uint64(0x3FF0000000000000)
        f = lax.bitcast_convert_type(mant_bits | one, jnp.float64) - 1.0
    v = 2.0 * f - 1.0 + jnp.asarray(2.0**-nbits, dtype)
    return jnp.asarray(math.sqrt(2.0), dtype) * lax.erf_inv(v)


def ou_noise_normals(key_data: jax.Array, steps: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
    """Standard normals xi[step, trial, neuron] as a pure function of the indices.

    Args:
        key_data: (T, 2) uint32 per-trial Threefry keys.
        steps: (K,) step indices (any integer dtype, used modulo 2^32).
        n: number of neurons N.
        dtype: float32 or float64.

    Returns:
        (K, T, N) array.  Counter-based Threefry-2x32: the hash of the counter pair
        (step, neuron) under the trial key gives two 32-bit words (w0, w1).  float32
        uses the top 23 bits of w0; float64 uses w0 followed by 20 bits of w1, so both
        precisions share the same sample paths.  (One hash per normal: every output
        element is computed by one fused elementwise kernel.)
    """
    T = key_data.shape[0]
    K = steps.shape[0]
    j = jnp.arange(n, dtype=jnp.uint32)[None, None, :]
    x0 = jnp.broadcast_to(steps.astype(jnp.uint32)[:, None, None], (K, T, n))
    w0, w1 = threefry2x32(key_data[None, :, 0, None], key_data[None, :, 1, None], x0, j)
    if jnp.dtype(dtype) == jnp.float32:
        return _uniform_to_normal(w0 >> 9, 23, jnp.float32)
    mant = (w0.astype(jnp.uint64) << 20) | (w1.astype(jnp.uint64) >> 12)
    return _uniform_to_normal(mant, 52, jnp.float64)


def step_normals(key_data: jax.Array, steps: jax.Array, n: int, dtype, substeps: int = 1,
                 rho_fine=None) -> jax.Array:
    """Normals xi_s (K, T, n) of the steps ``steps`` (K,), aggregated from ``substeps``
    finer steps (see the module docstring; ``rho_fine = exp(-dt / (substeps tau_eta))``,
    a scalar, may be traced).  ``substeps = 1`` is :func:`ou_noise_normals` itself."""
    if substeps == 1:
        return ou_noise_normals(key_data, steps, n, dtype)
    R = substeps
    fine = steps.astype(jnp.uint32)[:, None] * jnp.uint32(R) + jnp.arange(R, dtype=jnp.uint32)[None, :]
    xi = ou_noise_normals(key_data, fine.reshape(-1), n, dtype).reshape((steps.shape[0], R) + (key_data.shape[0], n))
    w = jnp.asarray(rho_fine, dtype) ** jnp.arange(R - 1, -1, -1, dtype=dtype)  # rho_f^(R-1-j)
    w = w / jnp.sqrt(jnp.sum(w * w))
    return jnp.einsum("krtn,r->ktn", xi, w)


def base_key(seed) -> jax.Array:
    """A typed PRNG key from an int seed, a typed key, or a legacy uint32 (2,) key."""
    if hasattr(seed, "dtype") and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed
    if hasattr(seed, "dtype") and seed.dtype == jnp.uint32 and getattr(seed, "shape", ()) == (2,):
        return jax.random.wrap_key_data(seed)
    return jax.random.key(seed)


def trial_key_data(base, n_trials: int, first=0) -> jax.Array:
    """(n_trials, 2) uint32 keys of trials first .. first + n_trials - 1: Threefry hash of
    the counter (trial, 0) under the words of ``base`` (``first`` may be traced), so a
    block of trials draws exactly the noise those trials have in the whole run."""
    kd = jax.random.key_data(base)
    if kd.shape != (2,) or kd.dtype != jnp.uint32:  # not a Threefry key: draw two words from it
        kd = jax.random.bits(base, (2,), jnp.uint32)
    t = jnp.arange(n_trials, dtype=jnp.uint32) + jnp.asarray(first).astype(jnp.uint32)
    y0, y1 = threefry2x32(kd[0], kd[1], t, jnp.zeros_like(t))
    return jnp.stack([y0, y1], axis=-1)
