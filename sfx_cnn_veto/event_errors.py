"""Per-event error lines that read well: each file and event named once, repeats collapsed.

A wrong file used to give one line per event, each naming the file and event
twice. :class:`EventErrors` prints the first event of each file and reason in
full and then, when the file ends, ``N more events of this file: same reason``.

Errors that say the run was set up wrongly (a ``--dataset`` in no file,
frames of a shape the model cannot crop) are held back until some event is
decided: when none is, :meth:`EventErrors.finish` raises one
:class:`~sfx_cnn_veto.errors.ConfigError` (exit code 1) instead of a line per
event and exit code 2.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

from sfx_cnn_veto.errors import ConfigError

SETUP_MISTAKE = "no event could be decided"

#: (kind, pattern of the reason, advice) of the set-up mistakes
SETUP_MISTAKES = (
    ("dataset", re.compile(r"no data set \S+ in the file"),
     "check --dataset (the HDF5 data set of the frames)"),
    ("shape", re.compile(r"frame of shape \(.*\) does not fit this model|frame of shape \(.*\), but this model was "
                         r"trained on|expected a 2-D frame|is the raw slab of a"),
     "the frames are not the model's: give --geometry for raw multi-panel slabs, or another --model"),
)


def setup_kind(reason: str) -> str | None:
    """``"dataset"`` or ``"shape"`` when ``reason`` says the run was set up wrongly, else None."""
    return next((kind for kind, pattern, _ in SETUP_MISTAKES if pattern.search(reason)), None)


def strip_ref(ref: Any, reason: str) -> str:
    """``reason`` without a leading ``FILE //N:`` (or the file's full path) that names the event again."""
    names = {str(ref), str(getattr(ref, "path", "")), str(getattr(ref, "file", ""))} - {""}
    changed = True
    while changed:
        changed = False
        for name in sorted(names, key=len, reverse=True):
            if reason.startswith(name + ": "):
                reason, changed = reason[len(name) + 2:], True
    return reason


class EventErrors:
    """Collapsed per-event error lines on ``stream``.

    Parameters
    ----------
    note : str
        Appended to each first line, e.g. ``" (kept as a hit)"``.
    stream : file, optional
        Default standard error.
    prefix : str
        The start of each line.
    """

    def __init__(self, note: str = "", stream: TextIO | None = None, prefix: str = "sfx-cnn-veto: ") -> None:
        self.note, self.stream, self.prefix = note, stream, prefix
        self.decided = self.errors = 0
        self.setup: dict[str, int] = {}
        self.first: tuple[str, str, str] | None = None  # (event, reason, kind) of the first set-up mistake
        self._file: str | None = None
        self._repeats: dict[str, int] = {}
        self._held: list[str] = []

    # -- events -----------------------------------------------------------
    def ok(self, n: int = 1) -> None:
        """``n`` events were decided."""
        self.decided += n
        self._release()

    def report(self, ref: Any, reason: str, note: str | None = None) -> None:
        """An event that could not be decided, and why."""
        self.errors += 1
        reason = strip_ref(ref, str(reason))
        kind = setup_kind(reason)
        if kind:
            self.setup[kind] = self.setup.get(kind, 0) + 1
            self.first = self.first or (str(ref), reason, kind)
        else:
            self._release()
        file = str(getattr(ref, "path", None) or getattr(ref, "file", ref))
        if file != self._file:
            self._flush_repeats()
            self._file = file
        if reason in self._repeats:
            self._repeats[reason] += 1
            return
        self._repeats[reason] = 0
        self._emit(f"{self.prefix}{ref}: {reason}{self.note if note is None else note}")

    def finish(self, *, raise_setup: bool = True) -> None:
        """Print what is pending; raise :class:`ConfigError` when every event failed on a set-up mistake.

        ``raise_setup=False`` (one MPI rank of several, which sees only its share) prints instead.
        """
        self._flush_repeats()
        if raise_setup and self.decided == 0 and self.errors and sum(self.setup.values()) == self.errors:
            self._held.clear()
            event, reason, kind = self.first
            advice = next(text for k, _, text in SETUP_MISTAKES if k == kind)
            many = f" (the same for all {self.errors})" if self.errors > 1 else ""
            raise ConfigError(f"{SETUP_MISTAKE}: {event}: {reason}{many}; {advice}")
        held, self._held = self._held, []
        for line in held:
            print(line, file=self.stream or sys.stderr)

    # -- output -----------------------------------------------------------
    def _holding(self) -> bool:
        return self.decided == 0 and sum(self.setup.values()) == self.errors

    def _flush_repeats(self) -> None:
        several = len(self._repeats) > 1
        for reason, count in self._repeats.items():
            if count:
                what = "event" if count == 1 else "events"
                which = f" ({reason})" if several else ""
                self._emit(f"{self.prefix}{self._file}: {count} more {what} of this file: same reason{which}")
        self._repeats = {}

    def _emit(self, line: str) -> None:
        if self._holding():
            self._held.append(line)
        else:
            print(line, file=self.stream or sys.stderr)

    def _release(self) -> None:
        if self._held and not self._holding():
            held, self._held = self._held, []
            for line in held:
                print(line, file=self.stream or sys.stderr)
