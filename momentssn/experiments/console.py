"""Progress on the console: the printer the command line plugs into the library.

Library loops report :class:`~momentssn.progress.Progress` events through a callback
and never print; :class:`Printer` is such a callback.  On a terminal, step counters
of one task rewrite one line (carriage return); anywhere else (a log file, a pipe,
a notebook) every printed event is a whole line, and step counters (events with a
``total``) are thinned to one line every ``every_s`` seconds (plus the first and the
last step), so a log file stays readable.  Events without a ``total`` always print.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from ..progress import Progress, ProgressFn

__all__ = ["Printer", "format_event", "as_callback"]


def format_event(event: Progress) -> str:
    """One line of text for ``event``: ``[task] step/total  loss ...  elapsed  message``."""
    parts = [f"[{event.task}]"]
    if event.total is not None:
        parts.append(f"{event.step}/{event.total}")
    elif event.step:
        parts.append(f"step {event.step}")
    if event.loss is not None:
        parts.append(f"loss {event.loss:.6g}")
    if event.elapsed_s:
        parts.append(f"{event.elapsed_s:.1f} s")
    if event.message:
        parts.append(event.message)
    return "  ".join(parts)


class Printer:
    """A ``ProgressFn`` that prints events (see the module docstring).

    stream: where to print (default ``sys.stdout``, looked up at each call so that a
        redirected stdout is honoured).
    tty: rewrite step counters in place; default: whether the stream is a terminal.
    every_s: on a non-terminal, at most one counter line per task per ``every_s``
        seconds (the first and last step always print).
    """

    def __init__(self, stream: Optional[TextIO] = None, tty: Optional[bool] = None, every_s: float = 10.0):
        self._stream = stream
        self._tty = tty
        self.every_s = float(every_s)
        self._last: dict = {}  # task -> time of its last printed counter line
        self._open = False  # a counter line without its newline is on a terminal

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def say(self, text: str) -> None:
        """Print ``text`` as whole lines (closing an open counter line first)."""
        self._close()
        print(text, file=self.stream, flush=True)

    def _close(self) -> None:
        if self._open:
            print(file=self.stream, flush=True)
            self._open = False

    def __call__(self, event: Progress) -> None:
        counter = event.total is not None  # a step counter (else a message)
        last = counter and event.step >= event.total
        if not counter:
            self.say(format_event(event))
            return
        if self.tty:
            end = "\n" if last else ""
            print("\r" + format_event(event), end=end, file=self.stream, flush=True)
            self._open = not last
            return
        now = time.monotonic()
        first = event.task not in self._last
        if first or last or now - self._last[event.task] >= self.every_s:
            self._last[event.task] = now
            self.say(format_event(event))
        if last:  # the next run of this task prints its first step again
            self._last.pop(event.task, None)


def as_callback(progress) -> Optional[ProgressFn]:
    """``progress`` argument of an experiment -> a callback: a callable is used as is,
    True prints (:class:`Printer`), False / None are silent."""
    if callable(progress):
        return progress
    return Printer() if progress else None
