"""Parameterizations: an unconstrained vector theta  <->  an ``SSN`` and its input map.

Optimizers (L-BFGS, Adam) work on a flat unconstrained float vector ``theta``.  A
*parameterization* maps it to readable *physical* parameters (a dict of floats and
arrays, JSON in and out), to a network (``SSN``) and to the feedforward input of
that network for a task's raw input h~.  Three are provided, all on the same ring
of m E and m I cells (N = 2m, E cells first; cell i of either population prefers
the angle theta_i = 2 pi i / m):

=============  ==========================================================  ============
name           connectivity W / noise covariance Sigma_eta                 size (m=50)
=============  ==========================================================  ============
``Baseline15`` four von Mises kernels (amplitude, width), a 4-number noise  15
               model (E/I variances, spatial width, E-I correlation)
``Ring``       four symmetric circulant blocks of W (first half-rows),     211
               noise mixing matrix L of four symmetric circulant blocks,
               Sigma_eta = L L^T
``General``    full W (N^2 magnitudes, Dale signs), full mixing L (N^2)    20003
=============  ==========================================================  ============

Every parameterization ends with the same 3-number input map (mV)

    h_i = in_a [h~_i + in_b]_+^in_p ,                                      (input)

and the same fixed constants (dataclass fields): tau_E = 20 ms, tau_I = 10 ms,
tau_eta = 20 ms, k = 0.3 Hz/mV^n, n = 2.

Constraints are built into the unconstrained map, field by field:

* ``positive`` (amplitudes, widths, variances, in_a, in_p, |W| entries):
  x = exp(t), t = log x  (a log-parameterization: steps are relative);
* ``correlation`` (rho): x = tanh(t), t = artanh x, so x in (-1, 1);
* ``real`` (in_b, noise-mixing entries): x = t.

All maps are pure and traceable in ``theta`` (``jit``/``grad``/``vmap``); the
slicing of ``theta`` is static.  Only the conversions from/to Python objects
(``to_theta``, JSON, ``default_params``) require concrete values.

The default initialization (``Baseline15.default_params``) is a stable network in
the operating range of the published Echeveste et al. (2020) task; ``Ring`` and
``General`` start from the very same network (same W and Sigma_eta), so a fit in the
richer parameterizations starts where the 15-parameter fit starts.  See
``Baseline15`` for the numbers and what they give on the published task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import ClassVar, Dict, NamedTuple, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..model import SSN

__all__ = [
    "Parameterization",
    "Baseline15",
    "Ring",
    "General",
    "get_parameterization",
    "register_parameterization",
    "parameterization_from_json",
    "BASELINE15_DEFAULTS",
    "echeveste_start",
    "echeveste_theta",
    "PARAMETERIZATIONS",
    "rectified_power",
    "input_nonlinearity",
    "von_mises_kernel",
    "symmetric_circulant",
    "circulant_half_row",
    "psd_sqrt",
]

JSON_FORMAT = 1

# --------------------------------------------------------------------------- default values

#: Default physical parameters of :class:`Baseline15` (the default initialization of every
#: parameterization).  Units: a_* mV/Hz (per presynaptic cell), d_* and ell_eta
#: dimensionless (kernel widths on the ring, exp((cos dtheta - 1) / d^2)), var_* mV^2,
#: rho dimensionless, in_a mV (per unit h~^in_p), in_b in units of h~, in_p dimensionless.
#: See the ``Baseline15`` docstring for what they give on the published task.
BASELINE15_DEFAULTS: Dict[str, float] = {
    "a_ee": 0.045,
    "d_ee": 0.5,
    "a_ei": 0.035,
    "d_ei": 0.6,
    "a_ie": 0.06,
    "d_ie": 0.6,
    "a_ii": 0.03,
    "d_ii": 0.6,
    "var_e": 3.0,
    "var_i": 1.5,
    "ell_eta": 0.6,
    "rho": 0.0,
    "in_a": 2.0,
    "in_b": 2.0,
    "in_p": 1.0,
}


def echeveste_start(h_raw) -> Dict[str, float]:
    """The start of the published fit: Baseline15 physical parameters (dict).

    The "sensible predetermined initial state vector" of Echeveste et al.'s (2020)
    optimizer: every block a_XY = 0.02 mV/Hz with width d_XY = 0.8; noise variances
    4 mV^2 (std 2 mV) for E and I with ell_eta = 0.8 and rho = 0.8; a linear input
    (in_a = 1 mV, in_p = 1) whose baseline in_b = 1.1 - min(h~, 0) keeps
    h~ + in_b >= 1.1 for every stimulus.  It is a weak, nearly linear network, not a
    solution: on the published task its stationary loss is 0.106.  ``momentssn
    fit-baseline`` starts here.

    Args:
        h_raw: (S, N) raw inputs h~ of the task (only their minimum is used).
    """
    low = min(0.0, float(np.min(np.asarray(h_raw))))
    blocks = {f"{x}_{yz}": v for yz in ("ee", "ei", "ie", "ii") for x, v in (("a", 0.02), ("d", 0.8))}
    return dict(blocks, var_e=4.0, var_i=4.0, ell_eta=0.8, rho=0.8, in_a=1.0, in_b=1.1 - low, in_p=1.0)


# --------------------------------------------------------------------------- small pure functions


def rectified_power(x: jax.Array, p: jax.Array) -> jax.Array:
    """[x]_+^p elementwise, with gradients 0 (not NaN) where x <= 0 (double-where).

    For x > 0 this is x**p (d/dx = p x^(p-1), d/dp = x^p log x); for x <= 0 it is 0
    with zero derivatives in x and p.
    """
    pos = x > 0
    safe = jnp.where(pos, x, 1.0)
    return jnp.where(pos, safe**p, 0.0)


def input_nonlinearity(h_raw: jax.Array, in_a, in_b, in_p) -> jax.Array:
    """h = in_a [h~ + in_b]_+^in_p (mV), elementwise; h_raw (..., N) -> (..., N)."""
    return in_a * rectified_power(h_raw + in_b, in_p)


def _ring_distance_index(m: int) -> np.ndarray:
    """(m, m) int array min(d, m - d) with d = (j - i) mod m: the ring distance in sites."""
    i = np.arange(m)
    d = (i[None, :] - i[:, None]) % m
    return np.minimum(d, m - d)


def von_mises_kernel(m: int, width) -> jax.Array:
    """K_ij = exp((cos(theta_i - theta_j) - 1) / width^2), theta_i = 2 pi i / m; (m, m).

    Computed from the ring distance min(d, m - d) so that K is exactly symmetric
    and circulant in floating point.  ``width`` (dimensionless, > 0) may be traced.
    """
    dist = _ring_distance_index(m)
    cos = jnp.asarray(np.cos(2.0 * np.pi * dist / m))
    return jnp.exp((cos - 1.0) / width**2)


def symmetric_circulant(half_row: jax.Array, m: int) -> jax.Array:
    """(m, m) symmetric circulant C_ij = c[min(d, m - d)], d = (j - i) mod m.

    half_row: (m // 2 + 1,) the first half-row c_0 .. c_{m//2} (the rest of row 0 is
    its mirror image).  Traceable in ``half_row``.
    """
    return half_row[_ring_distance_index(m)]


def circulant_half_row(block) -> np.ndarray:
    """Project a (m, m) matrix on symmetric circulant matrices; returns its half-row.

    c_k = mean over all (i, j) at ring distance k of block[i, j] (exact, up to rounding,
    for a matrix that is already symmetric circulant).  numpy, not traceable.
    """
    block = np.asarray(block, dtype=np.float64)
    m = block.shape[0]
    dist = _ring_distance_index(m)
    return np.array([block[dist == k].mean() for k in range(m // 2 + 1)])


def psd_sqrt(C) -> np.ndarray:
    """Symmetric PSD square root L = V diag(sqrt(max(lambda, 0))) V^T of a symmetric C.

    L L^T = L^2 = C.  Being a function of C, L inherits its symmetries: for a C whose
    four m x m blocks are symmetric circulant, so are L's.  numpy, not traceable.
    """
    C = np.asarray(C, dtype=np.float64)
    lam, V = np.linalg.eigh(0.5 * (C + C.T))
    L = (V * np.sqrt(np.maximum(lam, 0.0))) @ V.T
    return 0.5 * (L + L.T)


# --------------------------------------------------------------------------- constrained fields


class Field(NamedTuple):
    """One physical parameter: its name, shape, constraint and unit.

    constraint: ``"positive"`` (x = exp t), ``"correlation"`` (x = tanh t, in (-1, 1))
    or ``"real"`` (x = t).
    """

    name: str
    shape: Tuple[int, ...]
    constraint: str
    unit: str = ""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _to_physical(t: jax.Array, constraint: str) -> jax.Array:
    if constraint == "positive":
        return jnp.exp(t)
    if constraint == "correlation":
        return jnp.tanh(t)
    if constraint == "real":
        return t
    raise ValueError(f"unknown constraint {constraint!r}")


def _to_unconstrained(name: str, x: np.ndarray, constraint: str) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise ValueError(f"parameter {name!r} contains NaN or inf")
    if constraint == "positive":
        if np.any(x <= 0):
            raise ValueError(f"parameter {name!r} must be > 0, got min {float(np.min(x))}")
        return np.log(x)
    if constraint == "correlation":
        if np.any(np.abs(x) >= 1):
            raise ValueError(f"parameter {name!r} must lie in (-1, 1), got {x.tolist()}")
        return np.arctanh(x)
    if constraint == "real":
        return x
    raise ValueError(f"unknown constraint {constraint!r}")


_INPUT_FIELDS = (
    Field("in_a", (), "positive", "mV"),
    Field("in_b", (), "real", "units of h~"),
    Field("in_p", (), "positive", ""),
)


# --------------------------------------------------------------------------- the interface


@dataclasses.dataclass(frozen=True)
class Parameterization:
    """Common interface (abstract): theta (size,) <-> physical params <-> SSN and inputs.

    Fields (fixed constants, not optimized):
        m: sites per population (N = 2m cells, E first).
        tau_e, tau_i: membrane time constants (ms).
        tau_noise: correlation time of the input noise (ms).
        k: gain (Hz / mV^n) and n: exponent of the power law r = k [u]_+^n.

    Subclasses define ``kind`` (the name used by :func:`get_parameterization` and
    JSON), ``fields`` and ``default_params``, ``connectivity`` and ``noise_covariance``.
    """

    m: int = 50
    tau_e: float = 20.0
    tau_i: float = 10.0
    tau_noise: float = 20.0
    k: float = 0.3
    n: float = 2.0

    kind: ClassVar[str] = ""

    def __post_init__(self):
        if int(self.m) != self.m or self.m < 1:
            raise ValueError(f"m must be a positive integer, got {self.m!r}")
        object.__setattr__(self, "m", int(self.m))
        for name in ("tau_e", "tau_i", "tau_noise", "k", "n"):
            val = float(getattr(self, name))
            if not (math.isfinite(val) and val > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {val!r}")
            object.__setattr__(self, name, val)

    # ---- layout ---------------------------------------------------------
    @property
    def N(self) -> int:
        """Number of cells, 2m."""
        return 2 * self.m

    @property
    def fields(self) -> Tuple[Field, ...]:
        """The physical parameters, in theta order."""
        raise NotImplementedError

    @property
    def names(self) -> Tuple[str, ...]:
        """Physical parameter names, in theta order."""
        return tuple(f.name for f in self.fields)

    @property
    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        return {f.name: f.shape for f in self.fields}

    @property
    def size(self) -> int:
        """Number of unconstrained parameters (length of theta)."""
        return sum(f.size for f in self.fields)

    def _slices(self):
        out, start = {}, 0
        for f in self.fields:
            out[f.name] = (start, start + f.size, f)
            start += f.size
        return out

    def constants(self) -> Dict[str, float]:
        """The fixed constants (m, tau_e, tau_i, tau_noise, k, n) as a dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # ---- theta <-> physical --------------------------------------------
    def _check_theta(self, theta) -> jax.Array:
        theta = jnp.asarray(theta)
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            theta = theta.astype(jnp.result_type(float))
        if theta.shape != (self.size,):
            raise ValueError(f"{type(self).__name__}: theta must have shape ({self.size},), got {theta.shape}")
        return theta

    def field(self, theta, name: str) -> jax.Array:
        """One physical parameter from theta (traceable)."""
        theta = self._check_theta(theta)
        a, b, f = self._slices()[name]
        return _to_physical(theta[a:b].reshape(f.shape), f.constraint)

    def from_theta(self, theta) -> Dict[str, jax.Array]:
        """theta (size,) -> {name: physical value (jnp array of the field's shape)}. Traceable."""
        theta = self._check_theta(theta)
        return {
            name: _to_physical(theta[a:b].reshape(f.shape), f.constraint)
            for name, (a, b, f) in self._slices().items()
        }

    def to_theta(self, params) -> jax.Array:
        """Physical params (dict of floats / nested lists / arrays) -> theta (size,).

        Needs concrete values; every name in ``names`` must be present, with its shape.
        Raises ``ValueError`` on missing/unknown names, wrong shapes or values outside
        the constraints (e.g. a width <= 0 or |rho| >= 1).
        """
        params = dict(params)
        missing = [n for n in self.names if n not in params]
        unknown = [n for n in params if n not in self.names]
        if missing or unknown:
            raise ValueError(
                f"{type(self).__name__}: missing parameters {missing}, unknown parameters {unknown}"
            )
        parts = []
        for f in self.fields:
            x = np.asarray(params[f.name], dtype=np.float64)
            if x.shape != f.shape:
                raise ValueError(f"parameter {f.name!r} must have shape {f.shape}, got {x.shape}")
            parts.append(_to_unconstrained(f.name, x, f.constraint).ravel())
        return jnp.asarray(np.concatenate(parts), dtype=jnp.result_type(float))

    def default_params(self) -> Dict[str, object]:
        """The default initialization as physical params (floats / numpy arrays)."""
        raise NotImplementedError

    def default_theta(self) -> jax.Array:
        """``to_theta(default_params())``."""
        return self.to_theta(self.default_params())

    def random_theta(self, key_or_seed=0, scale: float = 0.1, theta=None) -> jax.Array:
        """A random restart: theta + scale * N(0, I), theta = the default unless given.

        With the log/artanh maps, ``scale`` is roughly the relative size of the
        perturbation of every positive parameter (0.1: about +-10 %).
        ``key_or_seed``: an int seed or a ``jax.random`` key.
        """
        key = jax.random.PRNGKey(key_or_seed) if isinstance(key_or_seed, (int, np.integer)) else key_or_seed
        base = self.default_theta() if theta is None else self._check_theta(theta)
        return base + scale * jax.random.normal(key, base.shape, dtype=base.dtype)

    # ---- the network and its input --------------------------------------
    def connectivity(self, params) -> jax.Array:
        """W (N, N) in mV/Hz from physical params (traceable)."""
        raise NotImplementedError

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta (N, N) in mV^2 from physical params (traceable)."""
        raise NotImplementedError

    def tau(self) -> jax.Array:
        """(N,) membrane time constants (ms): tau_e for E cells then tau_i for I cells."""
        return jnp.concatenate(
            [jnp.full((self.m,), self.tau_e), jnp.full((self.m,), self.tau_i)]
        ).astype(jnp.result_type(float))

    def network_from_params(self, params) -> SSN:
        """The ``SSN`` (n_exc = m) for physical params (traceable)."""
        params = {k: jnp.asarray(v) for k, v in params.items()}
        W = self.connectivity(params)
        S = self.noise_covariance(params)
        S = 0.5 * (S + S.T)
        return SSN(W, self.tau(), S, self.tau_noise, self.k, self.n, n_exc=self.m)

    def network(self, theta) -> SSN:
        """theta -> ``SSN`` (traceable; validated by ``SSN`` when concrete)."""
        return self.network_from_params(self.from_theta(theta))

    def inputs(self, theta, h_raw) -> jax.Array:
        """Network input h = in_a [h~ + in_b]_+^in_p (mV); h_raw (..., N) -> (..., N). Traceable."""
        h_raw = jnp.asarray(h_raw)
        if h_raw.shape[-1:] != (self.N,):
            raise ValueError(f"h_raw must have shape (..., {self.N}), got {h_raw.shape}")
        return input_nonlinearity(
            h_raw, self.field(theta, "in_a"), self.field(theta, "in_b"), self.field(theta, "in_p")
        )

    # ---- JSON ------------------------------------------------------------
    def params_to_python(self, params) -> Dict[str, object]:
        """Physical params -> plain Python (floats and nested lists), e.g. for JSON."""
        out = {}
        for f in self.fields:
            x = np.asarray(params[f.name], dtype=np.float64)
            out[f.name] = float(x) if x.shape == () else x.tolist()
        return out

    def to_json(self, theta, indent=None) -> str:
        """theta -> a JSON document with the physical params (exact float round trip).

        Layout: ``{"format": 1, "parameterization": kind, "constants": {...},
        "names": [...], "params": {name: float or nested list}}``.
        """
        params = {k: np.asarray(v) for k, v in self.from_theta(np.asarray(theta, dtype=np.float64)).items()}
        doc = {
            "format": JSON_FORMAT,
            "parameterization": self.kind,
            "constants": self.constants(),
            "names": list(self.names),
            "params": self.params_to_python(params),
        }
        return json.dumps(doc, indent=indent)

    def from_json(self, text: str) -> jax.Array:
        """JSON (a document from ``to_json`` or a bare ``{name: value}`` dict) -> theta.

        Raises ``ValueError`` if the document names another parameterization or
        other constants (build the matching one with :func:`parameterization_from_json`).
        """
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        if "params" not in doc:
            return self.to_theta(doc)
        kind = doc.get("parameterization", self.kind)
        if kind != self.kind:
            raise ValueError(f"the JSON holds a {kind!r} parameterization, not {self.kind!r}")
        consts = doc.get("constants", {})
        mine = self.constants()
        diff = {k: (v, mine[k]) for k, v in consts.items() if k in mine and v != mine[k]}
        if diff:
            raise ValueError(f"the JSON was written with other constants (theirs, ours): {diff}")
        return self.to_theta(doc["params"])

    def save_json(self, theta, path: Union[str, os.PathLike]) -> str:
        """Write ``to_json(theta)`` (indented) to ``path``; returns the path."""
        path = os.fspath(path)
        with open(path, "w") as fh:
            fh.write(self.to_json(theta, indent=1))
            fh.write("\n")
        return path

    def load_json(self, path: Union[str, os.PathLike]) -> jax.Array:
        """``from_json`` of the file at ``path``."""
        with open(os.fspath(path)) as fh:
            return self.from_json(fh.read())


# --------------------------------------------------------------------------- Baseline15


@dataclasses.dataclass(frozen=True)
class Baseline15(Parameterization):
    """The 15-parameter ring SSN of Echeveste et al. (2020).

    Connectivity (mV/Hz), W[i, j] from cell j to cell i, theta_i = 2 pi i / m:

        W_ij = s_j a_XY exp((cos(theta_i - theta_j) - 1) / d_XY^2),  s_j = +1 (E), -1 (I)

    for the blocks XY = EE (W[E, E]), EI (I -> E: W[E, I]), IE (E -> I: W[I, E]), II.
    Noise covariance (mV^2), K_ij = exp((cos(theta_i - theta_j) - 1) / ell_eta^2):

        Sigma_eta = [[var_e K, rho sqrt(var_e var_i) K], [rho sqrt(var_e var_i) K, var_i K]]
                    + noise_jitter I            (noise_jitter = 0.01 mV^2, fixed)

    Input: h = in_a [h~ + in_b]_+^in_p (mV).  Parameters, in theta order:
    ``a_ee d_ee a_ei d_ei a_ie d_ie a_ii d_ii var_e var_i ell_eta rho in_a in_b in_p``.

    Defaults (``BASELINE15_DEFAULTS``): a_ee = 0.045, d_ee = 0.5, a_ei = 0.035,
    a_ie = 0.06, a_ii = 0.03, the other widths 0.6; var_e = 3, var_i = 1.5 mV^2,
    ell_eta = 0.6, rho = 0; in_a = 2 mV, in_b = 2, in_p = 1.  Summed over the ring
    (sum_j K_ij = 10.35 for d = 0.5, 12.70 for d = 0.6 at m = 50) they make a
    2-population SSN with W_EE = 0.47, W_EI = -0.44, W_IE = 0.76, W_II = -0.38 mV/Hz
    (the regime of the Hennequin et al. 2018 network, scaled by ~0.4).  On the
    published task inputs (h = 2 (h~ + 2) in 4..14.5 mV) the network is stable for all
    5 stimuli (largest Re eig of J -0.041 .. -0.039 /ms), with E means 2.95 mV
    (contrast 0) up to 3.0..5.9 mV (contrast 1, off/on the stimulus orientation) and
    E stds 1.53 .. 1.40 mV: in the range of the targets (means 3.1..7.5 mV, stds
    0.8..2.1 mV) but not fitted to them.  The stationary loss (``momentssn.losses``,
    default weights) at these defaults on the published targets is 0.0505
    (per stimulus 0.094, 0.074, 0.031, 0.019, 0.034).
    """

    noise_jitter: float = 0.01

    kind: ClassVar[str] = "baseline15"

    @property
    def fields(self) -> Tuple[Field, ...]:
        pos = "positive"
        return (
            Field("a_ee", (), pos, "mV/Hz"),
            Field("d_ee", (), pos, ""),
            Field("a_ei", (), pos, "mV/Hz"),
            Field("d_ei", (), pos, ""),
            Field("a_ie", (), pos, "mV/Hz"),
            Field("d_ie", (), pos, ""),
            Field("a_ii", (), pos, "mV/Hz"),
            Field("d_ii", (), pos, ""),
            Field("var_e", (), pos, "mV^2"),
            Field("var_i", (), pos, "mV^2"),
            Field("ell_eta", (), pos, ""),
            Field("rho", (), "correlation", ""),
        ) + _INPUT_FIELDS

    def default_params(self) -> Dict[str, float]:
        return dict(BASELINE15_DEFAULTS)

    def connectivity(self, params) -> jax.Array:
        """W = [[a_ee K(d_ee), -a_ei K(d_ei)], [a_ie K(d_ie), -a_ii K(d_ii)]] (N, N), mV/Hz."""
        m, p = self.m, params
        ker = lambda a, d: a * von_mises_kernel(m, d)  # noqa: E731
        top = jnp.concatenate([ker(p["a_ee"], p["d_ee"]), -ker(p["a_ei"], p["d_ei"])], axis=1)
        bot = jnp.concatenate([ker(p["a_ie"], p["d_ie"]), -ker(p["a_ii"], p["d_ii"])], axis=1)
        return jnp.concatenate([top, bot], axis=0)

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta = [[ve, c], [c, vi]] (x) K(ell_eta) + jitter I, c = rho sqrt(ve vi); mV^2."""
        p = params
        K = von_mises_kernel(self.m, p["ell_eta"])
        c = p["rho"] * jnp.sqrt(p["var_e"] * p["var_i"])
        top = jnp.concatenate([p["var_e"] * K, c * K], axis=1)
        bot = jnp.concatenate([c * K, p["var_i"] * K], axis=1)
        return jnp.concatenate([top, bot], axis=0) + self.noise_jitter * jnp.eye(self.N)


def _baseline_for(param: Parameterization) -> Baseline15:
    consts = {f.name: getattr(param, f.name) for f in dataclasses.fields(Parameterization)}
    return Baseline15(**consts)


def _baseline_arrays(param: Parameterization, theta15):
    """(|W| (N, N), Sigma_eta (N, N), input params) of a Baseline15 theta, as numpy."""
    base = _baseline_for(param)
    p = {k: np.asarray(v) for k, v in base.from_theta(np.asarray(theta15, np.float64)).items()}
    W = np.asarray(base.connectivity({k: jnp.asarray(v) for k, v in p.items()}))
    S = np.asarray(base.noise_covariance({k: jnp.asarray(v) for k, v in p.items()}))
    inp = {f.name: float(p[f.name]) for f in _INPUT_FIELDS}
    return np.abs(W), S, inp


def echeveste_theta(param: Parameterization, h_raw) -> jax.Array:
    """theta of ``echeveste_start(h_raw)`` in ``param``: the Baseline15 theta, or for
    Ring / General the theta of the same network."""
    theta15 = _baseline_for(param).to_theta(echeveste_start(h_raw))
    return theta15 if isinstance(param, Baseline15) else param.theta_from_baseline(theta15)


# --------------------------------------------------------------------------- Ring



class _FromBaseline:
    """Ring and General start where Baseline15 starts: their default is Baseline15's network."""

    def theta_from_baseline(self, theta15) -> jax.Array:
        """The theta of this parameterization for the network of a ``Baseline15`` theta."""
        return self.to_theta(self.params_from_arrays(*_baseline_arrays(self, theta15)))

    def default_params(self) -> Dict[str, object]:
        base = _baseline_for(self)
        return self.params_from_arrays(*_baseline_arrays(self, base.default_theta()))


@dataclasses.dataclass(frozen=True)
class Ring(_FromBaseline, Parameterization):
    """Rotation- and reflection-invariant SSN: every m x m block symmetric circulant.

    Each block is set by its first half-row c_0 .. c_{m//2} (h = m//2 + 1 numbers,
    26 for m = 50): block[i, j] = c[min(d, m - d)], d = (j - i) mod m.

        W = [[w_ee, -w_ei], [w_ie, -w_ii]]   (blocks of magnitudes >= 0, Dale signs)
        L = [[mix_ee, mix_ei], [mix_ie, mix_ii]]   (any sign),  Sigma_eta = L L^T

    so Sigma_eta is PSD by construction.  Parameters: ``w_ee w_ei w_ie w_ii`` (h,)
    mV/Hz (magnitudes, log-parameterized), ``mix_ee mix_ei mix_ie mix_ii`` (h,) mV
    (free), then ``in_a in_b in_p``; 8 h + 3 = 211 numbers for m = 50.

    Default: Baseline15's default network (``theta_from_baseline``): its kernels are
    symmetric circulant, so W is reproduced exactly, and L = Sigma_eta^(1/2) (the
    symmetric square root, whose blocks are symmetric circulant too).
    """

    kind: ClassVar[str] = "ring"

    @property
    def half(self) -> int:
        """Length of a half-row, m // 2 + 1."""
        return self.m // 2 + 1

    @property
    def fields(self) -> Tuple[Field, ...]:
        h = (self.half,)
        w = tuple(Field(f"w_{b}", h, "positive", "mV/Hz") for b in ("ee", "ei", "ie", "ii"))
        mix = tuple(Field(f"mix_{b}", h, "real", "mV") for b in ("ee", "ei", "ie", "ii"))
        return w + mix + _INPUT_FIELDS

    def _blocks(self, p, prefix, signs):
        c = lambda b: symmetric_circulant(p[f"{prefix}_{b}"], self.m)  # noqa: E731
        se, si = signs
        top = jnp.concatenate([se * c("ee"), si * c("ei")], axis=1)
        bot = jnp.concatenate([se * c("ie"), si * c("ii")], axis=1)
        return jnp.concatenate([top, bot], axis=0)

    def connectivity(self, params) -> jax.Array:
        """W = [[C(w_ee), -C(w_ei)], [C(w_ie), -C(w_ii)]] (N, N), mV/Hz."""
        return self._blocks(params, "w", (1.0, -1.0))

    def mixing(self, params) -> jax.Array:
        """L = [[C(mix_ee), C(mix_ei)], [C(mix_ie), C(mix_ii)]] (N, N), mV."""
        return self._blocks(params, "mix", (1.0, 1.0))

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta = L L^T (N, N), mV^2."""
        L = self.mixing(params)
        return L @ L.T

    def params_from_arrays(self, W_abs, noise_cov, input_params) -> Dict[str, object]:
        """Physical params from |W| and Sigma_eta, projected on symmetric circulant blocks.

        |W| entries are floored at 1e-300 (log map); L = ``psd_sqrt(noise_cov)``.
        """
        m = self.m
        L = psd_sqrt(noise_cov)
        W_abs = np.maximum(np.asarray(W_abs, np.float64), 1e-300)
        out = {}
        for name, (r, c) in zip(("ee", "ei", "ie", "ii"), ((0, 0), (0, 1), (1, 0), (1, 1))):
            blk = (slice(r * m, (r + 1) * m), slice(c * m, (c + 1) * m))
            out[f"w_{name}"] = circulant_half_row(W_abs[blk])
            out[f"mix_{name}"] = circulant_half_row(L[blk])
        out.update(input_params)
        return out



# --------------------------------------------------------------------------- General


@dataclasses.dataclass(frozen=True)
class General(_FromBaseline, Parameterization):
    """Unstructured SSN: every weight and every noise-mixing entry free.

        W_ij = s_j w_abs_ij   (s_j = +1 for E, -1 for I: Dale's law; w_abs log-parameterized)
        Sigma_eta = L L^T     (L (N, N), any sign: PSD by construction)

    Parameters: ``w_abs`` (N, N) mV/Hz, ``mix`` (N, N) mV, ``in_a in_b in_p``;
    2 N^2 + 3 = 20003 numbers for m = 50.

    Default: Baseline15's default network (``theta_from_baseline``): w_abs = |W|
    (every entry > 0 for von Mises kernels), L = Sigma_eta^(1/2) (symmetric square root).
    """

    kind: ClassVar[str] = "general"

    @property
    def fields(self) -> Tuple[Field, ...]:
        N = self.N
        return (
            Field("w_abs", (N, N), "positive", "mV/Hz"),
            Field("mix", (N, N), "real", "mV"),
        ) + _INPUT_FIELDS

    def dale_signs(self) -> jax.Array:
        """(N,) presynaptic signs s_j: +1 for E columns, -1 for I columns."""
        return jnp.concatenate([jnp.ones(self.m), -jnp.ones(self.m)]).astype(jnp.result_type(float))

    def connectivity(self, params) -> jax.Array:
        """W = w_abs * s[None, :] (N, N), mV/Hz."""
        return params["w_abs"] * self.dale_signs()[None, :]

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta = L L^T (N, N), mV^2."""
        L = params["mix"]
        return L @ L.T

    def params_from_arrays(self, W_abs, noise_cov, input_params) -> Dict[str, object]:
        """Physical params from |W| (floored at 1e-300) and Sigma_eta (L = ``psd_sqrt``)."""
        out = {
            "w_abs": np.maximum(np.asarray(W_abs, np.float64), 1e-300),
            "mix": psd_sqrt(noise_cov),
        }
        out.update(input_params)
        return out



# --------------------------------------------------------------------------- registry

PARAMETERIZATIONS = {"baseline15": Baseline15, "ring": Ring, "general": General}


def register_parameterization(cls):
    """Make a ``Parameterization`` subclass known by its ``kind`` to
    :func:`get_parameterization` and :func:`parameterization_from_json` (a class
    decorator; ``momentssn.growth.Growing`` registers itself this way)."""
    if not (isinstance(cls, type) and issubclass(cls, Parameterization) and cls.kind):
        raise ValueError(f"cls must be a Parameterization subclass with a kind, got {cls!r}")
    key = cls.kind.lower()
    old = PARAMETERIZATIONS.get(key)
    if old is not None and old.__qualname__ != cls.__qualname__:  # (a reloaded module may re-register)
        raise ValueError(f"cls.kind {cls.kind!r} is already registered for {old.__qualname__}")
    PARAMETERIZATIONS[key] = cls
    return cls


def get_parameterization(name: str, m: int = 50, **constants) -> Parameterization:
    """A registered parameterization by name (case-insensitive): ``"baseline15"``,
    ``"ring"``, ``"general"``, ``"growing"`` (``momentssn.growth.Growing``), or one
    added with :func:`register_parameterization`.

    ``constants`` override the other fixed fields (tau_e, tau_i, tau_noise, k, n, and
    the class's own, e.g. n_e, n_i, d_noise of ``Growing``).
    """
    key = str(name).lower()
    if key not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {name!r}; choose one of {sorted(PARAMETERIZATIONS)}")
    return PARAMETERIZATIONS[key](m=m, **constants)


def parameterization_from_json(text: str):
    """A ``to_json`` document -> (the parameterization it was written with, theta)."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or "parameterization" not in doc:
        raise ValueError("not a momentssn parameter document (no 'parameterization' key)")
    param = get_parameterization(doc["parameterization"], **doc.get("constants", {}))
    return param, param.from_json(text)
