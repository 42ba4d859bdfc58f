"""Time and peak memory of one BPTT iteration, with and without rematerialization (remat).

One iteration = value and gradient of ``momentssn.losses.simulated.simulated_loss`` (the moment
loss on simulated trials) w.r.t. theta, by reverse mode through ``ms.simulate``.
Problem (full size): Ring parameterization at m = 50 (N = 100: 50 E + 50 I, 211
parameters; ``--param general`` for 20003) on the embedded default task
(``ms.default_task()``: 5 stimuli), 100 trials per stimulus, 500 ms at dt = 0.2 ms
(2500 steps), moments recorded every 1 ms and averaged over the last 100 ms, float32
simulation (theta in float64).

Two cases, side by side in one run:

    remat   : simulated_loss(..., remat=True)  (default: every chunk of steps of
              ms.simulate is under jax.checkpoint and recomputed in the backward pass)
    no remat: simulated_loss(..., remat=False) (every step's residuals are kept)

Each case runs in a fresh subprocess (so one case's allocations cannot inflate the
other's peak) and reports:

    compile  : lower + compile time of the jitted value-and-gradient (s)
    time     : best wall time of one call after compilation (s), of --repeats calls
    XLA temp : temporary buffer size of the compiled executable (memory_analysis())
    RSS      : resident memory after compilation, and peak resident memory during the
               timed calls (ru_maxrss, with the high-water mark reset after compiling
               through /proc/self/clear_refs when the kernel allows; otherwise the peak
               includes compilation, and the report says so)

and the ratios no-remat / remat.

Run:  .venv/bin/python benchmarks/train.py [--quick] [--repeats 3] [--param ring|general]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"  # XLA CPU hang workaround
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

FULL = dict(m=50, n_stim=5, n_trials=100, t_max=500.0, t_avg=100.0, dt=0.2)
QUICK = dict(m=10, n_stim=5, n_trials=20, t_max=100.0, t_avg=20.0, dt=0.5)


def _rss_mb() -> float:
    """Current resident set size (MB) from /proc/self/statm."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (``ru_maxrss``); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_case(size: dict, remat: bool, param_kind: str, repeats: int) -> dict:
    """One case, in this process; returns its measurements."""
    import resource

    import jax

    jax.config.update("jax_enable_x64", True)  # theta (and the closure of the task) in float64
    import jax.numpy as jnp
    import numpy as np

    import momentssn as ms
    from momentssn.tasks import Task
    from momentssn.losses.simulated import simulated_loss

    task = ms.default_task()
    m = size["m"]
    if m != task.n_exc or size["n_stim"] != task.n_stimuli:  # a smaller task: subsample cells/stimuli
        idx = np.linspace(0, task.n_exc - 1, m).round().astype(int)
        s = np.arange(size["n_stim"]) % task.n_stimuli
        task = Task(
            inputs=np.concatenate([task.inputs[s][:, idx], task.inputs[s][:, task.n_exc + idx]], axis=1),
            target_mean=task.target_mean[s][:, idx],
            target_cov=task.target_cov[s][:, idx][:, :, idx],
            n_exc=m,
            name="default-subsampled",
        )
    param = ms.get_parameterization(param_kind, m=m)
    theta = param.default_theta()
    key = jax.random.key(0)
    loss = simulated_loss(
        param, task, n_trials=size["n_trials"], t_max=size["t_max"], t_avg=size["t_avg"], dt=size["dt"],
        remat=remat,
    )
    vg = jax.jit(jax.value_and_grad(loss, has_aux=True))
    t0 = time.perf_counter()
    compiled = vg.lower(theta, key).compile()
    t_compile = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    args_b = getattr(mem, "argument_size_in_bytes", None) if mem is not None else None
    out_b = getattr(mem, "output_size_in_bytes", None) if mem is not None else None

    rss_before = _rss_mb()
    reset = _reset_peak_rss()
    times, value, gnorm = [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        (value, aux), grad = jax.block_until_ready(compiled(theta, key))
        times.append(time.perf_counter() - t0)
        gnorm = float(jnp.linalg.norm(grad))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB -> MB on Linux
    return dict(
        remat=remat,
        compile_s=t_compile,
        time_s=min(times),
        times_s=times,
        temp_mb=None if temp is None else temp / 2**20,
        args_mb=None if args_b is None else args_b / 2**20,
        out_mb=None if out_b is None else out_b / 2**20,
        rss_before_mb=rss_before,
        peak_rss_mb=peak,
        peak_reset=reset,
        loss=float(value),
        grad_norm=gnorm,
        n_diverged=int(np.sum(np.asarray(aux.n_diverged))),
        N=param.N,
        n_params=param.size,
        platform=jax.devices()[0].platform,
        jax=jax.__version__,
    )


def _fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"small size {QUICK} instead of {FULL}")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per case (best is reported)")
    ap.add_argument("--param", default="ring", choices=["ring", "general", "baseline15"])
    ap.add_argument("--case", choices=["ckpt", "nockpt"], help=argparse.SUPPRESS)  # internal: one case
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    size = QUICK if args.quick else FULL

    if args.case:  # child process: run one case and print its JSON on the last line
        res = run_case(size, args.case == "ckpt", args.param, args.repeats)
        print(json.dumps(res), flush=True)
        return 0

    n_steps = int(round(size["t_max"] / size["dt"]))
    print(
        f"BPTT iteration (value + gradient of the simulated moment loss), {args.param} m={size['m']} "
        f"(N={2 * size['m']}), {size['n_stim']} stimuli x {size['n_trials']} trials, "
        f"{size['t_max']:g} ms at dt={size['dt']:g} ms ({n_steps} steps), float32 simulation",
        flush=True,
    )
    results = {}
    for case in ("ckpt", "nockpt"):
        cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--repeats", str(args.repeats),
               "--param", args.param] + (["--quick"] if args.quick else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"case {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
            results[case] = None
            continue
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  case {case}: done in {time.perf_counter() - t0:.1f} s (subprocess)", flush=True)

    r = results
    first = next((v for v in r.values() if v), None)
    if first is None:
        return 1
    print(f"jax {first['jax']} on {first['platform']}, {first['n_params']} parameters, "
          f"best of {args.repeats} calls after compilation")
    if not all(v is None or v["peak_reset"] for v in r.values()):
        print("note: the RSS high-water mark could not be reset, so peak RSS includes compilation")
    head = f"{'':24}{'remat':>14}{'no remat':>16}{'ratio':>8}"
    print(head)

    def row(label, key, spec, unit=""):
        a = r["ckpt"][key] if r.get("ckpt") else None
        b = r["nockpt"][key] if r.get("nockpt") else None
        ratio = f"{b / a:8.2f}" if (a and b) else f"{'n/a':>8}"
        print(f"{label:24}{_fmt(a, spec):>14}{_fmt(b, spec):>16}{ratio}{unit}")

    row("time / iteration (s)", "time_s", ".3f")
    row("compile (s)", "compile_s", ".1f")
    row("XLA temp buffers (MB)", "temp_mb", ".1f")
    row("RSS after compile (MB)", "rss_before_mb", ".0f")
    row("peak RSS, run (MB)", "peak_rss_mb", ".0f")
    for case in ("ckpt", "nockpt"):
        v = r.get(case)
        if v:
            print(f"  {case}: loss {v['loss']:.6g}, |grad| {v['grad_norm']:.6g}, diverged trials "
                  f"{v['n_diverged']}, times {[round(t, 3) for t in v['times_s']]}")
    if r.get("ckpt") and r.get("nockpt"):
        same = abs(r["ckpt"]["loss"] - r["nockpt"]["loss"]) <= 1e-6 * abs(r["ckpt"]["loss"])
        print(f"  same loss in both cases: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
