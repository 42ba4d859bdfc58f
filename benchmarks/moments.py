"""Time of the stationary closure: value, and value + gradient, for N = 50, 100, 200.

Prints times measured after compilation (best of several repeats) and, for each N,
the ratio of value+gradient to value alone, side by side in one run, for a cold solve
(the solver's default start) and a warm one (``info.warm_start`` of the solve at
nearby parameters, as in a fit).  The issue's
target: value and gradient for N = 100 in under 20 ms on the 2-core CPU.

For context it also times, in the same run, a *floor* for a cold value and gradient
by Newton with implicit differentiation: only the Lyapunov solves such a scheme cannot
avoid, with the Jacobian's expensive block K = d diag(S) / d gamma for free:

    default start (mean-only Newton)
    + one residual (a Lyapunov solve) per Newton iterate, as many as the cold solve took
    + the eigenvalues of J at the root (the stability check)
    + two adjoint Lyapunov solves (the implicit gradient)

Each solve runs at its own point and waits for the previous one (no overlap).  The
cold solve's iterate count is that of an exact Newton method here (checked: computing
K afresh at every iterate gives the same count), so a cold value+gradient below the
floor would need fewer iterates than exact Newton or faster Lyapunov solves.

    python benchmarks/moments.py [--sizes 50 100 200] [--repeats 5]
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # a script: the closure runs in float64

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

import momentssn as ms  # noqa: E402
from momentssn.closure import equations as closure  # noqa: E402
from momentssn.closure.lyapunov import solve_lyapunov  # noqa: E402
from momentssn.closure.stationary import _initial_guess, _residual  # noqa: E402
from momentssn.networks import random_ei_network  # noqa: E402


def best_time(f, *args, repeats=5):
    jax.block_until_ready(f(*args))  # compile + warm up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return min(ts)


def make_floor(net, h, m, n_evals):
    """A jitted floor (see the module docstring) for ``n_evals`` Newton iterates;
    m: the stationary moments at (net, h)."""
    N = net.N
    z_root = jnp.concatenate([m.mean, jnp.diagonal(m.cov)])

    @jax.jit
    def floor(net, h, z_root):
        z0 = _initial_guess(net, h)
        z = z_root + 1e-3 * jnp.tanh(z0)  # near the root, and depends on the start

        def newton_iterate(z, _):  # the residual at z (one Lyapunov solve); the next point
            r, _ = _residual(net, h, z)
            return z - 1e-6 * r, None

        z, _ = jax.lax.scan(newton_iterate, z, None, length=n_evals)
        J = closure.jacobian_at(net, z[:N], z[N:])
        lam = jnp.linalg.eigvals(J)  # stability
        Y1 = solve_lyapunov(J.T, jnp.diag(z[N:]) + jnp.max(jnp.real(lam)))  # adjoint 1
        Y2 = solve_lyapunov(J.T, Y1)  # adjoint 2 (after the first)
        return jnp.sum(Y2)

    return lambda: floor(net, h, z_root)


def primitive_floor(net, h, m, n_evals, repeats):
    """The floor summed from the faster of ours and native LAPACK for each primitive;
    m: the stationary moments at (net, h).

    Returns (floor, rows) with rows (name, ours, native) in seconds.
    """
    J = closure.jacobian_at(net, m.mean, jnp.diagonal(m.cov))
    Q = -(J @ m.cov + m.cov @ J.T)  # the Lyapunov right-hand side at the root
    Jn, Qn = np.asarray(J), np.asarray(Q)
    rows = [
        ("Lyapunov solve", best_time(jax.jit(solve_lyapunov), J, Q, repeats=repeats),
         best_time(scipy.linalg.solve_continuous_lyapunov, Jn, -Qn, repeats=repeats)),
        ("eigenvalues", best_time(jax.jit(jnp.linalg.eigvals), J, repeats=repeats),
         best_time(np.linalg.eigvals, Jn, repeats=repeats)),
    ]
    t_start = best_time(jax.jit(_initial_guess), net, h, repeats=repeats)
    t_lyap, t_eig = (min(r[1], r[2]) for r in rows)
    return t_start + (n_evals + 2) * t_lyap + t_eig, rows


def _warm_start_near(net, h):
    """info.warm_start of a differentiated solve at W / 1.01 (K exact at its root)."""

    def loss(W):
        m, info = ms.stationary_solve(net.replace(W=W), h)
        return jnp.sum(m.cov), info

    (_, info), _ = jax.value_and_grad(loss, has_aux=True)(net.W / 1.01)
    return info.warm_start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, float64")
    print("cold: from the solver's default start; warm: from info.warm_start of the solve at")
    print("W / 1.01 (a fit's next evaluation: nearby parameters, their moments and Newton K)")
    print(f"{'N':>5} {'start':>6} {'value (ms)':>11} {'value+grad (ms)':>16} {'ratio':>6} {'Newton it':>9}")
    value = jax.jit(lambda net, h, init: ms.stationary_solve(net, h, init)[0])

    def loss(net, h, init):
        m = ms.stationary_solve(net, h, init)[0]
        return jnp.sum(m.mean) + jnp.sum(m.cov)

    vg = jax.jit(jax.value_and_grad(loss))
    for N in args.sizes:
        net = random_ei_network(N, seed=0)
        h = jnp.asarray(np.random.default_rng(1).uniform(1.0, 4.0, N))
        warm = _warm_start_near(net, h)
        times = {}
        for name, init in (("cold", None), ("warm", warm)):
            tv = best_time(value, net, h, init, repeats=args.repeats)
            tg = best_time(vg, net, h, init, repeats=args.repeats)
            it = int(ms.stationary_solve(net, h, init)[1].iterations)
            print(f"{N:>5} {name:>6} {tv * 1e3:>11.2f} {tg * 1e3:>16.2f} {tg / tv:>6.2f} {it:>9}", flush=True)
            times[name] = tg
            if name == "cold":
                n_cold = it
        m = ms.stationary_moments(net, h)
        t_floor = best_time(make_floor(net, h, m, n_cold), repeats=args.repeats)
        print(f"{N:>5} {'floor':>6} {'':>11} {t_floor * 1e3:>16.2f}   (cold value+grad / floor: "
              f"{times['cold'] / t_floor:.2f}; {n_cold} Newton iterates, K for free)", flush=True)
        t_best, rows = primitive_floor(net, h, m, n_cold, args.repeats)
        for name, ours, native in rows:
            print(f"{'':>5} {name:>16}: ours {ours * 1e3:.2f} ms, native LAPACK {native * 1e3:.2f} ms "
                  f"(native / ours {native / ours:.2f})")
        print(f"{N:>5} {'floor*':>6} {'':>11} {t_best * 1e3:>16.2f}   (the floor from the faster "
              f"primitive of each pair, summed: a lower estimate)", flush=True)
        if N == 100:
            for name, tg in times.items():
                met = "met" if tg < 0.020 else "NOT met"
                print(f"      target (value+grad < 20 ms at N = 100), {name}: {met}")
            print(f"      floor of a cold Newton + implicit-gradient value+grad: {t_floor * 1e3:.1f} ms "
                  f"({'below' if t_floor < 0.020 else 'NOT below'} 20 ms); from the fastest "
                  f"primitives: {t_best * 1e3:.1f} ms ({'below' if t_best < 0.020 else 'NOT below'} 20 ms)")

if __name__ == "__main__":
    main()
