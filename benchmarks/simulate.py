"""Benchmark of momentssn.simulation.simulate against a plain numpy loop, diffrax's Euler SDE
solver and the bare batched matmuls, on the same problem, measured in one run.

Problem: N = 100 random E/I network (80 E, 20 I; mean-field weights of the
two-population network of Hennequin et al. 2018 with +-25% heterogeneity, correlated
input noise), 100 trials, 500 ms at dt = 0.2 ms (2500 steps), moments streamed after
100 ms of burn-in, float32.

    momentssn : simulate(...) (jit + lax.scan; counter-based noise; exact OU update)
    numpy     : the same scheme as a plain Python loop over time (numpy's PCG64 normals,
                BLAS matmuls), streaming the same sums
    diffrax   : diffrax.diffeqsolve with Euler on the SDE for (u, z), eta = L z, a
                diagonal ControlTerm driven by an UnsafeBrownianPath, vmapped over
                trials, u saved at every step and the moments computed afterwards
                (diffrax has no streaming reduction)
    bare      : a jitted lax.scan doing only the (trials x N) @ (N x N) matmul per step

Prints times (best of several repeats after a warm-up/compile run) and the ratios
speed-up vs numpy, speed-up vs diffrax (targets >= 5) and momentssn's throughput as a
fraction of the bare matmul scan's (target >= 0.5).  For context it also times the
*floor*: every matmul the scheme needs (W r per step; L xi and the covariance update in
bulk per chunk, as momentssn does them) with nothing else, and prints t_numpy / floor
and t_diffrax / floor, the largest speed-ups that any implementation of this scheme
could reach with XLA's matmuls on the machine (numpy's loop does the same three matmuls
per step, and on a small CPU single-threaded BLAS is about as fast per 100 x 100 matmul
as XLA).

numpy's BLAS is pinned to one thread (OPENBLAS/OMP/MKL_NUM_THREADS=1 unless already set):
on a shared 2-core machine its default threading made the loop ~10x slower, which would
flatter momentssn.

Run:  .venv/bin/python benchmarks/simulate.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported

import numpy as np

import jax
import jax.numpy as jnp

import momentssn as ms
from momentssn.simulation.simulate import simulate

N, NE = 100, 80
N_TRIALS = 100
T_MAX, DT, BURN_IN = 500.0, 0.2, 100.0
H_IN = 15.0


def make_network(seed=0):
    """Random E/I network whose mean field is the two-population network."""
    rng = np.random.default_rng(seed)
    J = np.array([[1.25, -0.65], [1.2, -0.5]])
    pop = np.r_[np.zeros(NE, int), np.ones(N - NE, int)]
    size = np.array([NE, N - NE])
    W = J[pop[:, None], pop[None, :]] / size[pop[None, :]]
    W = W * (1.0 + 0.25 * rng.uniform(-1, 1, (N, N)))
    tau = np.where(pop == 0, 20.0, 10.0)
    sd = np.sqrt(np.where(pop == 0, 0.056, 0.012))
    Sigma = np.outer(sd, sd) * (0.2 + 0.8 * np.eye(N))  # correlated input noise, PD
    return ms.SSN(W, tau, Sigma, 50.0, n_exc=NE)


def timed(fn, repeats):
    fn()  # warm-up (compilation)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


# ---------------------------------------------------------------------------
# contenders
# ---------------------------------------------------------------------------


def run_momentssn(net, h):
    res = simulate(net, h, T_MAX, DT, N_TRIALS, 0, burn_in=BURN_IN, progress=False)
    jax.block_until_ready(res)
    return res


def run_numpy(net, h, seed=0):
    """The same scheme as momentssn, as a plain numpy loop over time (float32)."""
    f = np.float32
    W = np.asarray(net.W, f)
    tau = np.asarray(net.tau, f)
    lam, V = np.linalg.eigh(np.asarray(net.noise_cov, np.float64))
    L = ((V * np.sqrt(np.clip(lam, 0, None))) @ V.T).astype(f)
    k, n = f(net.k), 2
    b = (-np.expm1(-DT / tau)).astype(f)
    rho = f(np.exp(-DT / float(net.tau_noise)))
    c = f(np.sqrt(-np.expm1(-2 * DT / float(net.tau_noise))))
    n_steps, n_burn = int(round(T_MAX / DT)), int(round(BURN_IN / DT))
    rng = np.random.default_rng(seed)
    u = np.zeros((N_TRIALS, N), f)
    eta = rng.standard_normal((N_TRIALS, N), dtype=f) @ L
    s1 = np.zeros(N, f)
    s2 = np.zeros((N, N), f)
    ref = None
    h = np.asarray(h, f)
    for s in range(n_steps):
        eta_n = rho * eta + c * (rng.standard_normal((N_TRIALS, N), dtype=f) @ L)
        r = k * np.maximum(u, 0) ** n
        u = u + b * (h + r @ W.T + 0.5 * (eta + eta_n) - u)
        eta = eta_n
        if s + 1 == n_burn:
            ref = u.mean(0)
        if s + 1 > n_burn:
            d = u - ref
            s1 += d.sum(0)
            s2 += d.T @ d
    m = s1 / ((n_steps - n_burn) * N_TRIALS)
    return ref + m, s2 / ((n_steps - n_burn) * N_TRIALS) - np.outer(m, m)


def make_diffrax(net, h):
    import diffrax
    import lineax as lx

    W = jnp.asarray(net.W, jnp.float32)
    tau = jnp.asarray(net.tau, jnp.float32)
    te = jnp.float32(net.tau_noise)
    k = jnp.float32(net.k)
    lam, V = np.linalg.eigh(np.asarray(net.noise_cov, np.float64))
    L = jnp.asarray((V * np.sqrt(np.clip(lam, 0, None))) @ V.T, jnp.float32)
    hh = jnp.asarray(h, jnp.float32)
    n_steps, n_burn = int(round(T_MAX / DT)), int(round(BURN_IN / DT))
    diag = jnp.concatenate([jnp.zeros(N), jnp.full(N, jnp.sqrt(2.0 / te))]).astype(jnp.float32)

    def drift(t, y, args):  # y = (u, z), eta = L z, z a unit OU process
        u, z = y[:N], y[N:]
        du = (-u + hh + W @ (k * jnp.maximum(u, 0) ** 2) + L @ z) / tau
        return jnp.concatenate([du, -z / te])

    def diffusion(t, y, args):
        return lx.DiagonalLinearOperator(diag)

    def one_trial(key):
        k0, k1 = jax.random.split(key)
        y0 = jnp.concatenate([jnp.zeros(N), jax.random.normal(k0, (N,))]).astype(jnp.float32)
        bm = diffrax.UnsafeBrownianPath(shape=(2 * N,), key=k1)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
        sol = diffrax.diffeqsolve(
            terms, diffrax.Euler(), 0.0, T_MAX, DT, y0,
            saveat=diffrax.SaveAt(steps=True, fn=lambda t, y, args: y[:N]),
            max_steps=n_steps, adjoint=diffrax.ForwardMode(),  # forward only (no gradients here)
        )
        return sol.ys  # (n_steps, N)

    @jax.jit
    def run(key):
        ys = jax.vmap(one_trial)(jax.random.split(key, N_TRIALS))  # (trials, steps, N)
        x = ys[:, n_burn:, :].reshape(-1, N)
        m = x.mean(0)
        d = x - m
        return m, d.T @ d / x.shape[0]

    return lambda: jax.block_until_ready(run(jax.random.key(0)))


def make_bare(net):
    # an orthogonal matrix keeps the iterate's norm: no overflow, no denormals
    Q = jnp.asarray(np.linalg.qr(np.random.default_rng(1).standard_normal((N, N)))[0], jnp.float32)
    n_steps = int(round(T_MAX / DT))
    x0 = jnp.asarray(np.random.default_rng(2).standard_normal((N_TRIALS, N)), jnp.float32)

    @jax.jit
    def run(x):
        return jax.lax.scan(lambda x, _: (x @ Q.T, None), x, None, length=n_steps)[0]

    return lambda: jax.block_until_ready(run(x0))


def make_floor(net):
    """The matmuls of the scheme and nothing else, each batched as momentssn batches it:
    the recurrent product (trials x N) @ (N x N) once per step in a scan, and per chunk
    of K steps the noise factor (K trials x N) @ (N x N) and the covariance
    (K trials x N)^T (K trials x N).  Same FLOPs as the simulation, no random numbers,
    no nonlinearity, no bookkeeping: a floor for any implementation of this scheme
    with XLA on this machine.  Each chunk's inputs depend on the loop state, so no
    matmul can be hoisted out of the loop."""
    from momentssn.simulation.simulate import _choose_chunk

    Q = jnp.asarray(np.linalg.qr(np.random.default_rng(1).standard_normal((N, N)))[0], jnp.float32)
    n_steps = int(round(T_MAX / DT))
    K = _choose_chunk(n_steps, 0, N_TRIALS * N, None)
    n_chunks = -(-n_steps // K)
    x0 = jnp.asarray(np.random.default_rng(2).standard_normal((N_TRIALS, N)), jnp.float32)
    Z = jnp.asarray(np.random.default_rng(3).standard_normal((K, N_TRIALS, N)), jnp.float32)

    @jax.jit
    def run(x):
        def chunk(c, _):
            x, S = c
            zeta = (Z + x[None]) @ Q  # noise factor, in bulk
            x, U = jax.lax.scan(lambda x, _: (x @ Q.T, x), x, None, length=K)  # recurrence
            D = (U + zeta).reshape(K * N_TRIALS, N)
            return (x, S + D.T @ D), None  # covariance, in bulk

        return jax.lax.scan(chunk, (x, jnp.zeros((N, N), jnp.float32)), None, length=n_chunks)[0]

    return lambda: jax.block_until_ready(run(x0))


# ---------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--numpy-repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="skip diffrax")
    args = ap.parse_args(argv)

    net = make_network()
    h = jnp.full(N, H_IN)
    print(f"problem: N={N} ({NE} E), {N_TRIALS} trials, {T_MAX:g} ms at dt={DT} ms "
          f"({int(round(T_MAX / DT))} steps), burn-in {BURN_IN:g} ms, float32, devices={jax.devices()}")

    res = run_momentssn(net, h)
    m_np, c_np = run_numpy(net, h)
    print(f"sanity: mean u_E  momentssn {float(res.moments.mean[:NE].mean()):.3f}  numpy {m_np[:NE].mean():.3f} mV; "
          f"std u_E  momentssn {float(res.moments.std[:NE].mean()):.3f}  numpy {np.sqrt(np.diag(c_np))[:NE].mean():.3f} mV; "
          f"diverged {int(res.n_diverged)}")

    t_ms, t_ms_med = timed(lambda: run_momentssn(net, h), args.repeats)
    t_bare, t_bare_med = timed(make_bare(net), args.repeats)
    t_floor, t_floor_med = timed(make_floor(net), args.repeats)
    t_np, t_np_med = timed(lambda: run_numpy(net, h), args.numpy_repeats)
    rows = [("momentssn.simulation.simulate", t_ms, t_ms_med), ("bare matmul scan", t_bare, t_bare_med),
            ("floor: scheme's matmuls", t_floor, t_floor_med), ("numpy loop", t_np, t_np_med)]
    t_dx = None
    if not args.quick:
        t_dx, t_dx_med = timed(make_diffrax(net, h), max(2, args.repeats // 2))
        rows.append(("diffrax Euler", t_dx, t_dx_med))
    print("\ntimes (best / median of repeats, after compile):")
    for name, tb, tm in rows:
        print(f"  {name:24s} {tb * 1e3:9.1f} ms  / {tm * 1e3:9.1f} ms")

    print("\nratios (best times):")
    ok = True
    s_np = t_np / t_ms
    print(f"  speed-up vs numpy loop     : {s_np:6.2f}x   (target >= 5)    {'met' if s_np >= 5 else 'NOT met'}")
    ok &= s_np >= 5
    if t_dx is not None:
        s_dx = t_dx / t_ms
        print(f"  speed-up vs diffrax Euler  : {s_dx:6.2f}x   (target >= 5)    {'met' if s_dx >= 5 else 'NOT met'}")
        ok &= s_dx >= 5
    frac = t_bare / t_ms
    print(f"  throughput / bare matmuls  : {frac:6.2f}    (target >= 0.5)  {'met' if frac >= 0.5 else 'NOT met'}")
    ok &= frac >= 0.5
    print(f"  (context) throughput / all the scheme's matmuls (floor): {t_floor / t_ms:6.2f}")
    bound = f"numpy {t_np / t_floor:.2f}x" + (f", diffrax {t_dx / t_floor:.2f}x" if t_dx is not None else "")
    print(f"  (context) largest speed-up any implementation of this scheme could reach with XLA's matmuls: {bound}")
    print("all targets met" if ok else "some targets NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
