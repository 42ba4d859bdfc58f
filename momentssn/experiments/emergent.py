"""Emergent properties of a fitted network across stimuli (values only, no files).

Mean E and I rates (the closure's nu), the mean std of u_E (variability quenching)
and the peak of the population-averaged E spectrum of u (gamma oscillations).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..closure.equations import expectations
from ..closure.spectrum import peak_frequency, power_spectrum
from ..moments import Moments

__all__ = ["emergent_properties"]


def emergent_properties(net, h, moments: Moments, n_exc: int, fmax: float = 120.0) -> dict:
    """Across stimuli: mean E/I rates (Hz), mean std of u_E (mV), spectral peak (Hz).

    net: the SSN; h: (S, N) its inputs (mV); moments: its stationary moments, mean
    (S, N), cov (S, N, N); n_exc: number of E cells (the first ones).  The peak is that
    of the population-averaged E spectrum above 5 Hz (a gamma bump shows as a local
    maximum there; ``None`` for a spectrum without one).  Returns {"rate_e_hz",
    "rate_i_hz", "std_e_mv", "peak_frequency_hz"}, each a list of S values.
    """
    freqs = np.linspace(0.0, fmax, 241)
    rates_e, rates_i, std_e, peaks = [], [], [], []
    for b in range(h.shape[0]):
        nu, _ = expectations(net, moments.mean[b], jnp.diagonal(moments.cov[b]))
        nu = np.asarray(nu)
        rates_e.append(float(nu[:n_exc].mean()))
        rates_i.append(float(nu[n_exc:].mean()))
        std_e.append(float(np.sqrt(np.diag(np.asarray(moments.cov[b]))[:n_exc]).mean()))
        Sf = np.asarray(power_spectrum(net, h[b], freqs, moments=Moments(moments.mean[b], moments.cov[b])))
        pk = peak_frequency(freqs, Sf[:, :n_exc].mean(axis=1), fmin=5.0)
        peaks.append(float(pk.frequency) if bool(pk.has_peak) else None)
    return dict(rate_e_hz=rates_e, rate_i_hz=rates_i, std_e_mv=std_e, peak_frequency_hz=peaks)
