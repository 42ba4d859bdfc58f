"""Figures of a comparison of training methods (:mod:`.compare`).

* ``simulated_loss_vs_time.png`` -- the headline: every run's simulated loss (eq. 7 on
  simulated moments, +- its Monte Carlo SE) at its snapshots and at its end, against
  wall time, with the reference network (the published one on the published task) as a
  horizontal line and band;
* ``training_loss.png`` -- each method's *own* training loss (closure or BPTT
  estimate): not comparable across methods, labelled so;
* ``simulated_vs_targets.png`` -- simulated vs target means and stds of the final
  networks.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .plotting import new_figure

__all__ = ["simulated_loss_figure", "training_loss_figure", "simulated_vs_targets_figure"]


def simulated_loss_figure(results, reference=None):
    """Simulated loss +- SE against wall time, one line per run; ``reference`` (a
    ``Reference`` or None) as a horizontal line with its +- SE band."""
    fig, axes = new_figure(1, 1, size=(6.4, 4.2))
    ax = axes[0, 0]
    for r in results:
        pts = [p for p in r.snapshots if np.isfinite(p.loss)]
        if not pts:
            continue
        t = np.array([p.wall_time_s for p in pts])
        loss = np.array([p.loss for p in pts])
        se = np.nan_to_num(np.array([p.loss_se for p in pts]))
        line = ax.errorbar(t, loss, yerr=se, marker="o", ms=3, capsize=2, lw=1, label=r.run.label)
        if pts[-1].final:  # the final network, scored with the final settings
            ax.plot(t[-1:], loss[-1:], "s", ms=7, mfc="none", color=line[0].get_color())
    if reference is not None and np.isfinite(reference.loss):
        ax.axhline(reference.loss, color="k", ls="--", lw=1, label=f"{reference.label}")
        if np.isfinite(reference.loss_se):
            ax.axhspan(reference.loss - reference.loss_se, reference.loss + reference.loss_se, color="k",
                       alpha=0.1, lw=0)
    ax.set(xscale="log", yscale="log")
    lo, hi = ax.get_xlim()  # plain seconds at 1-2-5 steps, not 3x10^1
    ax.set_xticks([t for t in np.outer(10.0 ** np.arange(-2, 6), (1, 2, 5)).ravel() if lo <= t <= hi])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="wall time of training (s)",
           ylabel="simulated loss (eq. 7, simulated moments)",
           title="every method judged by simulation (squares: final networks; bars: Monte Carlo SE)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    return fig


def training_loss_figure(results):
    """Each run's own training loss against iteration and wall time."""
    fig, axes = new_figure(1, 2, size=(4.6, 3.4))
    for r in results:
        run = r.run
        if not run.trace["loss"]:
            continue
        loss = np.asarray(run.trace["loss"], float)
        loss = np.where(np.isfinite(loss), loss, np.nan)
        axes[0, 0].semilogy(run.trace["iteration"], loss, label=f"{run.label}: {run.loss_kind}")
        axes[0, 1].semilogy(run.trace["wall_time_s"], loss, label=run.label)
    ylabel = "training loss (each method's own kind;\nnot comparable across methods)"
    axes[0, 0].set(xlabel="iteration", ylabel=ylabel)
    axes[0, 1].set(xlabel="wall time (s)", ylabel=ylabel)
    axes[0, 0].legend(fontsize=6)
    return fig


def simulated_vs_targets_figure(scored):
    """Simulated vs target E-cell means and stds of the final networks, and their losses."""
    fig, axes = new_figure(1, 3, size=(3.6, 3.2))
    for r in scored:
        run, sc = r.run, r.sim
        tm, tc = run.target_mean, run.target_cov
        sv = np.diagonal(sc.moments.cov, axis1=-2, axis2=-1)
        axes[0, 0].plot(tm.ravel(), sc.moments.mean.ravel(), ".", ms=3, label=run.label)
        axes[0, 1].plot(np.sqrt(np.diagonal(tc, axis1=-2, axis2=-1)).ravel(), np.sqrt(sv).ravel(), ".", ms=3)
        axes[0, 2].bar(run.label, sc.loss, yerr=np.nan_to_num(sc.loss_se))
    for ax in axes[0, :2]:
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    axes[0, 0].set(xlabel="target mean (mV)", ylabel="simulated mean (mV)")
    axes[0, 1].set(xlabel="target std (mV)", ylabel="simulated std (mV)")
    axes[0, 2].set(ylabel="simulated loss (eq. 7)", yscale="log")
    axes[0, 2].tick_params(axis="x", labelrotation=60, labelsize=6)
    axes[0, 0].legend(fontsize=6)
    return fig
