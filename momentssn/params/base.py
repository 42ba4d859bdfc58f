"""Parameterizations: an unconstrained vector theta  <->  an ``SSN`` and its input map.

Optimizers (L-BFGS, Adam) work on a flat unconstrained float vector ``theta``.  A
*parameterization* maps it to readable *physical* parameters (a dict of floats and
arrays, JSON in and out), to a network (``SSN``) and to the feedforward input of
that network for a task's raw input h~.  This module holds what every
parameterization shares: the constrained :class:`Field`, the :class:`Parameterization`
interface, the input map, JSON and the registry of kinds.  The ring SSNs
(``Baseline15``, ``Ring``, ``General``) are in ``momentssn.params.ring``, the
size-varying ``Growing`` of ``momentssn.growth`` in ``momentssn.params.growing``.

Every parameterization ends with the same 3-number input map (mV)

    h_i = in_a [x_i + in_b]_+^in_p ,   x = ``raw_drive(theta, h~)`` (= h~ unless a  (input)
                                        subclass mixes the raw inputs)

and the same fixed constants (dataclass fields): tau_E = 20 ms, tau_I = 10 ms,
tau_eta = 20 ms, k = 0.3 Hz/mV^n, n = 2.  Cells are E first (``n_exc`` of them), then
I (``n_inh``); Dale's law is built into ``connectivity``.

Constraints are built into the unconstrained map, field by field:

* ``positive`` (amplitudes, widths, variances, in_a, in_p, |W| entries):
  x = exp(t), t = log x  (a log-parameterization: steps are relative);
* ``correlation`` (rho): x = tanh(t), t = artanh x, so x in (-1, 1);
* ``real`` (in_b, noise-mixing entries): x = t.

All maps are pure and traceable in ``theta`` (``jit``/``grad``/``vmap``); the
slicing of ``theta`` is static.  Only the conversions from/to Python objects
(``to_theta``, JSON, ``default_params``) require concrete values.
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

from .._util import atomic_write_text
from ..model import SSN

__all__ = [
    "Field",
    "INPUT_FIELDS",
    "Parameterization",
    "DaleMixing",
    "get_parameterization",
    "register_parameterization",
    "parameterization_from_json",
    "PARAMETERIZATIONS",
    "rectified_power",
    "input_nonlinearity",
]

JSON_FORMAT = 1


# --------------------------------------------------------------------------- the input map


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


#: The input map's three fields, the last three of every parameterization.
INPUT_FIELDS: Tuple[Field, ...] = (
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
    Hooks with defaults a subclass may override: ``n_exc`` / ``n_inh`` (population
    sizes, m each) and ``raw_drive`` (what the input map rectifies, h~ itself).
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
    def n_exc(self) -> int:
        """Number of E cells (the first ones): m."""
        return self.m

    @property
    def n_inh(self) -> int:
        """Number of I cells (after the E cells): m."""
        return self.m

    @property
    def N(self) -> int:
        """Number of cells, n_exc + n_inh."""
        return self.n_exc + self.n_inh

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

    def slices(self) -> Dict[str, Tuple[int, int, Field]]:
        """{name: (start, stop, field)}: where each field lies in theta (static)."""
        out, start = {}, 0
        for f in self.fields:
            out[f.name] = (start, start + f.size, f)
            start += f.size
        return out

    def constants(self) -> Dict[str, float]:
        """The fixed constants (m, tau_e, tau_i, tau_noise, k, n, and a subclass's own) as a dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # ---- theta <-> physical --------------------------------------------
    def _check_theta(self, theta) -> jax.Array:
        theta = jnp.asarray(theta)
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            theta = theta.astype(jnp.result_type(float))
        if theta.shape != (self.size,):
            raise ValueError(f"{type(self).__name__}: theta must have shape ({self.size},), got {theta.shape}")
        return theta

    def theta_parts(self, theta) -> Dict[str, jax.Array]:
        """theta (size,) -> {name: unconstrained values t, of the field's shape}. Traceable."""
        theta = self._check_theta(theta)
        return {name: theta[a:b].reshape(f.shape) for name, (a, b, f) in self.slices().items()}

    def theta_from_parts(self, parts) -> jax.Array:
        """The inverse of :meth:`theta_parts`: {name: t of the field's shape} -> theta. Traceable."""
        for f in self.fields:
            if jnp.shape(parts[f.name]) != f.shape:
                raise ValueError(f"part {f.name!r} must have shape {f.shape}, got {jnp.shape(parts[f.name])}")
        return jnp.concatenate([jnp.ravel(jnp.asarray(parts[f.name])) for f in self.fields])

    def field(self, theta, name: str) -> jax.Array:
        """One physical parameter from theta (traceable)."""
        theta = self._check_theta(theta)
        a, b, f = self.slices()[name]
        return _to_physical(theta[a:b].reshape(f.shape), f.constraint)

    def from_theta(self, theta) -> Dict[str, jax.Array]:
        """theta (size,) -> {name: physical value (jnp array of the field's shape)}. Traceable."""
        constraint = {f.name: f.constraint for f in self.fields}
        return {name: _to_physical(t, constraint[name]) for name, t in self.theta_parts(theta).items()}

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

    def dale_signs(self) -> jax.Array:
        """(N,) presynaptic signs s_j: +1 for the n_exc E columns, -1 for the n_inh I columns."""
        return jnp.asarray(np.r_[np.ones(self.n_exc), -np.ones(self.n_inh)], jnp.result_type(float))

    def tau(self) -> jax.Array:
        """(N,) membrane time constants (ms): tau_e for E cells then tau_i for I cells."""
        tau = np.r_[np.full(self.n_exc, self.tau_e), np.full(self.n_inh, self.tau_i)]
        return jnp.asarray(tau, jnp.result_type(float))

    def network_from_params(self, params) -> SSN:
        """The ``SSN`` (E cells first, n_exc of them) for physical params (traceable)."""
        params = {k: jnp.asarray(v) for k, v in params.items()}
        W = self.connectivity(params)
        S = self.noise_covariance(params)
        S = 0.5 * (S + S.T)
        return SSN(W, self.tau(), S, self.tau_noise, self.k, self.n, n_exc=self.n_exc)

    def network(self, theta) -> SSN:
        """theta -> ``SSN`` (traceable; validated by ``SSN`` when concrete)."""
        return self.network_from_params(self.from_theta(theta))

    def raw_drive(self, theta, h_raw: jax.Array) -> jax.Array:
        """What the input map rectifies, (..., N): the raw input h~ itself (a subclass
        may mix it, e.g. ``Growing``: G h~).  Traceable; h_raw already checked."""
        return h_raw

    def inputs(self, theta, h_raw) -> jax.Array:
        """Network input h = in_a [x + in_b]_+^in_p (mV), x = ``raw_drive(theta, h~)``;
        h_raw (..., N) -> (..., N).  Traceable."""
        h_raw = jnp.asarray(h_raw)
        if h_raw.shape[-1:] != (self.N,):
            raise ValueError(f"h_raw must have shape (..., {self.N}), got {h_raw.shape}")
        return input_nonlinearity(
            self.raw_drive(theta, h_raw),
            self.field(theta, "in_a"), self.field(theta, "in_b"), self.field(theta, "in_p"),
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
        """Write ``to_json(theta)`` (indented) to ``path`` (atomically); returns the path."""
        path = os.fspath(path)
        atomic_write_text(path, self.to_json(theta, indent=1) + "\n")
        return path

    def load_json(self, path: Union[str, os.PathLike]) -> jax.Array:
        """``from_json`` of the file at ``path``."""
        with open(os.fspath(path)) as fh:
            return self.from_json(fh.read())


class DaleMixing:
    """Free weights under Dale's law and noise through a free mixing matrix (a mixin for
    parameterizations with fields ``w_abs`` (N, N) mV/Hz and ``mix`` (N, D) mV):

        W_ij = s_j w_abs_ij    (s_j = +1 for E columns, -1 for I: ``dale_signs``)
        Sigma_eta = L L^T      (L = ``mix``: PSD by construction)
    """

    def connectivity(self, params) -> jax.Array:
        """W = w_abs * s[None, :] (N, N), mV/Hz."""
        return params["w_abs"] * self.dale_signs()[None, :]

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta = L L^T (N, N), mV^2."""
        L = params["mix"]
        return L @ L.T


# --------------------------------------------------------------------------- registry

#: kind (lower case) -> Parameterization subclass; filled by :func:`register_parameterization`
#: (``momentssn.params.ring`` registers baseline15, ring, general; ``.growing`` growing).
PARAMETERIZATIONS: Dict[str, type] = {}


def register_parameterization(cls):
    """Make a ``Parameterization`` subclass known by its ``kind`` to
    :func:`get_parameterization` and :func:`parameterization_from_json` (a class
    decorator; every built-in parameterization registers itself this way)."""
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
    ``"ring"``, ``"general"``, ``"growing"`` (``momentssn.params.growing.Growing``), or
    one added with :func:`register_parameterization`.

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
