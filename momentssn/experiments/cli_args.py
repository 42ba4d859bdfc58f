"""Argument types of the command line: each checks one value when it is parsed, before
any computation, and raises ``argparse.ArgumentTypeError`` with a short reason
(argparse prints it as ``argument --x: <reason>`` and exits with status 2)."""

from __future__ import annotations

import argparse
import math
import os
import zipfile
from pathlib import Path
from typing import Tuple

from .compare import METHODS, NETS
from ..datasets import BUILTIN_TASKS

__all__ = ["positive", "finite", "fraction", "count", "nonnegative_int", "seed", "existing_file", "task_file", "task_spec",
           "run_spec", "out_folder"]

#: Task names the command line accepts besides a path.
TASK_NAMES = ("default",) + tuple(BUILTIN_TASKS)


def _number(text: str, kind, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def finite(text: str) -> float:
    """A finite real number."""
    x = _number(text, float, "a number")
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def positive(text: str) -> float:
    """A finite number > 0 (budgets, durations, steps)."""
    x = finite(text)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return x


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    x = finite(text)
    if not 0.0 < x < 1.0:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return x


def count(text: str) -> int:
    """An integer >= 1."""
    n = _number(text, int, "an integer")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return n


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    n = _number(text, int, "an integer")
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return n


seed = nonnegative_int


def existing_path(text: str) -> str:
    """The path of an existing file or folder."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
    return text


def existing_file(text: str) -> str:
    """The path of an existing file."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"not a file: {text}")
    return text


def task_file(text: str) -> str:
    """The path of an existing task file (an .npz archive, i.e. a zip file)."""
    existing_file(text)
    if not zipfile.is_zipfile(text):
        raise argparse.ArgumentTypeError(f"{text} is corrupt or not a task file (a task is an .npz archive)")
    return text


def task_spec(text: str) -> str:
    """A task name (``TASK_NAMES``) or the path of a task file."""
    if text in TASK_NAMES:
        return text
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such task file: {text} (or use one of: {', '.join(TASK_NAMES)})")
    return task_file(text)


def run_spec(text: str) -> Tuple[str, str]:
    """``METHOD:NET`` of a comparison, checked against the methods and networks known."""
    method, _, net = text.partition(":")
    if method not in METHODS or net not in NETS:
        raise argparse.ArgumentTypeError(
            f"expected METHOD:NET with METHOD in {', '.join(METHODS)} and NET in {', '.join(NETS)}, got {text!r}")
    return method, net


def out_folder(text: str) -> str:
    """An output folder that exists or can be created: it, or its nearest existing
    parent, must be a folder (checked now, not after the computation)."""
    p = Path(text)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise argparse.ArgumentTypeError(f"{q} is a file, not a folder" + ("" if q == p else f" (in {text})"))
            break
    return text
