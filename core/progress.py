"""How far a long command has got, for the person who started it: a tqdm bar on a
terminal; in a pipe, a log or CI, where a bar is either nothing (tqdm's ``disable=None``)
or a wall of carriage returns, a plain line every ``every_s`` seconds; nothing when quiet.

Only the CLI makes one. The layers below report through plain callbacks or the
tqdm-shaped methods here (``update``, ``reset``, ``set_description``, ``set_postfix``),
so the Python API, which passes none, prints nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(
        self,
        desc: str,
        *,
        unit: str = "it",
        total: int | None = None,
        every_s: float = 5.0,
        quiet: bool = False,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream or sys.stderr
        self._every_s = every_s
        self._quiet = quiet
        self._clock = clock
        self._bar = None
        if not quiet and (_is_tty(self._stream) if tty is None else tty):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit=unit, desc=desc, file=self._stream, dynamic_ncols=True
            )
        self.desc, self.unit, self._total, self.n = desc, unit, total, 0
        self._postfix = ""
        self._restart()

    def _restart(self) -> None:
        self._started = self._last_line = self._clock()
        self._lines = 0  # lines printed in this phase: a phase that printed ends with one
        self._line_n = 0

    # --- what the callers drive --------------------------------------------------------

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total = value
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    def update(self, k: int = 1) -> None:
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
        elif (
            not self._quiet
            # The last step alone is no news: the command's result follows at once, and a
            # run short enough to print nothing before it keeps stderr empty.
            and not (self._total and self.n >= self._total)
            and self._clock() - self._last_line >= self._every_s
        ):
            self._line()

    def phase(self, desc: str, *, total: int | None = None, unit: str | None = None) -> None:
        """Another stage of the same command (a training's embeddings, then its epochs):
        the count starts again."""
        self._finish_phase()
        self.desc, self.unit, self.n, self._postfix = desc, unit or self.unit, 0, ""
        if self._bar is not None:
            self._bar.unit = self.unit
            self._bar.set_description(desc, refresh=False)
            self._bar.set_postfix_str("", refresh=False)
            self._bar.reset(total=total)
        self._total = total
        self._restart()

    def reset(self) -> None:
        self.phase(self.desc, total=self._total)

    def set_description(self, desc: str) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc)

    def set_postfix(self, **fields) -> None:
        self._postfix = ", ".join(f"{k} {v}" for k, v in fields.items())
        if self._bar is not None:
            self._bar.set_postfix(**fields)

    def note(self, text: str) -> None:
        """A line now, whatever the interval (a retry, a stall): above the bar on a terminal."""
        if self._quiet:
            return
        line = f"{self.desc}: {text}"
        if self._bar is not None:
            self._bar.write(line, file=self._stream)
        else:
            self._write(line)

    def close(self) -> None:
        self._finish_phase()
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the plain lines ---------------------------------------------------------------

    def _finish_phase(self) -> None:
        # A log that showed 60/150 should also show where the phase got to.
        if self._bar is None and not self._quiet and self._lines and self._line_n != self.n:
            self._line()

    def _line(self) -> None:
        self._write(f"{self.desc}: {self.describe()}")
        self._last_line = self._clock()
        self._lines += 1
        self._line_n = self.n

    def describe(self) -> str:
        """'60/150 posters (40%), 12.1/s, ETA 7 s' (without a total: '12 pages, 0.5/s')."""
        elapsed = self._clock() - self._started
        rate = self.n / elapsed if elapsed > 0 else None
        unit = self.unit if self.n == 1 or self.unit.endswith("s") else f"{self.unit}s"
        if self._total:
            text = f"{self.n}/{self._total} {unit} ({100 * self.n / self._total:.0f}%)"
        else:
            text = f"{self.n} {unit}"
        if rate:
            text += f", {rate:.1f}/s"
            if self._total and self.n < self._total:
                text += f", ETA {_duration((self._total - self.n) / rate)}"
        return f"{text}; {self._postfix}" if self._postfix else text

    def _write(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe: progress is never worth failing for
            pass


def _is_tty(stream: TextIO) -> bool:
    """A terminal a bar can be drawn on: a pseudo-terminal of no width (``docker -t`` in
    some CI runners) would draw an empty bar, so it gets the lines."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return False


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
