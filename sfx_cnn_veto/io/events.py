"""Event references, written and read exactly as CrystFEL writes and reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_INDEX = re.compile(r"^//(\d+)$")
#: The event ID of a single-frame file, as indexamajig 0.12 writes it in streams and accepts in lists.
SINGLE_FRAME = "//"


@dataclass(frozen=True)
class EventRef:
    """One event: a file and, for multi-event files, a CrystFEL event ID.

    Parameters
    ----------
    path : str
        The file name as the user wrote it (kept verbatim for output lists).
    event : str or None
        CrystFEL event ID such as ``"//5"``; ``None`` (or ``"//"``, indexamajig 0.12's
        form, kept as written) for a single-frame file.
    resolved : str
        The path used to open the file (prefix applied, absolute).
    """

    path: str
    event: str | None = None
    resolved: str = ""

    @property
    def file(self) -> str:
        return self.resolved or self.path

    @property
    def index(self) -> int | None:
        """The frame index of a ``//N`` event ID, ``None`` for single frames (no event, or ``//``).

        Raises ``ValueError`` for event IDs of another form (path placeholders).
        """
        if self.event is None or self.event == SINGLE_FRAME:
            return None
        match = _INDEX.match(self.event)
        if match is None:
            raise ValueError(
                f"event ID {self.event!r}: expected '//N' (a frame index on the first dimension)"
            )
        return int(match.group(1))

    def lst_line(self) -> str:
        """The line indexamajig reads: ``path //N`` (one space, canonical index), or ``path``."""
        if self.event is None:
            return self.path
        if self.event == SINGLE_FRAME:
            return f"{self.path} {SINGLE_FRAME}"
        try:
            return f"{self.path} //{self.index}"
        except ValueError:
            return f"{self.path} {self.event}"

    def __str__(self) -> str:
        return self.lst_line()


def event_for_index(index: int) -> str:
    """The canonical CrystFEL event ID of frame ``index``: ``//index``."""
    return f"//{int(index)}"
