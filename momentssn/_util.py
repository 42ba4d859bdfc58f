"""Small helpers shared by every layer: tracer checks, the float64 check, strict JSON,
atomic files and the symmetric PSD square root.  One owner for each; nothing here
knows about SSNs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Union

import jax
import jax.numpy as jnp
import numpy as np

from .moments import symmetrize

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- tracing


def is_traced(tree) -> bool:
    """True if any leaf of ``tree`` is a JAX tracer (inside ``jit``/``grad``/``vmap``)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def is_concrete(tree) -> bool:
    """True if every leaf of ``tree`` has a value now (no tracer): checks may run."""
    return not is_traced(tree)


def require_x64(what: str) -> None:
    """Raise ``ValueError`` unless 64-bit mode is on; ``what`` names the caller's need.

    momentssn never enables it for you: ``jax.config.update("jax_enable_x64", True)``
    before creating arrays (the command line does it for its own process).
    """
    if not jax.config.jax_enable_x64:
        raise ValueError(
            f"{what} needs 64-bit mode: call jax.config.update('jax_enable_x64', True) "
            "before creating arrays"
        )


# --------------------------------------------------------------------------- linear algebra


@jax.custom_jvp
def psd_sqrt(S: jax.Array) -> jax.Array:
    """Symmetric PSD square root R = V diag(sqrt(max(lambda, 0))) V^T, so R R^T = R^2 = S.

    S: (N, N) symmetric (symmetrized first).  Negative eigenvalues (rounding, or a
    slightly indefinite matrix) are clipped to 0: a singular S gives a singular factor
    and no NaN.  Unlike Cholesky it exists for every PSD matrix, and being a function of
    S it inherits S's symmetries (circulant blocks stay circulant).  It is unique, hence
    differentiable even with repeated eigenvalues: dR solves dR R + R dR = dS, i.e.
    dR = V [(V^T dS V)_ij / (s_i + s_j)] V^T; for a pair of zero eigenvalues the true
    derivative is unbounded and that entry is set to 0 (a pseudo-derivative).
    """
    lam, V = jnp.linalg.eigh(symmetrize(S))
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    return symmetrize((V * s) @ V.T)


@psd_sqrt.defjvp
def _psd_sqrt_jvp(primals, tangents):
    (S,), (dS,) = primals, tangents
    lam, V = jnp.linalg.eigh(symmetrize(S))
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    R = symmetrize((V * s) @ V.T)
    den = s[:, None] + s[None, :]
    ok = den > 0
    X = jnp.where(ok, (V.T @ symmetrize(dS) @ V) / jnp.where(ok, den, 1.0), 0.0)
    return R, symmetrize(V @ X @ V.T)


# --------------------------------------------------------------------------- strict JSON


def to_json(x: Any) -> Any:
    """numpy / JAX values, NamedTuples, tuples and dicts -> plain JSON-able Python.

    Strict JSON: NaN and +-inf become ``None`` (the writer states the reason beside it),
    so every standard parser reads the result.
    """
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if hasattr(x, "_asdict"):
        return to_json(x._asdict())
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.ndarray, jax.Array, np.generic)):
        a = np.asarray(x)
        if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
            return a.tolist()
        if np.issubdtype(a.dtype, np.floating):
            obj = a.astype(object)
            obj[~np.isfinite(a)] = None
            return obj.tolist()
        return a.tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, int):
        return x
    return x


def dumps(obj: Any, indent: int = 2) -> str:
    """Strict JSON text of ``obj`` (see :func:`to_json`); refuses NaN/inf by construction."""
    return json.dumps(to_json(obj), indent=indent, allow_nan=False)


# --------------------------------------------------------------------------- atomic files


def _atomic(path: PathLike, write) -> Path:
    """Write through ``write(fh)`` into a temporary file beside ``path``, fsync, then
    ``os.replace`` it into place: a reader (or a crash) sees the old file or the new
    one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Strict JSON (NaN/inf -> null), written atomically."""
    return atomic_write_text(path, dumps(obj) + "\n")


def atomic_savez(path: PathLike, arrays: Dict[str, Any]) -> Path:
    """An uncompressed ``.npz`` of ``arrays`` (name -> array), written atomically."""
    return _atomic(path, lambda fh: np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()}))
