"""CrystFEL ``.lst`` event lists, parsed exactly as indexamajig parses them.

indexamajig's rules (checked against CrystFEL, see HOSTS.md):

* one entry a line; the event ID is what follows the LAST space, if it
  contains ``//``; otherwise the whole line is a file name (so paths with
  spaces work, and ``file.h5 // 00005`` or a trailing space make the whole
  line a file name that does not exist);
* ``#`` lines are not comments; empty lines are skipped;
* a line with no event ID means every frame of the file;
* relative paths resolve against the working directory, after the
  ``--prefix`` (indexamajig ``-x``) is prepended as plain text.

:func:`parse_line` follows those rules to the character and :func:`lint_line`
explains the lines indexamajig would reject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from sfx_cnn_veto.errors import FrameReadError
from sfx_cnn_veto.io.events import EventRef


@dataclass(frozen=True)
class LstEntry:
    """One parsed line: a file name and an event ID or ``None`` (all events)."""

    path: str
    event: str | None
    lineno: int

    def ref(self, *, prefix: str = "", base: str | None = None) -> EventRef:
        return EventRef(self.path, self.event, resolve_path(self.path, prefix=prefix, base=base))


def resolve_path(path: str, *, prefix: str = "", base: str | None = None) -> str:
    """indexamajig's file name: ``prefix + path``, relative to ``base`` (default: cwd)."""
    full = prefix + path
    if not os.path.isabs(full):
        full = os.path.join(base or os.getcwd(), full)
    return os.path.normpath(full)


def parse_line(line: str) -> tuple[str, str | None] | None:
    """Split one list line into ``(filename, event_id_or_None)``; ``None`` for an empty line.

    The line terminator (``\\n`` or ``\\r\\n``) is removed; a trailing space
    or tab stays part of the line, as in indexamajig.
    """
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    if line == "":
        return None
    cut = line.rfind(" ")
    if cut >= 0 and "//" in line[cut + 1 :]:
        return line[:cut], line[cut + 1 :]
    return line, None


def lint_line(line: str) -> str | None:
    """Why indexamajig would fail on ``line`` (after parsing), or ``None`` if it looks right."""
    raw = line[:-1] if line.endswith("\n") else line
    if raw.endswith("\r"):
        return "line ends in CRLF: accepted here, but rewrite the list with '\\n' line ends for CrystFEL"
    if raw != raw.rstrip(" \t"):
        return "trailing whitespace: indexamajig reads the whole line as a file name"
    if "\t" in raw:
        return "tab in line: indexamajig separates the event ID by a single space only"
    if "// " in raw:
        return "space after '//' (OM's '// 00005' form): indexamajig wants 'file //5'"
    return None


def read_lst(path: str | os.PathLike, *, errors: str = "surrogateescape") -> Iterator[LstEntry]:
    """Parse a list file line by line (streaming; a 50k-line list is never held twice)."""
    try:
        handle = open(path, encoding="utf-8", errors=errors, newline="")
    except OSError as exc:
        raise FrameReadError(f"cannot open list {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    with handle:
        for lineno, line in enumerate(handle, start=1):
            parsed = parse_line(line)
            if parsed is not None:
                yield LstEntry(parsed[0], parsed[1], lineno)

