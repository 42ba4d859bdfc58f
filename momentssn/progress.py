"""Progress reporting without printing: library loops call a user's callback.

A long-running function takes ``progress: ProgressFn | None``; at each step it calls
``report(progress, Progress(...))``.  The library never prints; the command line and
``momentssn.experiments`` plug in a printer (``experiments.console.Printer``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional


class Progress(NamedTuple):
    """One progress event.

    Fields: ``task`` (what is running, e.g. "fit", "bptt", "growth stage 3/7",
    "simulate"), ``step`` (steps done), ``total`` (steps planned, ``None`` if open-ended),
    ``loss`` (latest loss, ``None`` if none), ``elapsed_s`` (wall time so far, s) and
    ``message`` (free text, may be empty).
    """

    task: str
    step: int
    total: Optional[int] = None
    loss: Optional[float] = None
    elapsed_s: float = 0.0
    message: str = ""


ProgressFn = Callable[[Progress], None]


def report(progress: Optional[ProgressFn], event: Progress) -> None:
    """Call ``progress(event)`` if a callback was given (``None``: silent)."""
    if progress is not None:
        progress(event)
