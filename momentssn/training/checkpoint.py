"""Checkpoints on disk: one format for every training driver (fit, Adam, growth).

A checkpoint is one ``.npz`` file in a folder: named arrays plus a JSON header
(``__meta__``) that says which driver wrote it (``kind``), its format version and
whatever scalars the driver needs to resume (step, elapsed time, history, config).
Files are written atomically (temporary file, fsync, ``os.replace``): an interrupted
run leaves the previous checkpoint intact, never a partial one.

(Not to be confused with ``jax.checkpoint``, the rematerialization of activations in
the backward pass, which the simulated loss uses under the name "remat".)
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import numpy as np

from .._util import PathLike, atomic_savez, to_json

FORMAT = 2
DEFAULT_NAME = "checkpoint.npz"
_META = "__meta__"


class Checkpoint(NamedTuple):
    """What :func:`load` returns: ``arrays`` (name -> numpy array) and ``meta`` (the
    JSON header: ``kind``, ``format`` and the driver's own fields)."""

    arrays: Dict[str, np.ndarray]
    meta: Dict[str, Any]

    @property
    def kind(self) -> str:
        return self.meta["kind"]


def path_of(folder: PathLike, name: str = DEFAULT_NAME) -> Path:
    return Path(folder) / name


def exists(folder: PathLike, name: str = DEFAULT_NAME) -> bool:
    return path_of(folder, name).is_file()


def save(folder: PathLike, kind: str, arrays: Dict[str, Any], meta: Dict[str, Any],
         name: str = DEFAULT_NAME) -> Path:
    """Write ``arrays`` and ``meta`` (JSON-able; NaN/inf become null) atomically into
    ``folder/name``; returns the path."""
    if _META in arrays:
        raise ValueError(f"arrays: the name {_META!r} is reserved for the header")
    header = dict(meta, kind=kind, format=FORMAT)
    payload = dict(arrays)
    payload[_META] = np.asarray(json.dumps(to_json(header), allow_nan=False))
    return atomic_savez(path_of(folder, name), payload)


def read(path: PathLike) -> Checkpoint:
    """Read a checkpoint file; ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} is corrupt or not a momentssn checkpoint (.npz)") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not a momentssn checkpoint (.npz)")
    try:
        with f:
            if _META not in f.files:
                raise ValueError(f"{path} is not a momentssn checkpoint (no header)")
            meta = json.loads(str(f[_META]))
            arrays = {k: f[k] for k in f.files if k != _META}
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated): {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    return Checkpoint(arrays, meta)


def load(folder: PathLike, kind: str, name: str = DEFAULT_NAME) -> Checkpoint:
    """Read the checkpoint ``folder/name`` written by driver ``kind``.

    Raises ``FileNotFoundError`` naming the folder if there is none, ``ValueError`` if
    the file is corrupt or was written by another driver.
    """
    path = path_of(folder, name)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {Path(folder)} (looked for {path.name})")
    ck = read(path)
    if ck.kind != kind:
        raise ValueError(f"{path} is a {ck.kind!r} checkpoint, not a {kind!r} one")
    return ck


def resume_from(folder: Optional[PathLike], kind: str, resume: bool,
                name: str = DEFAULT_NAME) -> Optional[Checkpoint]:
    """The checkpoint to resume from, or ``None`` to start afresh.

    ``resume=True`` without a checkpoint is an error naming the folder (a mistyped path
    must not silently throw a user's progress away); ``resume=False`` ignores any file
    there (it will be overwritten by the next save).
    """
    if not resume:
        return None
    if folder is None:
        raise ValueError("resume=True needs a checkpoint folder (checkpoint_dir / --out)")
    return load(folder, kind, name)
