"""Figures and summaries of a fitted network (``momentssn fit-baseline``).

Writes, into an output folder:
  * ``loss_curve.png``: loss after each L-BFGS iteration (every start);
  * ``fit_moments.png``: target vs fitted mean and std of the E cells along the ring,
    one column per stimulus;
  * ``fit_covariances.png``: target and fitted covariance matrices side by side;
  * ``emergent.png`` + ``emergent.json``: across contrast, mean E and I rates (closure
    nu), the average std of u (variability quenching) and the peak frequency of the
    membrane-potential spectrum (gamma oscillations);
  * ``simulation_check.json`` (+ figure): the *simulated* moments of the fitted network
    against the targets (the closure is only an approximation), via ``ms.crosscheck``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..closure.equations import expectations
from .crosscheck import crosscheck
from ..losses.moment import loss_per_stimulus
from ..moments import Moments
from .plotting import new_figure, save
from ..closure.spectrum import peak_frequency, power_spectrum
from ..closure.stationary import stationary_moments

__all__ = ["baseline_report", "emergent_properties"]


def emergent_properties(net, h, moments: Moments, n_exc: int, fmax: float = 120.0):
    """Across stimuli: mean E/I rates (Hz), mean std of u_E (mV), spectral peak (Hz).

    The peak is that of the population-averaged E spectrum above 5 Hz (a gamma bump
    shows as a local maximum there).
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
        peaks.append(float(peak_frequency(freqs, Sf[:, :n_exc].mean(axis=1), fmin=5.0)))
    return dict(rate_e_hz=rates_e, rate_i_hz=rates_i, std_e_mv=std_e, peak_frequency_hz=peaks)


def baseline_report(param, task, result, out, simulate_check: bool = True, n_trials: int = 32,
                    t_max: float = 3000.0) -> dict:
    """Write the figures and summaries listed in the module docstring; returns a summary."""
    out = Path(out)
    theta = jnp.asarray(result.theta)
    net = param.network(theta)
    h = param.inputs(theta, jnp.asarray(task.inputs))
    M = int(task.n_exc)
    m = stationary_moments(net, h)
    tm, tc = np.asarray(task.target_mean), np.asarray(task.target_cov)
    S = tm.shape[0]
    contrasts = np.asarray(task.contrasts) if task.contrasts is not None else np.arange(S)

    fig, ax = new_figure(1, 1, size=(5, 3.2))
    ax = ax[0, 0]
    for i, hist in enumerate(result.history):
        ax.semilogy(hist, label=f"start {i + 1}")
    ax.set(xlabel="L-BFGS iteration", ylabel="loss")
    ax.legend()
    save(fig, out / "loss_curve.png")

    mean, std = np.asarray(m.mean)[:, :M], np.asarray(m.std)[:, :M]
    fig, axes = new_figure(2, S, size=(2.6, 2.5))
    axes = np.asarray(axes).reshape(2, S)
    x = np.arange(M)
    for b in range(S):
        axes[0, b].plot(x, tm[b], "k--", label="target")
        axes[0, b].plot(x, mean[b], "C0", label="fit")
        axes[1, b].plot(x, np.sqrt(np.diag(tc[b])), "k--")
        axes[1, b].plot(x, std[b], "C0")
        axes[0, b].set_title(f"contrast {contrasts[b]:g}")
        axes[1, b].set_xlabel("E cell (orientation)")
    axes[0, 0].set_ylabel("mean u (mV)")
    axes[1, 0].set_ylabel("std u (mV)")
    axes[0, 0].legend()
    save(fig, out / "fit_moments.png")

    fig, axes = new_figure(2, S, size=(2.6, 2.6))
    axes = np.asarray(axes).reshape(2, S)
    for b in range(S):
        vmax = np.abs(tc[b]).max()
        axes[0, b].imshow(tc[b], vmin=-vmax, vmax=vmax, cmap="RdBu_r")
        axes[1, b].imshow(np.asarray(m.cov)[b, :M, :M], vmin=-vmax, vmax=vmax, cmap="RdBu_r")
        axes[0, b].set_title(f"target, c = {contrasts[b]:g}")
        axes[1, b].set_title("fitted (closure)")
    save(fig, out / "fit_covariances.png")

    emergent = emergent_properties(net, h, m, int(net.n_exc or M))
    emergent["contrast"] = [float(c) for c in contrasts]
    (out / "emergent.json").write_text(json.dumps(emergent, indent=2))
    fig, axes = new_figure(1, 3, size=(3.6, 3))
    axes = axes[0]
    axes[0].plot(contrasts, emergent["rate_e_hz"], "o-", label="E")
    axes[0].plot(contrasts, emergent["rate_i_hz"], "o-", label="I")
    axes[0].set(xlabel="contrast", ylabel="mean rate (Hz)")
    axes[0].legend()
    axes[1].plot(contrasts, emergent["std_e_mv"], "o-")
    axes[1].set(xlabel="contrast", ylabel="mean std u_E (mV)")
    axes[2].plot(contrasts, emergent["peak_frequency_hz"], "o-")
    axes[2].set(xlabel="contrast", ylabel="spectral peak (Hz)")
    save(fig, out / "emergent.png")

    summary = dict(emergent=emergent)
    if simulate_check:
        print(f"simulation check: {n_trials} trials x {t_max:.0f} ms per stimulus ...", flush=True)
        rep = crosscheck(net, h, t_max=t_max, n_trials=n_trials, figure=out / "simulation_check.png",
                         progress=True)
        sim = Moments(jnp.asarray(rep.sim.mean), jnp.asarray(rep.sim.cov))
        sim_loss = np.asarray(loss_per_stimulus(sim, tm, tc))
        closure_loss = np.asarray(loss_per_stimulus(m, tm, tc))
        check = dict(
            simulated_loss_per_stimulus=sim_loss.tolist(),
            simulated_loss=float(sim_loss.mean()),
            closure_loss_per_stimulus=closure_loss.tolist(),
            closure_loss=float(closure_loss.mean()),
            closure_vs_simulation=rep.to_dict() if hasattr(rep, "to_dict") else None,
        )
        (out / "simulation_check.json").write_text(json.dumps(check, indent=2, default=float))
        print(f"simulated loss {check['simulated_loss']:.4g} vs closure loss "
              f"{check['closure_loss']:.4g}", flush=True)
        summary["simulation_check"] = {k: check[k] for k in ("simulated_loss", "closure_loss")}
    return summary
