"""Figures and summaries of a fitted network (``momentssn fit-baseline``).

Writes, into an output folder:
  * ``loss_curve.png``: loss after each L-BFGS iteration (every start);
  * ``fit_moments.png``: target vs fitted mean and std of the E cells along the ring,
    one column per stimulus;
  * ``fit_covariances.png``: target and fitted covariance matrices side by side;
  * ``emergent.png`` + ``emergent.json``: across contrast, mean E and I rates (closure
    nu), the average std of u (variability quenching) and the peak frequency of the
    membrane-potential spectrum (gamma oscillations);
  * ``simulation_check.json`` (summary) + ``simulation_check.npz`` (moment arrays) +
    figure: the *simulated* moments of the fitted network against the targets (the
    closure is only an approximation), via ``crosscheck``.
JSON is strict (NaN/inf -> null) and every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import jax.numpy as jnp
import numpy as np

from .._util import atomic_savez, atomic_write_json
from ..errors import UnstableNetworkError
from ..losses.moment import loss_per_stimulus
from ..moments import Moments
from ..progress import Progress, ProgressFn, report
from .crosscheck import closure_moments, crosscheck
from .emergent import emergent_properties
from .plotting import new_figure, save, write_crosscheck_figures

__all__ = ["baseline_report", "simulation_check"]


def _stimulus_title(b: int, contrasts) -> str:
    c = float(contrasts[b])
    return f"contrast {c:g}" if np.isfinite(c) else f"stimulus {b}"


def _loss_curve_figure(history):
    fig, ax = new_figure(1, 1, size=(5, 3.2))
    ax = ax[0, 0]
    for i, hist in enumerate(history):
        ax.semilogy(hist, label=f"start {i + 1}")
    ax.set(xlabel="L-BFGS iteration", ylabel="loss")
    ax.legend()
    return fig


def _fit_moments_figure(tm, tc, mean, std, contrasts):
    """Target (dashed) vs fitted mean and std of the M E cells; tm (S, M), tc (S, M, M)."""
    S, M = tm.shape
    fig, axes = new_figure(2, S, size=(2.6, 2.5))
    axes = np.asarray(axes).reshape(2, S)
    x = np.arange(M)
    for b in range(S):
        axes[0, b].plot(x, tm[b], "k--", label="target")
        axes[0, b].plot(x, mean[b], "C0", label="fit")
        axes[1, b].plot(x, np.sqrt(np.diag(tc[b])), "k--")
        axes[1, b].plot(x, std[b], "C0")
        axes[0, b].set_title(_stimulus_title(b, contrasts))
        axes[1, b].set_xlabel("E cell (orientation)")
    axes[0, 0].set_ylabel("mean u (mV)")
    axes[1, 0].set_ylabel("std u (mV)")
    axes[0, 0].legend()
    return fig


def _fit_covariances_figure(tc, cov, contrasts):
    """Target (top) and fitted (bottom) covariance matrices; tc, cov (S, M, M)."""
    S = tc.shape[0]
    fig, axes = new_figure(2, S, size=(2.6, 2.6))
    axes = np.asarray(axes).reshape(2, S)
    for b in range(S):
        vmax = np.abs(tc[b]).max()
        axes[0, b].imshow(tc[b], vmin=-vmax, vmax=vmax, cmap="RdBu_r")
        axes[1, b].imshow(cov[b], vmin=-vmax, vmax=vmax, cmap="RdBu_r")
        axes[0, b].set_title(f"target, {_stimulus_title(b, contrasts)}")
        axes[1, b].set_title("fitted (closure)")
    return fig


def _emergent_figure(emergent: dict):
    c, xlabel = np.asarray(emergent["contrast"], float), "contrast"
    if not np.all(np.isfinite(c)):  # contrasts unknown: stimulus index
        c, xlabel = np.asarray(emergent["stimulus"]), "stimulus"
    fig, axes = new_figure(1, 3, size=(3.6, 3))
    axes = axes[0]
    axes[0].plot(c, emergent["rate_e_hz"], "o-", label="E")
    axes[0].plot(c, emergent["rate_i_hz"], "o-", label="I")
    axes[0].set(xlabel=xlabel, ylabel="mean rate (Hz)")
    axes[0].legend()
    axes[1].plot(c, emergent["std_e_mv"], "o-")
    axes[1].set(xlabel=xlabel, ylabel="mean std u_E (mV)")
    peaks = [np.nan if f is None else f for f in emergent["peak_frequency_hz"]]
    axes[2].plot(c, peaks, "o-")  # a gap where the spectrum has no interior maximum
    axes[2].set(xlabel=xlabel, ylabel="spectral peak (Hz)", xlim=axes[1].get_xlim())
    if np.all(np.isnan(peaks)):
        axes[2].set_yticks([])
        axes[2].text(0.5, 0.5, "no spectral peak\n(no interior maximum)\nat any stimulus", ha="center", va="center",
                     transform=axes[2].transAxes)
    return fig


def _closure(net, h) -> Moments:
    """Stationary closure moments, mean (S, N), cov (S, N, N), solved stimulus by stimulus
    as the simulation check's crosscheck does (so it reuses this compiled solver)."""
    m, stable, eig, msgs = closure_moments(net, np.asarray(h))
    if not stable.all():
        b = int(np.flatnonzero(~stable)[0])
        raise UnstableNetworkError(f"the fitted network, stimulus {b}: {msgs[b]}", max_real_eig=float(eig[b]),
                                   stimulus=b)
    return Moments(jnp.asarray(m.mean), jnp.asarray(m.cov))


def simulation_check(net, h, closure: Moments, target_mean, target_cov, *, n_trials: int = 32,
                     t_max: float = 3000.0, progress: Optional[ProgressFn] = None):
    """Score the fitted network by simulation: (CrosscheckReport, summary dict).

    net, h (S, N): the fitted network and its inputs; closure: its stationary moments;
    target_mean (S, M), target_cov (S, M, M).  The summary holds the simulated and
    closure losses (eq. 7), per stimulus and averaged.
    """
    rep = crosscheck(net, h, t_max=t_max, n_trials=n_trials, step_check=True, progress=progress)
    sim = Moments(jnp.asarray(rep.sim.mean), jnp.asarray(rep.sim.cov))
    sim_loss = np.asarray(loss_per_stimulus(sim, target_mean, target_cov))
    closure_loss = np.asarray(loss_per_stimulus(closure, target_mean, target_cov))
    summary = dict(simulated_loss_per_stimulus=sim_loss, simulated_loss=float(sim_loss.mean()),
                   closure_loss_per_stimulus=closure_loss, closure_loss=float(closure_loss.mean()),
                   n_trials=int(n_trials), t_max_ms=float(t_max), dt_ms=float(rep.settings["dt"]),
                   step_error_over_mc_se=(None if rep.step is None else rep.step["ratio_to_mc"]))
    return rep, summary


def baseline_report(param, task, result, out, simulate_check: bool = True, n_trials: int = 32,
                    t_max: float = 3000.0, progress: Optional[ProgressFn] = None) -> dict:
    """Write the figures and summaries listed in the module docstring; returns a summary.

    param, task: what was fitted; result: its ``FitResult`` (``theta``, ``history``).
    """
    out = Path(out)
    theta = jnp.asarray(result.theta)
    net = param.network(theta)
    h = param.inputs(theta, jnp.asarray(task.inputs))
    M = int(task.n_exc)
    m = _closure(net, h)
    tm, tc = np.asarray(task.target_mean), np.asarray(task.target_cov)
    S = tm.shape[0]
    contrasts = np.full(S, np.nan) if task.contrasts is None else np.asarray(task.contrasts, float)

    save(_loss_curve_figure(result.history), out / "loss_curve.png")
    save(_fit_moments_figure(tm, tc, np.asarray(m.mean)[:, :M], np.asarray(m.std)[:, :M], contrasts),
         out / "fit_moments.png")
    save(_fit_covariances_figure(tc, np.asarray(m.cov)[:, :M, :M], contrasts), out / "fit_covariances.png")

    emergent = emergent_properties(net, h, m, int(net.n_exc or M))
    emergent.update(stimulus=list(range(S)), contrast=contrasts)  # contrast NaN (-> null): unknown
    atomic_write_json(out / "emergent.json", emergent)
    save(_emergent_figure(emergent), out / "emergent.png")

    summary = dict(emergent=emergent)
    if simulate_check:
        report(progress, Progress("simulation check", 0, message=f"{n_trials} trials x {t_max:.0f} ms per stimulus"))
        rep, check = simulation_check(net, h, m, tm, tc, n_trials=n_trials, t_max=t_max, progress=progress)
        rep = write_crosscheck_figures(rep, out / "simulation_check.png")
        arrays = dict(h=rep.h, closure_mean=rep.theory.mean, closure_cov=rep.theory.cov, sim_mean=rep.sim.mean,
                      sim_cov=rep.sim.cov, sim_se_mean=rep.sim_se.mean, sim_se_cov=rep.sim_se.cov)
        atomic_savez(out / "simulation_check.npz", arrays)
        check.update(closure_vs_simulation=rep.to_dict(arrays=False), arrays="simulation_check.npz")
        atomic_write_json(out / "simulation_check.json", check)
        report(progress, Progress("simulation check", 0, message=f"simulated loss {check['simulated_loss']:.4g} "
                                                                 f"vs closure loss {check['closure_loss']:.4g}"))
        summary["simulation_check"] = {k: check[k] for k in ("simulated_loss", "closure_loss")}
    return summary
