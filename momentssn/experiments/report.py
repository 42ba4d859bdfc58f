"""Figures and summaries of a fitted network (``momentssn fit-baseline``).

Writes, into an output folder:
  * ``loss_curve.png``: closure loss after each L-BFGS iteration (every start) and,
    with a correction, the simulated and closure loss of each correction round;
  * ``fit_moments.png``: target vs fitted (closure, and simulated +- SE) mean and std of
    the E cells against preferred orientation, one column per stimulus;
  * ``fit_covariances.png``: target and fitted (closure, simulated) covariance matrices
    with colorbars (mV^2);
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


def _loss_curve_figure(history, correction=None, scores=None):
    """Left: closure loss after each L-BFGS iteration (every start).  Right (with a
    correction): simulated and closure loss of every correction round, the published
    network's simulated loss (+- SE) as reference when it was scored."""
    fig, ax = new_figure(1, 1 if correction is None else 2, size=(4.6, 3.2))
    ax0 = ax[0, 0]
    for i, hist in enumerate(history):
        ax0.semilogy(hist, label=f"start {i + 1}")
    ax0.set(xlabel="L-BFGS iteration", ylabel="closure loss (eq. 7)", title="closure fit")
    ax0.legend()
    if correction is not None:
        ax1 = ax[0, 1]
        k = [r.round for r in correction.rounds]
        ax1.semilogy(k, [r.simulated_loss for r in correction.rounds], "o-", label="simulated (correction's seed)")
        ax1.semilogy(k, [r.closure_loss for r in correction.rounds], "s--", label="closure")
        pub = (scores or {}).get("networks", {}).get("published network")
        if pub is not None and np.isfinite(pub["simulated_loss"] or np.nan):
            v, se = pub["simulated_loss"], pub["simulated_loss_se"] or 0.0
            ax1.axhline(v, color="k", lw=1, label="published network (simulated)")
            ax1.axhspan(v - se, v + se, color="k", alpha=0.12, lw=0)
        ax1.set(xlabel="correction round (0: closure fit)", ylabel="loss (eq. 7)",
                title="iterated closure correction", xticks=k)
        ax1.legend(fontsize=7)
    return fig


def _orientations(M: int) -> np.ndarray:
    """(M,) preferred orientations (deg) of the E cells on the ring: 180 j / M."""
    return 180.0 * np.arange(M) / M


def _fit_moments_figure(tm, tc, mean, std, contrasts, sim=None):
    """Target (dashed) vs fitted mean and std of the M E cells against preferred
    orientation; closure (line) and, when ``sim`` = (mean, std, se_mean, se_std) (S, M)
    each, simulated (dots, +- 1 SE).  tm (S, M), tc (S, M, M).  One y-scale per row."""
    S, M = tm.shape
    fig, axes = new_figure(2, S, size=(2.6, 2.5), sharey="row", sharex=True)
    axes = np.asarray(axes).reshape(2, S)
    x = _orientations(M)
    for b in range(S):
        axes[0, b].plot(x, tm[b], "k--", label="target")
        axes[0, b].plot(x, mean[b], "C0", label="fitted, closure")
        axes[1, b].plot(x, np.sqrt(np.diag(tc[b])), "k--")
        axes[1, b].plot(x, std[b], "C0")
        if sim is not None:
            sm, ss, sem, ses = (np.asarray(a)[b] for a in sim)
            axes[0, b].errorbar(x, sm, yerr=sem, fmt=".", color="C3", ms=3, lw=0.6, label="fitted, simulated")
            axes[1, b].errorbar(x, ss, yerr=ses, fmt=".", color="C3", ms=3, lw=0.6)
        axes[0, b].set_title(_stimulus_title(b, contrasts))
        axes[1, b].set_xlabel("preferred orientation (deg)")
        axes[1, b].set_xticks([0, 90, 180])
    axes[0, 0].set_ylabel("mean u_E (mV)")
    axes[1, 0].set_ylabel("std u_E (mV)")
    axes[0, 0].legend(fontsize=7)
    return fig


def _fit_covariances_figure(tc, cov, contrasts, sim_cov=None):
    """Rows: target, fitted (closure) and, if given, fitted (simulated) E-cell covariance
    matrices (mV^2), one column per stimulus with its own colour scale and colorbar;
    tc, cov, sim_cov (S, M, M)."""
    S, M = tc.shape[:2]
    rows = [("target", tc), ("fitted, closure", cov)] + ([] if sim_cov is None else [("fitted, simulated", sim_cov)])
    fig, axes = new_figure(len(rows), S, size=(2.7, 2.5))
    ext = (0, 180, 180, 0)
    for b in range(S):
        vmax = max(np.abs(r[1][b]).max() for r in rows)
        for i, (name, c) in enumerate(rows):
            ax = axes[i, b]
            im = ax.imshow(c[b], vmin=-vmax, vmax=vmax, cmap="RdBu_r", extent=ext)
            ax.set_title(f"{name}\n{_stimulus_title(b, contrasts)}", fontsize=8)
            ax.set_xticks([0, 90, 180])
            ax.set_yticks([0, 90, 180])
            if b == 0:
                ax.set_ylabel("pref. orientation (deg)")
            if i == len(rows) - 1:
                ax.set_xlabel("pref. orientation (deg)")
        fig.colorbar(im, ax=list(axes[:, b]), shrink=0.6, label="cov u_E (mV^2)")
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


def baseline_report(param, task, theta, out, *, history=(), correction=None, scores=None,
                    simulate_check: bool = True, n_trials: int = 32, t_max: float = 3000.0,
                    progress: Optional[ProgressFn] = None) -> dict:
    """Write the figures and summaries listed in the module docstring; returns a summary.

    param, task: what was fitted; theta: (param.size,) the fitted network; history: the
    closure fit's loss per iteration, per start; correction: its ``CorrectedFitResult``
    (or None); scores: fit-baseline's simulated scores (or None).
    """
    out = Path(out)
    theta = jnp.asarray(theta)
    net = param.network(theta)
    h = param.inputs(theta, jnp.asarray(task.inputs))
    M = int(task.n_exc)
    m = _closure(net, h)
    tm, tc = np.asarray(task.target_mean), np.asarray(task.target_cov)
    S = tm.shape[0]
    contrasts = np.full(S, np.nan) if task.contrasts is None else np.asarray(task.contrasts, float)

    summary, sim = {}, None
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
        sd = np.sqrt(np.maximum(np.diagonal(np.asarray(rep.sim.cov), axis1=-2, axis2=-1), 0.0))
        sim = (np.asarray(rep.sim.mean)[:, :M], sd[:, :M], np.asarray(rep.sim_se.mean)[:, :M],
               np.asarray(rep.std_se)[:, :M])
        sim_cov = np.asarray(rep.sim.cov)[:, :M, :M]

    save(_loss_curve_figure(history, correction, scores), out / "loss_curve.png")
    save(_fit_moments_figure(tm, tc, np.asarray(m.mean)[:, :M], np.asarray(m.std)[:, :M], contrasts, sim),
         out / "fit_moments.png")
    save(_fit_covariances_figure(tc, np.asarray(m.cov)[:, :M, :M], contrasts, None if sim is None else sim_cov),
         out / "fit_covariances.png")

    emergent = emergent_properties(net, h, m, int(net.n_exc or M))
    emergent.update(stimulus=list(range(S)), contrast=contrasts)  # contrast NaN (-> null): unknown
    atomic_write_json(out / "emergent.json", emergent)
    save(_emergent_figure(emergent), out / "emergent.png")
    summary["emergent"] = emergent
    return summary
