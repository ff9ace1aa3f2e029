"""Hit lists of other hit finders (OM, Cheetah), read as events with their peak counts.

OM (``/abs/run.h5 // 0005``)
    One event a line: the file, a space, ``//``, a space and a zero-padded
    index. indexamajig cannot read this form (HOSTS.md): :func:`to_lst_line`
    writes ``/abs/run.h5 //5``. Extra whitespace-separated columns after the
    index (a peak count) are read if numeric.
Cheetah (``cleaned.txt``, ``frames.txt``)
    Comma-separated rows; a ``#`` header line names the columns. The file
    column is the one named ``filename`` (or ``eventname`` when no
    ``filename``), the event column ``stackSlice`` / ``cxi_stackSlice`` /
    ``event`` / ``frameNumber``, the peak count ``nPeaks`` / ``npeaks``.
    Without a header the columns are read as ``filename, event, npeaks``.
    These column names follow Cheetah's writers as we know them; check a real
    file of your Cheetah version with ``sfx-cnn-veto convert hitlist --dry-run``.
CrystFEL ``.lst``
    ``file //N`` lines (no peak counts).

:func:`iter_hitlist` yields :class:`HitEntry` ``(file, event, npeaks)`` for
each of them, sniffing the format from the content.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from typing import Iterator

from sfx_cnn_veto.errors import FrameReadError
from sfx_cnn_veto.io.lst import parse_line

_OM_LINE = re.compile(r"^(?P<file>.*?)\s*//\s*(?P<index>\d+)(?:\s+(?P<rest>.*))?$")
_FILE_COLUMNS = ("filename", "file", "path", "eventname", "event_name")
_EVENT_COLUMNS = ("cxi_stackslice", "stackslice", "stack_slice", "event", "eventid", "event_id",
                  "frame", "framenumber", "frame_number", "index")
_PEAK_COLUMNS = ("npeaks", "n_peaks", "num_peaks", "peaks")


@dataclass(frozen=True)
class HitEntry:
    """One event of a hit list: ``file``, canonical ``event`` (``"//5"`` or ``None``), ``npeaks`` or ``None``."""

    file: str
    event: str | None
    npeaks: int | None = None
    lineno: int = 0

    def lst_line(self) -> str:
        """The event as indexamajig reads it: ``file //5`` (or ``file`` for a single-frame file)."""
        return self.file if self.event is None else f"{self.file} {self.event}"

    def __iter__(self):  # (file, event, npeaks) unpacking
        return iter((self.file, self.event, self.npeaks))


def _event(index: str | int | None) -> str | None:
    if index is None:
        return None
    text = str(index).strip()
    if text == "":
        return None
    if text.startswith("//"):
        text = text[2:].strip()
    try:
        return f"//{int(float(text))}"
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text.strip()))
    except ValueError:
        return None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "", name.strip().lower().replace("eventdata->", "").replace("->", "_"))


def _pick(columns: list[str], candidates: tuple[str, ...]) -> int | None:
    for candidate in candidates:
        if candidate in columns:
            return columns.index(candidate)
    return None


def sniff_format(path: str | os.PathLike) -> str:
    """``"csv"`` (Cheetah), ``"om"`` (``file // 0005``) or ``"lst"`` (CrystFEL) from the first lines."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        for line in handle:
            bare = line.rstrip("\r\n")
            if not bare.strip():
                continue
            if bare.startswith("#"):
                if "," in bare:
                    return "csv"
                continue
            if "," in bare:
                return "csv"
            if re.search(r"//\s+\d", bare) or re.search(r"//\d+\s+\S", bare):
                return "om"
            return "lst"
    return "lst"


def iter_hitlist(path: str | os.PathLike, *, fmt: str = "auto") -> Iterator[HitEntry]:
    """Every event of a hit list with its peak count (``None`` where the list has none).

    Parameters
    ----------
    path : str
        OM, Cheetah (``cleaned.txt``/``frames.txt``) or CrystFEL ``.lst`` file.
    fmt : {"auto", "om", "csv", "lst"}
        The format; ``"auto"`` sniffs it (:func:`sniff_format`).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FrameReadError(f"{path}: hit list not found")
    fmt = sniff_format(path) if fmt == "auto" else fmt
    if fmt not in ("om", "csv", "lst"):
        raise FrameReadError(f"{path}: unknown hit-list format {fmt!r} (expected om, csv or lst)")
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        if fmt == "csv":
            yield from _iter_csv(handle, path)
            return
        for lineno, line in enumerate(handle, start=1):
            bare = line.rstrip("\r\n")
            if fmt == "om":
                if not bare.strip() or bare.lstrip().startswith("#"):
                    continue
                match = _OM_LINE.match(bare.strip())
                if match is None:
                    yield HitEntry(bare.strip(), None, None, lineno)
                    continue
                rest = (match.group("rest") or "").split()
                yield HitEntry(match.group("file"), _event(match.group("index")),
                               _int(rest[0]) if rest else None, lineno)
            else:
                parsed = parse_line(line)
                if parsed is None:
                    continue
                yield HitEntry(parsed[0], parsed[1] if parsed[1] is None else _event(parsed[1]) or parsed[1],
                               None, lineno)


def _iter_csv(handle: io.TextIOBase, path: str) -> Iterator[HitEntry]:
    file_col, event_col, peak_col = 0, 1, 2
    header_seen = False
    for lineno, line in enumerate(handle, start=1):
        bare = line.rstrip("\r\n")
        if not bare.strip():
            continue
        if bare.startswith("#"):
            columns = [_norm(c) for c in next(csv.reader([bare.lstrip("# ")]))]
            if not header_seen and len(columns) > 1:
                header_seen = True
                file_col = _pick(columns, _FILE_COLUMNS)
                event_col = _pick(columns, _EVENT_COLUMNS)
                peak_col = _pick(columns, _PEAK_COLUMNS)
                if file_col is None:
                    raise FrameReadError(f"{path}:{lineno}: no file-name column in header {bare!r}")
            continue
        row = [cell.strip() for cell in next(csv.reader([bare]))]
        if not header_seen and lineno == 1 and _pick([_norm(c) for c in row], _FILE_COLUMNS) is not None:
            columns = [_norm(c) for c in row]  # a header without '#'
            header_seen = True
            file_col = _pick(columns, _FILE_COLUMNS)
            event_col = _pick(columns, _EVENT_COLUMNS)
            peak_col = _pick(columns, _PEAK_COLUMNS)
            continue
        if file_col is None or file_col >= len(row):
            raise FrameReadError(f"{path}:{lineno}: expected a file name in column {file_col}, got {bare!r}")
        event = _event(row[event_col]) if event_col is not None and event_col < len(row) else None
        npeaks = _int(row[peak_col]) if peak_col is not None and peak_col < len(row) else None
        yield HitEntry(row[file_col], event, npeaks, lineno)


def peak_counts(path: str | os.PathLike, *, fmt: str = "auto") -> Iterator[tuple[str, str | None, int | None]]:
    """``(file, event, npeaks)`` of each entry of a hit list (the tuple form of :func:`iter_hitlist`)."""
    for entry in iter_hitlist(path, fmt=fmt):
        yield entry.file, entry.event, entry.npeaks


def to_lst_line(entry: HitEntry) -> str:
    """indexamajig's form of a hit-list entry: ``file //5``."""
    return entry.lst_line()
