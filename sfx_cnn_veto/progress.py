"""Progress for people and for logs: a bar on a terminal, plain status lines in a log file.

On a terminal (stderr is a TTY) a tqdm bar shows the count, the total and the
time left. In a log (a batch job, SLURM, ``| tee``) a bar would appear only at
the end, so a plain line is printed every few seconds instead, as indexamajig
and OM do::

    score: 1200 frames, 300 hits (25.0%), 118 frames/s, 1200 of 5000, about 32 s left

``SFX_CNN_VETO_PROGRESS`` chooses: ``0`` nothing, ``1`` the bar even in a log,
``lines`` status lines even on a terminal; unset, by the stream.
``SFX_CNN_VETO_STATUS_SECONDS`` sets the seconds between status lines
(default 10).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

DEFAULT_STATUS_SECONDS = 10.0


def progress_mode(stream: TextIO) -> str:
    """``"bar"``, ``"lines"`` or ``"off"`` for ``stream`` under ``SFX_CNN_VETO_PROGRESS``."""
    wanted = os.environ.get("SFX_CNN_VETO_PROGRESS", "").strip().lower()
    if wanted in ("0", "off", "no"):
        return "off"
    if wanted in ("1", "bar"):
        return "bar"
    if wanted == "lines":
        return "lines"
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return "bar" if terminal else "lines"


def status_interval() -> float:
    """Seconds between status lines (``SFX_CNN_VETO_STATUS_SECONDS``, default 10)."""
    text = os.environ.get("SFX_CNN_VETO_STATUS_SECONDS", "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_STATUS_SECONDS
    except ValueError:
        return DEFAULT_STATUS_SECONDS


def plural(unit: str, n: int) -> str:
    if n == 1:
        return unit
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 04 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """A tqdm-like counter: ``update(n, hits=...)``, ``total``, ``set_postfix``, ``note``, ``close``.

    Parameters
    ----------
    total : int, optional
        How many units are expected (for the time left).
    desc : str
        What runs (``score``, ``label run90`` ...), the start of each line.
    unit : str
        What is counted (``frame``, ``batch`` ...).
    stream : file, optional
        Where to write (default standard error).
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "frame",
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.desc, self.unit = desc, unit
        self.n, self.hits, self._counts_hits = 0, 0, False
        self._total = total
        self._postfix = ""
        self.mode = progress_mode(self.stream)
        self.interval = status_interval()
        self._start = self._last = time.monotonic()
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             disable=False, mininterval=0.5)

    # -- tqdm's interface -------------------------------------------------
    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total = value
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    def update(self, n: int = 1, *, hits: int | bool | None = None) -> None:
        """Count ``n`` more units, ``hits`` of them hits (None: this counter does not count hits)."""
        self.n += n
        if hits is not None:
            self.hits += int(hits)
            self._counts_hits = True
        if self._bar is not None:
            if self._counts_hits:
                self._bar.set_postfix_str(self._hit_text(), refresh=False)
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._write(self.status_line(now))

    def set_postfix(self, **values: Any) -> None:
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()))

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def note(self, text: str) -> None:
        """A line of its own (an epoch's figures ...), above the bar on a terminal; nothing when off."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.mode == "lines":
            self._write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- status lines -----------------------------------------------------
    def _hit_text(self) -> str:
        rate = 100.0 * self.hits / self.n if self.n else 0.0
        return f"{self.hits} {plural('hit', self.hits)} ({rate:.1f}%)"

    def status_line(self, now: float | None = None) -> str:
        """``desc: N units, H hits (x%), R units/s, N of T, about S left``."""
        elapsed = (now or time.monotonic()) - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n} {plural(self.unit, self.n)}"]
        if self._counts_hits:
            parts.append(self._hit_text())
        parts.append(f"{rate:.1f} {plural(self.unit, 2)}/s" if rate < 100 else f"{rate:.0f} {plural(self.unit, 2)}/s")
        if self._total:
            parts.append(f"{self.n} of {self._total}")
            if rate > 0 and self._total >= self.n:
                parts.append(f"about {duration((self._total - self.n) / rate)} left")
        if self._postfix:
            parts.append(self._postfix)
        return f"{self.desc}: {', '.join(parts)}" if self.desc else ", ".join(parts)

    def _write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
