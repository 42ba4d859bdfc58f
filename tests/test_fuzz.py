"""Property-based fuzzing of the public API (hypothesis, seeded and bounded).

The rule (issue 14): a function that returns moments never returns NaN or inf.  Bad
arguments raise ``ValueError`` naming the argument; a network without a stable answer
raises ``UnstableNetworkError`` (or a sibling); otherwise every number returned is
finite.  Inputs mix ordinary values with edge values (NaN, inf, 0, negative, huge),
wrong shapes and singular noise.  Networks have N in {1, 2} and the time grids are
fixed, so that every function compiles once or twice for the whole file.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import momentssn as ms

FUZZ = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
EDGES = [0.0, -1.0, 1e-300, 1e300, -1e300, np.nan, np.inf, -np.inf]


def _value(lo, hi):
    """Mostly ordinary floats in [lo, hi], sometimes an edge value."""
    return st.one_of(st.floats(lo, hi), st.floats(lo, hi), st.sampled_from(EDGES))


def _obeys_rule(call, names, moments=lambda out: out):
    """Run ``call``: a clear error (a ValueError whose message starts with one of
    ``names``, or an UnstableNetworkError) or a result whose moments (``moments(out)``,
    a pytree: diagnostics such as "diverged at t = inf" are not moments) are finite.
    Returns the result, or the exception."""
    try:
        out = call()
    except ms.UnstableNetworkError as e:
        event(type(e).__name__)  # --hypothesis-show-statistics: how often each outcome
        assert str(e)
        return e
    except ValueError as e:
        event(f"ValueError: {str(e).split(' ')[0]}")
        assert str(e).split(" ")[0].split(".")[0].strip("(,") in names, f"unclear: {e}"
        return e
    event(type(out).__name__)
    for leaf in jax.tree_util.tree_leaves(moments(out)):
        leaf = np.asarray(leaf)
        assert np.all(np.isfinite(leaf)), f"non-finite result {leaf}"
    return out


NET_ARGS = ("W", "tau", "noise_cov", "tau_noise", "k", "n", "n_exc")


@st.composite
def network_args(draw, corrupt=True):
    """SSN constructor arguments: valid ones (zero, ordinary or huge weights, singular
    or full-rank noise), and if ``corrupt`` often one argument made bad (an edge
    value, an indefinite or asymmetric noise covariance, a wrong shape)."""
    N = draw(st.sampled_from([1, 2]))
    scale = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0, 1e6]))  # 1e6: huge weights
    L = np.array([[draw(st.floats(-1.0, 1.0)) for _ in range(N)] for _ in range(N)])
    noise = {"rank1": np.outer(L[0], L[0]), "zero": np.zeros((N, N)),
             "full": L @ L.T + 0.01 * np.eye(N)}[draw(st.sampled_from(["rank1", "zero", "full"]))]
    args = dict(
        W=scale * np.array([[draw(st.floats(-1.0, 1.0)) for _ in range(N)] for _ in range(N)]),
        tau=np.array([draw(st.floats(2.0, 30.0)) for _ in range(N)]), noise_cov=noise,
        tau_noise=draw(st.floats(1.0, 60.0)), k=0.3, n=draw(st.sampled_from([1.0, 2.0, 2.7])),
        n_exc=1 if N == 2 else None,  # N = 2: 1 E + 1 I, compiled as the other tests' networks
    )
    bad = draw(st.sampled_from([None, "W", "tau", "noise_cov", "tau_noise", "k", "n"])) if corrupt else None
    if bad is not None:
        edge = draw(st.sampled_from(EDGES + ["indefinite", "asymmetric", "shape"]))
        old = np.asarray(args[bad], dtype=float)
        if edge == "shape":
            args[bad] = np.ones(old.shape + (2,))
        elif edge == "indefinite":
            args[bad] = old - np.eye(N) if old.ndim == 2 else -old
        elif edge == "asymmetric":
            args[bad] = old + np.triu(np.ones((N, N)), 1) if old.ndim == 2 else old
        else:
            args[bad] = np.where(np.arange(old.size).reshape(old.shape) == 0, edge, old)
    return args


def _network(args):
    """An SSN, or None when the constructor refused the arguments clearly."""
    net = _obeys_rule(lambda: ms.SSN(**args), NET_ARGS)
    if isinstance(net, Exception):
        assert isinstance(net, ValueError)
        return None
    for name in ("W", "tau", "noise_cov", "tau_noise", "k", "n"):
        assert np.all(np.isfinite(np.asarray(getattr(net, name))))
    assert np.all(np.asarray(net.tau) > 0) and float(net.tau_noise) > 0 and float(net.n) >= 1
    return net


def _stimulus(draw, N):
    return np.array([draw(_value(-5.0, 20.0)) for _ in range(N)])


@settings(FUZZ, max_examples=80)  # no compilation: cheap
@given(network_args())
def test_ssn_constructor(args):
    net = _network(args)
    if net is not None:
        S = np.asarray(net.noise_cov)
        assert np.allclose(S, S.T) and np.linalg.eigvalsh(S).min() > -1e-9


@FUZZ
@given(network_args(corrupt=False), st.data())
def test_stationary_moments(args, data):
    net = _network(args)
    if net is None:
        return
    h = _stimulus(data.draw, net.N)
    out = _obeys_rule(lambda: ms.stationary_moments(net, jnp.asarray(h)), ("h",))
    if not np.all(np.isfinite(h)):
        assert isinstance(out, ValueError)
    elif isinstance(out, ms.Moments):  # a covariance: symmetric, non-negative variances
        cov = np.asarray(out.cov)
        assert np.allclose(cov, cov.T) and np.all(np.diag(cov) >= -1e-12 * np.abs(cov).max())


@FUZZ
@given(network_args(corrupt=False), st.data())
def test_propagate_moments(args, data):
    net = _network(args)
    if net is None:
        return
    h = _stimulus(data.draw, net.N)
    # one valid time grid (compiled once per N) or a bad value
    t_max, dt = data.draw(st.sampled_from([(20.0, 0.5), (20.0, 0.5), (20.0, 0.0), (np.nan, 0.5),
                                           (20.0, -0.5), (np.inf, 0.5), (0.1, 0.5)]))
    out = _obeys_rule(lambda: ms.propagate_moments(net, jnp.asarray(h), t_max, dt),
                      ("h", "dt", "t_max"), lambda tr: (tr.t, tr.mean, tr.cov, tr.cross_cov))
    if not np.all(np.isfinite(h)) or not (dt > 0 and np.isfinite(t_max) and t_max >= dt):
        assert isinstance(out, ValueError)
    if isinstance(out, ms.MomentsDivergedError):
        assert 0 < out.time_ms <= t_max and out.stimulus == 0
    elif isinstance(out, ms.MomentTrajectory):
        assert np.isinf(np.asarray(out.diverged_at))


@FUZZ
@given(network_args(corrupt=False), st.data())
def test_power_spectrum(args, data):
    net = _network(args)
    if net is None:
        return
    h = _stimulus(data.draw, net.N)
    valid = [np.linspace(0.0, 100.0, 5), np.linspace(-50.0, 50.0, 5), np.array([0.0, 1e300, 1.0, 2.0, 3.0])]
    freqs = data.draw(st.sampled_from(valid + valid + [
        np.array([0.0, np.nan, 1.0, 2.0, 3.0]), np.array([]), np.ones((5, 1)),
        np.array([0.0, np.inf, 2.0, 3.0, 4.0]),
    ]))
    out = _obeys_rule(lambda: ms.power_spectrum(net, jnp.asarray(h), jnp.asarray(freqs)),
                      ("h", "freqs"))
    if not np.all(np.isfinite(h)) or freqs.ndim != 1 or freqs.size == 0:
        assert isinstance(out, ValueError)
    elif not isinstance(out, Exception):
        assert out.shape == (freqs.size, net.N) and np.all(np.asarray(out) >= 0)


@FUZZ
@given(st.sampled_from([3, 9]).flatmap(lambda F: st.lists(st.floats(0.0, 10.0), min_size=F, max_size=F)),
       st.floats(-1.0, 5.0))  # two lengths: each compiles its own small kernels
def test_peak_frequency_matches_a_numpy_reference(values, fmin):
    f = np.arange(len(values), dtype=float)
    S = np.asarray(values)
    peak = ms.peak_frequency(f, S, fmin=fmin)
    # numpy reference: interior samples with S[i-1] < S[i] >= S[i+1] and f >= fmin
    i = 1 + np.flatnonzero((S[1:-1] > S[:-2]) & (S[1:-1] >= S[2:]) & (f[1:-1] >= fmin))
    assert bool(peak.has_peak) == (i.size > 0)
    if i.size:
        assert float(peak.power) == S[i].max() and S[int(peak.frequency)] == S[i].max()
        assert int(peak.frequency) in i
    else:
        assert float(peak.frequency) == 0.0


UNSTABLE = ms.SSN.two_population().replace(W=jnp.array([[50.0, -0.65], [1.2, -0.5]]))


@settings(FUZZ, max_examples=12)
@given(st.sampled_from(["stable", "unstable"]), st.data())
def test_simulate(which, data):
    net = ms.SSN.two_population() if which == "stable" else UNSTABLE
    h = np.array([data.draw(_value(1.0, 5.0)) for _ in range(2)])
    n_trials = data.draw(st.sampled_from([4] * 6 + [0, -1]))
    out = _obeys_rule(lambda: ms.simulate(net, jnp.asarray(h), 40.0, 0.5, n_trials, seed=0),
                      ("h", "n_trials"), lambda res: res.moments)
    if not np.all(np.isfinite(h)) or n_trials < 1:
        assert isinstance(out, ValueError)
    elif which == "unstable" and np.all((h >= 1.0) & (h <= 5.0)):  # W_EE = 50 runs away
        assert isinstance(out, ms.SimulationDivergedError)
    if isinstance(out, ms.SimulationResult):
        assert np.all(np.isfinite(np.asarray(out.moments.mean)))
