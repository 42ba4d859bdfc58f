"""Snapshots of a training run: the network at a few wall times, kept in memory.

A comparison judges every method by simulation (``simulated_score``), not by its own
training loss; to plot that judgement against wall time, each run keeps the network it
has at geometrically spaced wall times (``budget * 2^-k``, k = n-1 .. 0: with the
default n = 7 and a 480 s budget, 7.5, 15, 30, 60, 120, 240 and 480 s) and scores them
after training (:mod:`.compare`).  A snapshot is taken at the first iteration that ends
past a scheduled time (several times passed at once give one snapshot), so snapshots
are strictly increasing in wall time.  Keeping one costs a host copy of the network:
nothing is simulated during training.

Where the network comes from:

* Adam (BPTT, moments-adam, hybrid's second phase, growth's last stage):
  :meth:`Recorder.adam_callback`, ``adam_train``'s per-step callback (theta after the step);
* L-BFGS (moments-lbfgs, corrected and hybrid's first phase): :meth:`Recorder.lbfgs_progress`
  reads the best theta so far from the fit's checkpoint, which ``fit`` writes after every
  iteration just before it reports progress;
* corrected's rounds: :meth:`Recorder.take_theta` with each round's network.
"""

from __future__ import annotations

import time
from typing import Callable, List, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from ..progress import Progress, ProgressFn
from ..training import checkpoint as ckpt

__all__ = ["Snapshot", "snapshot_times", "Recorder", "N_SNAPSHOTS"]

#: Scheduled snapshots per run (the last at the budget).
N_SNAPSHOTS = 7


class Snapshot(NamedTuple):
    """The network of a run at one wall time.

    wall_time_s: seconds since the run began (compilation included); iteration: the
    run's iteration count then (its own kind: L-BFGS iterations, Adam steps, ...);
    net: the ``SSN``; inputs: (S, N) its inputs h (mV), network cell order.
    """

    wall_time_s: float
    iteration: int
    net: object
    inputs: np.ndarray


def snapshot_times(budget_s: float, n: int = N_SNAPSHOTS) -> tuple:
    """(n,) scheduled wall times budget * 2^-k, k = n-1 .. 0 (s, increasing)."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return tuple(float(budget_s) * 2.0 ** -k for k in range(int(n) - 1, -1, -1))


class Recorder:
    """Keeps a :class:`Snapshot` when the run's wall time passes each scheduled time.

    t0: ``time.perf_counter()`` at the run's start; budget_s: its budget (s); n: number
    of scheduled times (0: keep none).
    """

    def __init__(self, t0: float, budget_s: float, n: int = N_SNAPSHOTS):
        self.t0 = t0
        self.pending: List[float] = list(snapshot_times(budget_s, n)) if n else []
        self.snapshots: List[Snapshot] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def due(self) -> bool:
        """True when the next scheduled time has passed."""
        return bool(self.pending) and self.elapsed() >= self.pending[0]

    def take(self, iteration: int, net, inputs) -> None:
        """Keep (net, inputs) now and drop every scheduled time already passed."""
        t = self.elapsed()
        while self.pending and t >= self.pending[0]:
            self.pending.pop(0)
        self.snapshots.append(Snapshot(t, int(iteration), net, np.asarray(inputs)))

    def take_theta(self, param, raw_inputs, iteration: int, theta, force: bool = False) -> None:
        """Keep ``param.network(theta)`` and its inputs if a time is due (or ``force``)."""
        if force or self.due():
            th = jnp.asarray(theta)
            self.take(iteration, param.network(th), param.inputs(th, jnp.asarray(raw_inputs, th.dtype)))

    def adam_callback(self, param, raw_inputs, offset: int = 0) -> Callable:
        """``adam_train``'s ``callback(t, theta, loss, aux)``: a snapshot when due
        (iteration ``offset + t + 1``); never stops training."""

        def callback(t, theta, loss, aux):
            self.take_theta(param, raw_inputs, offset + int(t) + 1, theta)
            return None

        return callback

    def lbfgs_progress(self, param, raw_inputs, folder, progress: Optional[ProgressFn],
                       offset: int = 0) -> ProgressFn:
        """A ``fit`` progress callback that forwards to ``progress`` and, when a time is
        due, keeps the best theta of the fit's checkpoint in ``folder``."""

        def callback(event: Progress) -> None:
            if progress is not None:
                progress(event)
            if self.due() and ckpt.exists(folder):
                theta = ckpt.load(folder, "fit").arrays["best_theta"]
                self.take_theta(param, raw_inputs, offset + int(event.step), theta)

        return callback
