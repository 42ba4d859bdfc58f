"""The L-BFGS phase of a comparison run, and the two methods that go on from it.

* :func:`lbfgs_phase` -- L-BFGS on the stationary closure (``momentssn.fit``), as
  ``moments-lbfgs`` runs it, with snapshots (:mod:`.compare_snapshots`);
* :func:`corrected_phase` -- ``"corrected"``'s second phase: rounds of the iterated
  closure correction (``momentssn.fit_corrected``) from the L-BFGS result;
* :func:`hybrid_phase` -- ``"hybrid"``'s second phase: Adam on the simulated loss
  (``train_bptt``, BPTT through the default Heun integrator) from the L-BFGS result.

How the budget B is split.  The first ``lbfgs_fraction`` of B (default 0.4) goes to
L-BFGS, which stops earlier when it converges (relative gain < 1e-6 three times in a
row); the second phase gets whatever is left, so a fast L-BFGS leaves more to it.  On
the published task L-BFGS from the published optimizer's start is below 2e-3 (closure)
after about 40 s and flat after 110-190 s on 2 cores (README), so 0.4 of a 480 s budget
lets it converge and leaves about 300 s: three 80-90 s correction refits, the length
of refit the correction was measured with (README: three 90 s rounds reached 0.42-0.46x
the published network), or about 40 BPTT steps (5 stimuli x 100 trials x 500 ms at
0.2 ms: ~7 s a step).  The correction divides what is left among ``rounds`` refits
after the simulations each round needs (their cost is measured once, on the L-BFGS
result, before the rounds; a round simulates one to three candidates, the steps 1, 1/2,
1/4 along its refit, all with the same noise seed, so the estimate is a lower bound),
with fewer rounds if a refit would get less than ``MIN_REFIT_S`` (at least one round).  Other splits were not measured: one full-size run of each method
takes 8 minutes of this 2-core machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Optional

import jax.numpy as jnp
import numpy as np

from ..losses.simulated import simulated_score
from ..params.ring import echeveste_theta
from ..progress import ProgressFn
from ..training.adam import train_bptt
from ..training.corrected import SimulationSettings, fit_corrected
from ..training.fit import fit
from .compare_snapshots import Recorder, Snapshot

__all__ = ["LBFGS_FRACTION", "CORRECTION_ROUNDS", "HYBRID_LEARNING_RATE", "lbfgs_phase", "corrected_phase",
           "hybrid_phase", "adam_trace"]

#: Share of the budget of ``corrected`` and ``hybrid``'s first (L-BFGS) phase.
LBFGS_FRACTION = 0.4
#: Correction rounds of ``corrected`` (fewer if a round does not lower the simulated loss).
CORRECTION_ROUNDS = 3
#: Shortest refit worth a correction round (s): fewer rounds when the rest of the budget is short.
MIN_REFIT_S = 10.0
#: Adam step of ``hybrid``'s BPTT phase: a fine-tuning from a fit, smaller than
#: ``train_bptt``'s default 1e-2 for a start from scratch.
HYBRID_LEARNING_RATE = 3e-3


def adam_trace(history, offset_iter=0, offset_time=0.0) -> dict:
    """A run's trace (iteration, wall_time_s, loss) from an Adam history."""
    return dict(
        iteration=[offset_iter + int(s) for s in history["step"]],
        wall_time_s=[offset_time + float(t) for t in history["wall_time_s"]],
        loss=[float(v) for v in history["loss"]],
    )


def lbfgs_phase(param, task, *, max_time, seed, steps, folder, resume, progress: Optional[ProgressFn],
                recorder: Recorder, theta0=None):
    """L-BFGS (jaxopt) on the closure from ``theta0`` (default: where fit-baseline
    starts), its checkpoint in ``folder`` (a temporary folder if None: snapshots read
    it).  Returns (theta, trace, loss kind, wall time of the phase (s))."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="momentssn-fit-") as tmp:
        where = Path(tmp) if folder is None else Path(folder)
        res = fit(param, task, method="jaxopt", max_iter=steps or 10_000, max_time=max_time,
                  theta0=echeveste_theta(param, task.inputs) if theta0 is None else theta0, seed=seed,
                  progress=recorder.lbfgs_progress(param, task.inputs, where, progress),
                  checkpoint_dir=where, resume=resume)
    hist, times = res.history[0], res.times[0]
    trace = dict(iteration=list(range(len(hist))), wall_time_s=list(times), loss=list(hist))
    return np.asarray(res.theta), trace, "closure (stationary)", time.perf_counter() - t0


def corrected_phase(param, task, theta, trace, *, deadline, seed, steps, correction: SimulationSettings,
                    rounds: int, progress: Optional[ProgressFn], recorder: Recorder):
    """Correction rounds from ``theta`` until ``deadline`` (``time.perf_counter()``);
    every round's network becomes a snapshot.  Returns (theta, trace) with the
    rounds' simulated losses (their own seeds) appended to ``trace``."""
    t_sim = time.perf_counter()
    th = jnp.asarray(theta)
    simulated_score(param.network(th), param.inputs(th, jnp.asarray(task.inputs, th.dtype)), task.target_mean,
                    task.target_cov, seed=seed, **correction._asdict())  # its cost, compilation included
    t_sim = time.perf_counter() - t_sim
    left = deadline - time.perf_counter()
    rounds = max(1, min(rounds, int(left // (t_sim + MIN_REFIT_S))))  # those that fit (at least one)
    refit = max((left - rounds * t_sim) / rounds, 1.0)
    t_start = time.perf_counter() - recorder.t0
    res = fit_corrected(param, task, theta, rounds=rounds, refit_time=refit, sim=correction, seed=seed,
                        fit_options=dict(max_iter=steps or 10_000), progress=progress)
    it = trace["iteration"][-1] if trace["iteration"] else 0
    for r, f in zip(res.rounds[1:], res.fits):
        it += f.iterations
        th = jnp.asarray(r.theta)
        recorder.snapshots.append(Snapshot(t_start + r.wall_time_s, it, param.network(th),
                                           np.asarray(param.inputs(th, jnp.asarray(task.inputs, th.dtype)))))
        trace["iteration"].append(it)
        trace["wall_time_s"].append(t_start + r.wall_time_s)
        trace["loss"].append(r.simulated_loss)
    recorder.pending.clear()
    return np.asarray(res.theta), trace


def hybrid_phase(param, task, theta, trace, *, deadline, seed, steps, sim: dict, folder,
                 progress: Optional[ProgressFn], recorder: Recorder):
    """Adam on the simulated loss (BPTT) from ``theta`` until ``deadline``; returns
    (theta, trace) with the Adam steps appended to ``trace``."""
    offset = trace["iteration"][-1] + 1 if trace["iteration"] else 0
    t_start = time.perf_counter() - recorder.t0
    res = train_bptt(param, task, theta0=jnp.asarray(theta), steps=steps or 100_000, seed=seed,
                     max_time=max(deadline - time.perf_counter(), 1.0), learning_rate=HYBRID_LEARNING_RATE,
                     checkpoint_dir=folder, progress=progress,
                     callback=recorder.adam_callback(param, task.inputs, offset), **sim)
    part = adam_trace(res.history, offset, t_start)
    return np.asarray(res.theta), {k: trace[k] + part[k] for k in trace}
