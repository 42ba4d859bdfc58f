"""Finished runs of a comparison on disk, so that ``compare --resume`` keeps them.

When a run of :func:`.compare.run_comparison` has been trained and scored, :func:`save`
writes it to ``<run folder>/scored.npz`` atomically, in the checkpoint format of
``momentssn.training.checkpoint`` (named arrays plus a JSON header, no pickle);
:func:`load` reads back the same ``ScoredRun``.  The header also holds the run's settings
(its *key*: method, network, seed, budget, simulation and scoring settings, a fingerprint
of the task): a resumed comparison reuses a finished run only when the keys are equal,
and names the settings that differ otherwise.

Encoding of the ``ScoredRun`` tree into the JSON header: the NamedTuples of a scored run
(``ScoredRun``, ``TrainingRun``, ``SimulatedScore``, ``Moments``, ``Snapshot``,
``SnapshotScore``) as ``{"__nt__": name, "fields": {...}}``, an ``SSN`` as
``{"__ssn__": n_exc, "leaves": [...]}``, tuples and dicts tagged the same way, non-finite
floats as ``{"__float__": "nan"}``, and every array (numpy scalar) as
``{"__array__": "a<i>"}`` (``"__scalar__"``), the name of an array of the ``.npz``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Dict

import jax
import numpy as np

from ..model import SSN
from ..moments import Moments
from ..losses.simulated import SimulatedScore
from ..tasks import Task
from ..training import checkpoint as ckpt
from .compare_score import ScoredRun, SnapshotScore
from .compare_snapshots import Snapshot

__all__ = ["FILE", "KIND", "run_key", "task_fingerprint", "save", "load", "exists"]

FILE = "scored.npz"
KIND = "compare-scored-run"
_SSN_FIELDS = ("W", "tau", "noise_cov", "tau_noise", "k", "n")


def _named_tuples() -> Dict[str, type]:
    from .compare import TrainingRun  # (compare imports this module)

    return {c.__name__: c for c in (ScoredRun, TrainingRun, SimulatedScore, Moments, Snapshot, SnapshotScore)}


def _digest(*arrays) -> str:
    """SHA-256 (hex, 16 digits) of the dtypes, shapes and bytes of ``arrays``."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def task_fingerprint(task: Task) -> str:
    """:func:`_digest` of the task's stimuli inputs and targets (as float64)."""
    return _digest(*(np.asarray(a, np.float64) for a in (task.inputs, task.target_mean, task.target_cov)))


def run_key(task: Task, method: str, net_kind: str, seed: int, **settings) -> dict:
    """The settings a finished run is reused under (JSON-able; ``settings``: budget,
    steps, sim, score, ...: records by their fields, arrays by a hash, functions by
    their qualified name, anything else by its ``repr``)."""

    def plain(x):
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if hasattr(x, "_asdict"):  # a settings record (PaperInit, ClosureStage, Correction, ...)
            return dict(plain(x._asdict()), type=type(x).__name__)
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in sorted(x.items())}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, (np.ndarray, np.generic, jax.Array)):
            return f"array {np.asarray(x).dtype}{list(np.shape(x))} sha256 {_digest(x)}"
        if callable(x) and hasattr(x, "__qualname__"):  # a function: its name, not its address
            return f"{getattr(x, '__module__', '')}.{x.__qualname__}"
        return repr(x)

    return json.loads(json.dumps(plain(dict(settings, task=task.name, task_fingerprint=task_fingerprint(task),
                                            method=method, net=net_kind, seed=int(seed)))))


# --------------------------------------------------------------------------- encoding


def _encode(x, arrays: Dict[str, np.ndarray]):
    if x is None or isinstance(x, (bool, str, int)) and not isinstance(x, np.generic):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, SSN):
        return {"__ssn__": x.n_exc, "leaves": [_encode(getattr(x, f), arrays) for f in _SSN_FIELDS]}
    if hasattr(x, "_asdict"):
        return {"__nt__": type(x).__name__, "fields": {k: _encode(v, arrays) for k, v in x._asdict().items()}}
    if isinstance(x, dict):
        return {"__dict__": {str(k): _encode(v, arrays) for k, v in x.items()}}
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in x]}
    if isinstance(x, list):
        return [_encode(v, arrays) for v in x]
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(jax.device_get(x))
        return {"__scalar__" if isinstance(x, np.generic) else "__array__": name}
    raise TypeError(f"cannot store a {type(x).__name__} in a scored run")


def _decode(x, arrays: Dict[str, np.ndarray], classes: Dict[str, type]):
    if isinstance(x, list):
        return [_decode(v, arrays, classes) for v in x]
    if not isinstance(x, dict):
        return x
    if "__array__" in x:
        return arrays[x["__array__"]]
    if "__scalar__" in x:  # a numpy scalar (np.float64 is a float)
        return arrays[x["__scalar__"]][()]
    if "__float__" in x:
        return float(x["__float__"])
    if "__tuple__" in x:
        return tuple(_decode(v, arrays, classes) for v in x["__tuple__"])
    if "__dict__" in x:
        return {k: _decode(v, arrays, classes) for k, v in x["__dict__"].items()}
    if "__ssn__" in x:
        leaves = [_decode(v, arrays, classes) for v in x["leaves"]]
        return SSN(*leaves, n_exc=x["__ssn__"])
    if "__nt__" in x:
        cls = classes.get(x["__nt__"])
        if cls is None:
            raise ValueError(f"unknown record {x['__nt__']!r}")
        return cls(**{k: _decode(v, arrays, classes) for k, v in x["fields"].items()})
    raise ValueError(f"unexpected object {sorted(x)!r}")


# --------------------------------------------------------------------------- files


def exists(folder) -> bool:
    """Whether ``folder`` holds a finished run."""
    return ckpt.exists(folder, FILE)


def save(folder, scored: ScoredRun, key: dict) -> Path:
    """Write the finished run ``scored`` with its settings ``key`` (:func:`run_key`) into
    ``folder/scored.npz`` atomically; returns the path."""
    arrays: Dict[str, np.ndarray] = {}
    tree = _encode(scored, arrays)
    return ckpt.save(folder, KIND, arrays, {"key": key, "run": tree}, name=FILE)


def load(folder, key: dict) -> ScoredRun:
    """The finished run in ``folder``; ``ValueError`` naming the settings that differ
    when it was made with settings other than ``key``, or when the file is not a
    finished run."""
    ck = ckpt.load(folder, KIND, FILE)
    old = ck.meta.get("key", {})
    diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} then, {key.get(k)!r} now" for k in diff)
        raise ValueError(f"cannot resume: the finished run in {folder} was made with other settings ({shown}); "
                         "start the comparison in a new --out folder")
    return _decode(ck.meta["run"], ck.arrays, _named_tuples())
