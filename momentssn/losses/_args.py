"""Argument checks shared by the losses and the training drivers: a bad value raises
``ValueError`` naming the argument and what was wrong with it."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_int", "check_positive", "check_progress"]


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive(name: str, value) -> float:
    """``value`` as a finite float > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_progress(progress):
    """A ``progress`` argument -> a ``ProgressFn`` or ``None``.

    ``None`` and ``False`` are silent; a callable is used as is.  The library never
    prints, so ``True`` is refused: pass a printer
    (``momentssn.experiments.console.Printer()``) to see progress.
    """
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress
    raise ValueError(
        "progress must be a callback (momentssn.progress.ProgressFn) or None, got "
        f"{progress!r}: the library does not print; pass momentssn.experiments.console.Printer() to print"
    )
