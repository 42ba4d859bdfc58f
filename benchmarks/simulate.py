"""Time to accuracy of momentssn's simulation, measured side by side in one run.

Problem (issue 17): the published 15-parameter network (Echeveste et al. 2020, N = 100,
task ``momentssn.datasets.echeveste2020_path()``), contrasts 0 and 1 one at a time, 64 trials
x 3000 ms with 500 ms burn-in, float32; target: the pooled E-population mean and std
(averages over the 50 E cells of the pooled mean and of sqrt(var)) within 1% of their
dt -> 0 limit for the same trials and duration.

    limit      momentssn Heun at dt = 1/8 and 1/16 ms on one noise path, Richardson (order 2)
    heun       momentssn's default (second order; ``simulate``'s default ``threads``: the trials
               in blocks on the process's CPU cores, ``momentssn.simulation.blocks``); also
               timed with ``threads=1`` (one program, one step loop)
    exp_euler  momentssn's previous (first-order) scheme
    diffrax    diffrax ShARK (its solver for additive noise) on the augmented SDE for (u, z),
               eta = L z, a VirtualBrownianTree with space-time Levy area, vmapped over trials
    numpy      the Heun scheme as a plain numpy loop (exact OU update, PCG64 normals,
               single-threaded BLAS)
    2 devices  the new default in a child process started with XLA's
               ``--xla_force_host_platform_device_count=2`` (an opt-in a user sets before
               JAX starts; ``simulate`` then shards the trials over the two CPU devices)

How accuracy and time are measured.  A momentssn run at dt with ``noise_substeps = dt / (1/16)``
sees the same noise path as the limit, so its error against the limit is its step error alone
(Monte Carlo noise cancels); the largest dt of the ladder 2, 1, 0.5, ... ms within 1% is then
timed as a user runs it (``noise_substeps = 1``; best of repeats after compilation).  The first-order
scheme would need steps of ~0.02 ms: its error is extrapolated from dt = 0.25 and 0.125 ms
(error proportional to dt, measured) and the run at that step is timed for real.
diffrax draws its own noise, so its error is estimated by step doubling on its (consistent)
Brownian tree, err(dt) ~ (m_dt - m_{dt/2}) 4/3, like ``momentssn.step_error``; its ladder starts
at 1 ms (2 ms is 4% off) because every ShARK run takes minutes here.  The whole run takes
~15-25 minutes on 2 busy cores, mostly diffrax; ``--quick`` takes ~3.  The numpy
loop runs the same scheme at the same step as momentssn, so only time is compared there.

Prints, per contrast, the step and time of each method and the ratios (targets: the new
default >= 5x faster than the old scheme and than diffrax at equal accuracy; >= 2x faster
than the numpy loop at the same step).  ``--quick``: contrast 0 only, diffrax skipped.

Run:  .venv/bin/python benchmarks/simulate.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported: threaded BLAS on a shared
    # 2-core machine made the loop ~10x slower, which would flatter momentssn

import numpy as np

import jax
import jax.numpy as jnp

from momentssn.simulation.simulate import StepSizeWarning, simulate

T_MAX, BURN_IN, N_TRIALS = 3000.0, 500.0, 64
FINE = 1 / 16
TOL = 0.01
LADDER = (2.0, 1.0, 0.5, 0.25, 0.125)


def published():
    """(net, H (5, N) inputs per contrast, contrasts) of the published network."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from reference import PUBLISHED_BASELINE15

    from momentssn.params.base import get_parameterization
    from momentssn.tasks import load_task

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                        "echeveste2020", "task.npz")  # the released file beside the repository
    try:
        from momentssn.datasets import echeveste2020_path  # the same file, shipped as package data

        path = echeveste2020_path() if echeveste2020_path().exists() else path
    except ImportError:
        pass
    tk = load_task(path)
    param = get_parameterization("baseline15", m=tk.n_net // 2)
    theta = param.to_theta(dict(PUBLISHED_BASELINE15))
    return param.network(theta), np.asarray(param.inputs(theta, jnp.asarray(tk.inputs)), float), np.asarray(tk.contrasts)


def e_stats(mean, cov, NE):
    """(pooled E mean, pooled E std) from mean (N,), cov (N, N)."""
    mean, cov = np.asarray(mean, float), np.asarray(cov, float)
    return np.array([mean[:NE].mean(), np.sqrt(np.diag(cov)[:NE]).mean()])


CPU = {}  # id of a timed function -> process CPU time (all threads) of its fastest run


def best_time(fn, repeats):
    """Wall time of the fastest of ``repeats`` runs after a warm-up (its process CPU time,
    summed over threads, goes to ``CPU``: on a shared machine it says how much work a run
    is, whatever the other processes do)."""
    fn()  # compilation / warm-up
    ts = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append((time.perf_counter() - t0, time.process_time() - c0))
    best = min(ts)
    CPU[id(fn)] = best[1]
    return best[0]


def ms_run(net, h, dt, integrator, substeps=1, threads=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StepSizeWarning)
        r = simulate(net, h, T_MAX, dt, N_TRIALS, 0, burn_in=BURN_IN, integrator=integrator,
                     noise_substeps=substeps, threads=threads)
        jax.block_until_ready(r.moments)
    return e_stats(r.moments.mean, r.moments.cov, net.N // 2)


def rel_err(x, ref):
    return float(np.max(np.abs(x - ref) / np.abs(ref)))


# --------------------------------------------------------------------------- numpy


def numpy_heun(net, h, dt, seed=0):
    """Heun with the exact OU update of eta, as a plain numpy loop (float32)."""
    f = np.float32
    tau = np.asarray(net.tau, f)
    WT = np.ascontiguousarray(np.asarray(net.W, f).T)  # r @ WT: a strided W.T made OpenBLAS's
    # 64 x 100 x 100 product ~9 us (70%) slower (measured), which would flatter momentssn
    lam, V = np.linalg.eigh(np.asarray(net.noise_cov, np.float64))
    L = ((V * np.sqrt(np.clip(lam, 0, None))) @ V.T).astype(f)
    k, N = f(net.k), net.N
    te = float(net.tau_noise)
    rho, c = f(np.exp(-dt / te)), f(np.sqrt(-np.expm1(-2 * dt / te)))
    n_steps, n_burn = int(round(T_MAX / dt)), int(round(BURN_IN / dt))
    rng = np.random.default_rng(seed)
    u = np.zeros((N_TRIALS, N), f)
    eta = rng.standard_normal((N_TRIALS, N), dtype=f) @ L
    h = np.asarray(h, f)
    s1, s2, ref = np.zeros(N, f), np.zeros((N, N), f), None
    dt_ = f(dt)

    def drive(u, eta):
        return (h + (k * np.maximum(u, 0) ** 2) @ WT + eta - u) / tau

    for s in range(n_steps):
        if s == n_burn:
            ref = u.mean(0)
        if s >= n_burn:
            d = u - ref
            s1 += d.sum(0)
            s2 += d.T @ d
        eta_n = rho * eta + c * (rng.standard_normal((N_TRIALS, N), dtype=f) @ L)
        f0 = drive(u, eta)
        f1 = drive(u + dt_ * f0, eta_n)
        u = u + (0.5 * dt_) * (f0 + f1)
        eta = eta_n
    n = (n_steps - n_burn) * N_TRIALS
    m = s1 / n
    return e_stats(ref + m, s2 / n - np.outer(m, m), N // 2)


# --------------------------------------------------------------------------- diffrax


def make_diffrax(net, h):
    """dt -> a function running diffrax ShARK over all trials (same Brownian tree for every dt)."""
    import diffrax
    import lineax as lx

    N = net.N
    W, tau = jnp.asarray(net.W, jnp.float32), jnp.asarray(net.tau, jnp.float32)
    te, k = jnp.float32(net.tau_noise), jnp.float32(net.k)
    lam, V = np.linalg.eigh(np.asarray(net.noise_cov, np.float64))
    L = jnp.asarray((V * np.sqrt(np.clip(lam, 0, None))) @ V.T, jnp.float32)
    hh = jnp.asarray(h, jnp.float32)
    diag = jnp.concatenate([jnp.zeros(N), jnp.full(N, jnp.sqrt(2.0 / te))]).astype(jnp.float32)

    def drift(t, y, args):  # y = (u, z), eta = L z with z a unit OU process
        u, z = y[:N], y[N:]
        return jnp.concatenate([(-u + hh + W @ (k * jnp.maximum(u, 0) ** 2) + L @ z) / tau, -z / te])

    def diffusion(t, y, args):
        return lx.DiagonalLinearOperator(diag)

    def one_trial(key, dt, n_burn):
        k0, k1 = jax.random.split(key)
        y0 = jnp.concatenate([jnp.zeros(N), jax.random.normal(k0, (N,))]).astype(jnp.float32)
        bm = diffrax.VirtualBrownianTree(0.0, T_MAX, tol=FINE, shape=(2 * N,), key=k1,
                                         levy_area=diffrax.SpaceTimeLevyArea)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
        n_steps = int(round(T_MAX / dt))
        ts = jnp.arange(n_burn, n_steps) * dt
        sol = diffrax.diffeqsolve(terms, diffrax.ShARK(), 0.0, T_MAX, dt, y0,
                                  saveat=diffrax.SaveAt(ts=ts, fn=lambda t, y, args: y[:N]),
                                  max_steps=n_steps + 1, adjoint=diffrax.ForwardMode())
        return sol.ys  # (n_window, N)

    cache = {}

    def run(dt):
        if dt not in cache:
            n_burn = int(round(BURN_IN / dt))

            @jax.jit
            def f(key):
                ys = jax.vmap(lambda kk: one_trial(kk, dt, n_burn))(jax.random.split(key, N_TRIALS))
                x = ys.reshape(-1, N)
                m = x.mean(0)
                d = x - m
                return m, d.T @ d / x.shape[0]

            cache[dt] = f
        m, c = jax.block_until_ready(cache[dt](jax.random.key(0)))
        return e_stats(m, c, N // 2)

    return run


# --------------------------------------------------------------------------- 2 host devices


def two_device_time(i, dt, repeats):
    """Wall time of the new default at step dt on contrast index i in a fresh process that
    sees 2 CPU devices (``--xla_force_host_platform_device_count=2``, a process-wide XLA
    switch the library never sets): ``simulate`` then shards the trials over them."""
    import subprocess

    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    cmd = [sys.executable, os.path.abspath(__file__), "--time-heun", str(i), repr(dt), str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _time_heun(i, dt, repeats):
    net, H, _ = published()
    assert len(jax.devices()) == 2, jax.devices()
    h = jnp.asarray(H[i], jnp.float32)
    print(best_time(lambda: ms_run(net, h, dt, "heun"), repeats))


# --------------------------------------------------------------------------- main


def limit_of(net, h):
    a = ms_run(net, h, FINE, "heun")
    b = ms_run(net, h, 2 * FINE, "heun", 2)
    return a + (a - b) / 3.0


def ladder_step(net, h, ref, integrator):
    """Largest dt of the ladder within TOL of ``ref`` on the same noise path, with its error."""
    errs = {}
    for dt in LADDER:
        errs[dt] = rel_err(ms_run(net, h, dt, integrator, int(round(dt / FINE))), ref)
        if errs[dt] <= TOL:
            return dt, errs
    return None, errs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="contrast 0 only, no diffrax")
    ap.add_argument("--no-diffrax", action="store_true", help="both contrasts, no diffrax (minutes, not ~20)")
    ap.add_argument("--time-heun", nargs=3, metavar=("I", "DT", "REPEATS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time_heun:  # the child process of two_device_time
        _time_heun(int(args.time_heun[0]), float(args.time_heun[1]), int(args.time_heun[2]))
        return 0
    net, H, contrasts = published()
    idx = [0] if args.quick else [0, len(contrasts) - 1]
    print(f"published network: N = {net.N}, {N_TRIALS} trials x {T_MAX:g} ms (burn-in {BURN_IN:g} ms), float32, "
          f"target: pooled E mean and std within {TOL:.0%} of the dt -> 0 limit; devices {jax.devices()}")
    summary = []
    for i in idx:
        h = jnp.asarray(H[i], jnp.float32)
        print(f"\n== contrast {contrasts[i]:g}")
        ref = limit_of(net, h)
        print(f"  limit (Heun, dt 1/16 and 1/8 ms, Richardson): E mean {ref[0]:.4f} mV, E std {ref[1]:.4f} mV")
        rows = {}
        dt_new, errs = ladder_step(net, h, ref, "heun")
        print("  heun error by dt: " + ", ".join(f"{d:g}: {e:.2%}" for d, e in errs.items()))
        f_new = lambda: ms_run(net, h, dt_new, "heun")  # noqa: E731
        t_new = best_time(f_new, args.repeats)
        rows["heun (new default)"] = (dt_new, errs[dt_new], t_new)

        e1 = rel_err(ms_run(net, h, 0.25, "exp_euler", 4), ref)
        e2 = rel_err(ms_run(net, h, 0.125, "exp_euler", 2), ref)
        slope = e2 / 0.125  # first order: error ~ slope * dt
        dt_old = 0.125 / 2 ** int(np.ceil(np.log2(slope * 0.125 / TOL)))
        print(f"  exp_euler error: dt 0.25: {e1:.2%}, 0.125: {e2:.2%} (ratio {e1 / e2:.2f}: first order); "
              f"within 1% from dt = {dt_old:g} ms (extrapolated: {slope * dt_old:.2%})")
        t_old = best_time(lambda: ms_run(net, h, dt_old, "exp_euler"), 1)
        rows["exp_euler (old scheme)"] = (dt_old, slope * dt_old, t_old)

        f_np = lambda: numpy_heun(net, h, dt_new)  # noqa: E731
        t_np = best_time(f_np, args.repeats)  # as many repeats as momentssn's run
        c_new, c_np = CPU[id(f_new)], CPU[id(f_np)]
        print(f"  at dt = {dt_new:g} ms: momentssn {t_new:.3f} s wall / {c_new:.3f} s CPU (all threads), "
              f"numpy {t_np:.3f} s wall / {c_np:.3f} s CPU: CPU-time ratio {c_np / c_new:.2f}")
        rows["numpy loop of heun"] = (dt_new, float("nan"), t_np)
        f_1 = lambda: ms_run(net, h, dt_new, "heun", threads=1)  # noqa: E731
        t_1 = best_time(f_1, args.repeats)
        rows["heun, one thread"] = (dt_new, errs[dt_new], t_1)
        print(f"  the new default in one thread (threads=1): {t_1:.3f} s wall / {CPU[id(f_1)]:.3f} s CPU: "
              f"{t_np / t_1:.1f}x the numpy loop")
        t_2dev = two_device_time(i, dt_new, args.repeats)
        rows["heun, 2 host devices (opt-in)"] = (dt_new, errs[dt_new], t_2dev)
        print(f"  opt-in 2 host devices (XLA flag, trials sharded): {t_2dev:.3f} s: {t_np / t_2dev:.1f}x the numpy loop")

        if not (args.quick or args.no_diffrax):
            run_dx = make_diffrax(net, h)
            prev, dt_dx, err_dx = None, None, None
            for dt in (1.0, 0.5, 0.25):  # (dt = 2 ms: 4% off, measured; each ShARK run takes minutes)
                cur = run_dx(dt)
                if prev is not None:
                    est = rel_err(prev, cur) * 4 / 3  # error of the run at 2 dt (order 2)
                    print(f"  diffrax ShARK dt {2 * dt:g}: step-doubling error {est:.2%}")
                    if est <= TOL:
                        dt_dx, err_dx = 2 * dt, est
                        break
                prev = cur
            if dt_dx is not None:
                t_dx = best_time(lambda: run_dx(dt_dx), 1)
                rows["diffrax ShARK"] = (dt_dx, err_dx, t_dx)
            else:
                print("  diffrax ShARK: not within 1% down to dt = 0.5 ms")

        print("  method                      dt (ms)   error    time (s)")
        for name, (dt, err, t) in rows.items():
            print(f"  {name:26s} {dt:8.4g}  {err:7.2%}  {t:9.3f}")
        r_old = t_old / t_new
        r_np = t_np / t_new
        line = f"  speed-up of the new default: vs old scheme {r_old:.1f}x (target >= 5), vs numpy loop {r_np:.1f}x (>= 2)"
        if "diffrax ShARK" in rows:
            r_dx = rows["diffrax ShARK"][2] / t_new
            line += f", vs diffrax ShARK {r_dx:.1f}x (>= 5)"
        else:
            r_dx = float("nan")
        summary.append((contrasts[i], r_old, r_np, r_dx, t_np / t_1, c_np / c_new, t_np / t_2dev))
        print(line)
    print("\nratios (time of the other method / time of the new default, equal accuracy or equal step):")
    for c, r_old, r_np, r_dx, r_1, r_cpu, r_2 in summary:
        print(f"  contrast {c:g}: old scheme {r_old:.1f}x, diffrax {r_dx:.1f}x, numpy loop {r_np:.1f}x "
              f"(one thread: {r_1:.1f}x; CPU-time ratio {r_cpu:.1f}; 2 host devices: {r_2:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
