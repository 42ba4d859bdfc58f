"""Figure helpers shared by the cross-checks, the validation suites and the notebooks.

Object-oriented matplotlib only (``matplotlib.figure.Figure``): no pyplot, no global
backend switch, nothing shown on screen.  Every ``*_figure`` function returns a
``Figure``; :func:`save` writes it to a file (PNG, PDF, SVG by the suffix).  In a
notebook, a returned ``Figure`` displays itself (``_repr_png_``).

Units in labels: u in mV, time in ms, frequency in Hz.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "save",
    "new_figure",
    "identity_line",
    "theory_vs_sim",
    "crosscheck_figure",
    "transient_figure",
    "sweep_figure",
    "spectrum_figure",
    "default_neurons",
    "write_crosscheck_figures",
]

E_COLOR = "#c0392b"
I_COLOR = "#2c6fbb"


class _Figure(Figure):
    """A Figure that renders itself as PNG in notebooks (no pyplot needed)."""

    def _repr_png_(self):
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=90)
        return buf.getvalue()


def new_figure(nrows: int = 1, ncols: int = 1, size=(4.0, 3.2), **kw):
    """(Figure, axes array (nrows, ncols)), each panel ``size`` inches."""
    fig = _Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig: Figure, path, dpi: int = 120) -> str:
    """Write ``fig`` to ``path`` (creating the folder); returns the path as a str."""
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def identity_line(ax, x, y) -> None:
    """Draw y = x across the range of the finite data in ``x`` and ``y``."""
    v = np.concatenate([np.ravel(x), np.ravel(y)])
    v = v[np.isfinite(v)]
    if v.size == 0:
        return
    lo, hi = float(v.min()), float(v.max())
    pad = 0.05 * (hi - lo if hi > lo else max(abs(hi), 1.0))
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=0.8, zorder=0)


def theory_vs_sim(ax, theory, sim, se, *, color="k", marker="o", label=None, ms=4) -> None:
    """Scatter of simulation (y, with +-1 SE bars) against closure (x)."""
    ax.errorbar(np.ravel(theory), np.ravel(sim), yerr=np.ravel(se), fmt=marker, color=color,
                ms=ms, mew=0, elinewidth=0.8, capsize=0, alpha=0.85, label=label)


def default_neurons(labels: Sequence[str], k: int = 2) -> list:
    """Up to ``k`` E and ``k`` I neurons (the first of each), or the first 2k."""
    e = [i for i, s in enumerate(labels) if s.startswith("E")][:k]
    i_ = [i for i, s in enumerate(labels) if s.startswith("I")][:k]
    return (e + i_) or list(range(min(len(labels), 2 * k)))


def _is_exc(labels) -> np.ndarray:
    return np.array([s.startswith("E") for s in labels])


def _neuron_color(labels, neurons, j, cmap):
    """E/I colors when one E and one I neuron are shown, else a qualitative palette."""
    kinds = [labels[i][:1] for i in neurons]
    if len(neurons) == 2 and sorted(kinds) == ["E", "I"]:
        return E_COLOR if kinds[j] == "E" else I_COLOR
    return cmap(j % 10)


def _subsample(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.unique(np.linspace(0, n - 1, k).astype(int))


def crosscheck_figure(report, stimuli: Optional[Sequence[int]] = None, max_points: int = 1500) -> Figure:
    """Closure (x) vs simulation (y, +-1 SE) for means, variances and covariances.

    ``report``: a ``CrosscheckReport``.  Points of all ``stimuli`` (default: all) go into
    each panel (colored by stimulus when several, E circles / I squares); the
    covariance panel shows off-diagonal entries (at most ``max_points``).
    """
    B, N = report.n_stimuli, report.N
    stimuli = list(range(B)) if stimuli is None else list(stimuli)
    exc = _is_exc(report.labels)
    fig, axes = new_figure(1, 3, size=(3.6, 3.4))
    cmap = matplotlib.colormaps["viridis"]
    iu = np.triu_indices(N, 1)
    sel = _subsample(iu[0].size, max(1, max_points // max(len(stimuli), 1)))
    iu = (iu[0][sel], iu[1][sel])
    for j, b in enumerate(stimuli):
        col = cmap(j / max(len(stimuli) - 1, 1)) if len(stimuli) > 1 else None
        th, sm, se = report.theory, report.sim, report.sim_se
        for mask, mk, c0, name in ((exc, "o", E_COLOR, "E"), (~exc, "s", I_COLOR, "I")):
            if not mask.any():
                continue
            c = col if col is not None else c0
            lab = name if j == 0 else None
            theory_vs_sim(axes[0, 0], th.mean[b, mask], sm.mean[b, mask], se.mean[b, mask],
                          color=c, marker=mk, label=lab)
            dv = lambda C: np.diagonal(C[b])[mask]  # noqa: E731
            theory_vs_sim(axes[0, 1], dv(th.cov), dv(sm.cov), dv(se.cov), color=c, marker=mk, label=lab)
        if iu[0].size:
            theory_vs_sim(axes[0, 2], th.cov[b][iu], sm.cov[b][iu], se.cov[b][iu],
                          color=col if col is not None else "0.2", marker=".", ms=3)
    for ax, (name, unit) in zip(axes[0], (("mean", "mV"), ("variance", "mV$^2$"), ("covariance (i<j)", "mV$^2$"))):
        lines = ax.get_lines()
        xs = np.concatenate([ln.get_xdata() for ln in lines]) if lines else np.array([])
        ys = np.concatenate([ln.get_ydata() for ln in lines]) if lines else np.array([])
        identity_line(ax, xs, ys)
        ax.set_xlabel(f"closure {name} ({unit})")
        ax.set_ylabel(f"simulation {name} ({unit})")
    if exc.any() and (~exc).any():
        axes[0, 0].legend(frameon=False, fontsize=8)
    if len(stimuli) > 1:
        axes[0, 0].set_title(f"{len(stimuli)} stimuli (color: index)", fontsize=9)
    axes[0, 2].set_title(f"error bars: $\\pm$1 SE, {report.n_trials} trials", fontsize=9)
    return fig


def transient_figure(report, neurons: Optional[Sequence[int]] = None,
                     stimuli: Optional[Sequence[int]] = None, max_markers: int = 40) -> Figure:
    """Mean and std of u from rest: closure lines vs simulation (+-1 SE), per stimulus.

    Rows: ``stimuli`` (indices into the report's stimuli; default: up to 3 of those with a
    transient, first/middle/last); columns: mean, std.
    """
    tr = report.transient
    if tr is None:
        raise ValueError("the report has no transient comparison (crosscheck(..., transient=True))")
    have = list(tr.stimuli)
    if stimuli is None:
        B = len(have)
        stimuli = [have[k] for k in sorted({0, B // 2, B - 1})] if B > 2 else have
    missing = [b for b in stimuli if b not in have]
    if missing:
        raise ValueError(f"stimuli {missing} have no transient (compared: {have})")
    neurons = default_neurons(report.labels) if neurons is None else list(neurons)
    fig, axes = new_figure(len(stimuli), 2, size=(4.2, 2.8))
    cmap = matplotlib.colormaps["tab10"]
    sel = _subsample(tr.t.size, max_markers)
    for r, bs in enumerate(stimuli):
        b = have.index(bs)  # row of the transient arrays
        for c, (th, sm, se, name) in enumerate(
            ((tr.mean_th, tr.mean_sim, tr.mean_se, "mean"), (tr.std_th, tr.std_sim, tr.std_se, "std"))
        ):
            ax = axes[r, c]
            for j, i in enumerate(neurons):
                col = _neuron_color(report.labels, neurons, j, cmap)
                ax.plot(tr.t, th[b, :, i], color=col, lw=1.4, label=f"{report.labels[i]} closure")
                ax.errorbar(tr.t[sel], sm[b, sel, i], yerr=se[b, sel, i], fmt="o", ms=2.5, mew=0,
                            color=col, elinewidth=0.7, alpha=0.8)
            hb = report.h[bs]
            hs = f"h = {hb[0]:.3g}" if np.allclose(hb, hb[0]) else f"stimulus {bs}"
            ax.set_title(f"{hs}: {name} (lines: closure, dots: simulation)", fontsize=8)
            ax.set_xlabel("time from rest (ms)")
            ax.set_ylabel(f"{name} of u (mV)")
    axes[0, 0].legend(frameon=False, fontsize=7)
    return fig


def sweep_figure(x, report, neurons: Optional[Sequence[int]] = None, xlabel: str = "h (mV)",
                 theory_x=None, theory_mean=None, theory_std=None) -> Figure:
    """Moments vs a stimulus parameter ``x`` (B,): mean, std and relative errors.

    Panels: mean and std of the chosen ``neurons`` (closure line, simulation points
    +-1 SE), and the relative errors of mean and std vs x with their noise floor
    (err_se, shaded).  ``theory_x``/``theory_mean``/``theory_std`` ((X,), (X, N), (X, N))
    optionally draw the closure on a finer grid.
    """
    x = np.asarray(x, float)
    neurons = default_neurons(report.labels) if neurons is None else list(neurons)
    fig, axes = new_figure(1, 3, size=(3.8, 3.2))
    cmap = matplotlib.colormaps["tab10"]
    sd_th = np.sqrt(np.maximum(np.diagonal(report.theory.cov, axis1=-2, axis2=-1), 0.0))
    sd_sim = np.sqrt(np.maximum(np.diagonal(report.sim.cov, axis1=-2, axis2=-1), 0.0))
    for j, i in enumerate(neurons):
        lab = report.labels[i]
        col = _neuron_color(report.labels, neurons, j, cmap)
        tx = x if theory_x is None else np.asarray(theory_x)
        tm = report.theory.mean[:, i] if theory_mean is None else np.asarray(theory_mean)[:, i]
        ts = sd_th[:, i] if theory_std is None else np.asarray(theory_std)[:, i]
        axes[0, 0].plot(tx, tm, color=col, lw=1.3, label=f"{lab} closure")
        axes[0, 0].errorbar(x, report.sim.mean[:, i], yerr=report.sim_se.mean[:, i], fmt="o", ms=3.5,
                            color=col, mew=0, elinewidth=0.8, label=f"{lab} simulation")
        axes[0, 1].plot(tx, ts, color=col, lw=1.3)
        axes[0, 1].errorbar(x, sd_sim[:, i], yerr=report.std_se[:, i], fmt="o", ms=3.5, color=col,
                            mew=0, elinewidth=0.8)
    axes[0, 0].set_ylabel("mean of u (mV)")
    axes[0, 1].set_ylabel("std of u (mV)")
    axes[0, 0].legend(frameon=False, fontsize=7)
    ax = axes[0, 2]
    for m, col in (("mean", "k"), ("std", "#8e44ad")):
        e, s = report.err[m], report.err_se[m]
        ok = np.isfinite(e) & (e > 0)
        ax.plot(x[ok], 100 * e[ok], "o-", color=col, ms=3.5, lw=1, label=f"{m}")
        fs = np.isfinite(s)
        ax.fill_between(x[fs], 0, 100 * 2 * s[fs], color=col, alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_ylabel("relative error (%)")
    ax.set_title("shaded: 2 x sampling-noise floor", fontsize=8)
    ax.legend(frameon=False, fontsize=7)
    for a in axes[0]:
        a.set_xlabel(xlabel)
    return fig


def spectrum_figure(freqs, spectrum, labels: Sequence[str], peak=None, title: Optional[str] = None) -> Figure:
    """Auto-spectra (F, N) of u vs frequency (Hz), log power; ``peak`` (N,) marks peaks (NaN: none)."""
    freqs, spectrum = np.asarray(freqs), np.asarray(spectrum)
    fig, axes = new_figure(1, 1, size=(4.6, 3.2))
    ax = axes[0, 0]
    for i, lab in enumerate(labels):
        col = E_COLOR if lab.startswith("E") else I_COLOR
        ax.semilogy(freqs, spectrum[:, i], color=col, label=lab)
        if peak is not None and np.isfinite(np.asarray(peak)[i]):  # NaN: no peak
            ax.axvline(float(np.asarray(peak)[i]), color=col, lw=0.8, ls=":")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power (mV$^2$/Hz)")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def write_crosscheck_figures(report, path, neurons: Optional[Sequence[int]] = None,
                             stimuli: Optional[Sequence[int]] = None,
                             transient_stimuli: Optional[Sequence[int]] = None):
    """Write the scatter figure of a ``CrosscheckReport`` to ``path`` (and, if the report
    has a transient, the time courses to "<stem>_transient<suffix>"); returns the report
    with ``figures`` ({name: path}) filled in.

    ``stimuli``: stimuli in the scatter (default all); ``transient_stimuli``: rows of the
    transient figure (default: up to 3); ``neurons``: neurons of the transient figure.
    """
    root, ext = os.path.splitext(os.fspath(path))
    ext = ext or ".png"
    figs = dict(report.figures)
    figs["scatter"] = save(crosscheck_figure(report, stimuli=stimuli), root + ext)
    if report.transient is not None:
        figs["transient"] = save(transient_figure(report, neurons=neurons, stimuli=transient_stimuli),
                                 root + "_transient" + ext)
    return dataclasses.replace(report, figures=figs)
