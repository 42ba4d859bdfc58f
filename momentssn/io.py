"""Saved work loads back: ``ms.load`` reads any parameter, result or checkpoint file.

    loaded = ms.load("out/baseline")            # a folder, or any file below
    loaded.net, loaded.param, loaded.theta      # the SSN, its parameterization, theta

What it reads:

* a parameter document (``param.save_json`` / ``params.json``: ``{"parameterization",
  "constants", "params"}``), or a result file that holds one (``result.json`` of
  ``fit-baseline`` under ``network``, of ``train`` under ``params``);
* a checkpoint (``.npz``, ``momentssn.training.checkpoint``) of ``fit`` (the best
  parameters so far), ``growth`` (the current grown network) or ``adam`` (pass
  ``param=``: the Adam loop trains any pytree and does not record a parameterization);
* a folder: the first of ``result.json``, ``params.json``, ``checkpoint.npz``,
  ``growth.npz`` found in it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from .model import SSN
from .params.base import get_parameterization, parameterization_from_json
from .params.growing import Growing
from .training import checkpoint

__all__ = ["Loaded", "load"]

_FOLDER_FILES = ("result.json", "params.json", "checkpoint.npz", "growth.npz")


class Loaded(NamedTuple):
    """net: the ``SSN``; param: its parameterization; theta: (param.size,) parameters;
    path: the file read; kind: "parameters", "fit", "growth" or "adam"."""

    net: SSN
    param: Any
    theta: jnp.ndarray
    path: Path
    kind: str


def _find_document(doc) -> Optional[dict]:
    """The parameter document in ``doc`` (itself, or under ``network`` / ``params``)."""
    if isinstance(doc, dict):
        if "parameterization" in doc and "params" in doc:
            return doc
        for key in ("network", "params"):
            found = _find_document(doc.get(key))
            if found is not None:
                return found
    return None


def _from_json(path: Path) -> Loaded:
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a JSON file momentssn wrote ({e})") from None
    found = _find_document(doc)
    if found is None:
        raise ValueError(f"{path} holds no network: no parameter document (a 'parameterization' with "
                         "'params') at its top level or under 'network' / 'params'")
    param, theta = parameterization_from_json(json.dumps(found))
    return Loaded(param.network(theta), param, theta, path, "parameters")


def _from_checkpoint(path: Path, param) -> Loaded:
    ck = checkpoint.read(path)
    dtype = jnp.result_type(float)
    if ck.kind == "growth":
        consts = dict(ck.meta["constants"])
        consts.pop("m", None)
        param = Growing(**consts)
        theta = jnp.asarray(ck.arrays["theta"], dtype)
    elif ck.kind == "fit":
        cfg = ck.meta["config"]
        if param is None:
            if "parameterization" not in cfg:
                raise ValueError(f"{path}: this fit checkpoint does not name its parameterization: pass param=")
            consts = dict(cfg.get("constants", {}))
            param = get_parameterization(cfg["parameterization"], **consts)
        theta = jnp.asarray(ck.arrays["best_theta"], dtype)
    elif ck.kind == "adam":
        if param is None:
            raise ValueError(f"{path} is an Adam checkpoint, which trains any pytree: pass param= "
                             "(the parameterization it trained) to rebuild the network")
        if ck.meta["n_theta"] != 1:
            raise ValueError(f"{path}: theta has {ck.meta['n_theta']} leaves; ms.load reads a flat theta")
        theta = jnp.asarray(ck.arrays["theta_0"], dtype)
    else:
        raise ValueError(f"{path}: unknown checkpoint kind {ck.kind!r}")
    if np.shape(theta) != (param.size,):
        raise ValueError(f"{path}: theta has shape {np.shape(theta)}, the parameterization needs ({param.size},)")
    return Loaded(param.network(theta), param, theta, path, ck.kind)


def load(path, param=None) -> Loaded:
    """Read a network back from anything momentssn writes (see the module docstring).

    Args:
        path: a file (``.json`` or ``.npz``) or a folder holding one.
        param: the parameterization, needed only for Adam checkpoints (and fit
            checkpoints from before parameterizations were recorded).

    Returns:
        :class:`Loaded` (net, param, theta, path, kind).  Raises ``FileNotFoundError``
        naming the path, ``ValueError`` for a file that holds no network.
    """
    path = Path(path)
    if path.is_dir():
        for name in _FOLDER_FILES:
            if (path / name).is_file():
                return load(path / name, param)
        raise FileNotFoundError(f"{path} holds none of {', '.join(_FOLDER_FILES)}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".npz":
        return _from_checkpoint(path, param)
    return _from_json(path)
