"""Reference networks used by the tests, benchmarks, validation suites and examples.

(The 1 E + 1 I network of Hennequin et al. (2018) is ``SSN.two_population()``.)
"""

from __future__ import annotations

import numpy as np

from .model import SSN

__all__ = ["random_ei_network"]


def random_ei_network(N: int = 100, seed: int = 0, tau_noise: float = 20.0, scale: float = 1.0) -> SSN:
    """A seeded random E/I SSN: N/2 E cells then N/2 I cells (Dale's law).

    W[i, j] = |g_ij| * 2 scale / N for E columns and -2 |g_ij| * 2 scale / N for I columns
    (g ~ N(0, 1)): each cell receives on average ~0.8 scale mV/Hz of summed excitation
    and ~1.6 scale of inhibition (the 2-population regime of Hennequin et al. 2018).
    tau = 20 ms (E), 10 ms (I); Sigma_eta = 0.1 L L^T + 0.05 I (L_ij ~ N(0, 1/N), mV^2).
    Stable for inputs ~1-15 mV.  The same ``seed`` gives the same network.
    """
    rng = np.random.default_rng(seed)
    NE = N // 2
    W = np.abs(rng.normal(size=(N, N))) * (2.0 / N) * scale
    W[:, NE:] *= -2.0
    tau = np.r_[np.full(NE, 20.0), np.full(N - NE, 10.0)]
    L = rng.normal(size=(N, N)) / np.sqrt(N)
    noise_cov = 0.1 * (L @ L.T) + 0.05 * np.eye(N)
    return SSN(W, tau, 0.5 * (noise_cov + noise_cov.T), tau_noise, n_exc=NE)
