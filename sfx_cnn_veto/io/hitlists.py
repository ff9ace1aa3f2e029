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
OM adapter decisions (``cnn_veto.decisions_file``) and ``score`` CSVs
    A header row without ``#``: ``event_id`` (``file // 0005``, one column),
    ``num_peaks``, and the decision ``frame_is_hit`` / ``is_hit``: rows that
    are misses carry ``is_hit=False`` (``convert hitlist`` leaves them out).
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
#: OM's event id, ``file // 0005`` in one column (OM's own event lists, the OM adapter's decisions file)
_EVENT_ID_COLUMNS = ("event_id", "eventid")
#: a decision per row (the OM adapter's decisions file, ``score``'s CSV): 0 = a miss, not a hit of the list
_HIT_COLUMNS = ("frame_is_hit", "is_hit")


@dataclass(frozen=True)
class HitEntry:
    """One event of a hit list: ``file``, canonical ``event`` (``"//5"`` or ``None``), ``npeaks`` or ``None``.

    ``is_hit``: the row's decision where the table has one (``frame_is_hit``, ``is_hit``); False for
    a miss, which a hit list made from the table leaves out; None where the table has no such column.
    """

    file: str
    event: str | None
    npeaks: int | None = None
    lineno: int = 0
    is_hit: bool | None = None

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


@dataclass(frozen=True)
class _Columns:
    """Where a table's columns are: file, event, peak count, OM's combined ``event_id``, the hit flag."""

    file: int | None = 0
    event: int | None = 1
    peaks: int | None = 2
    event_id: int | None = None
    hit: int | None = None


def _header(cells: list[str]) -> _Columns | None:
    """The columns a header row names, or None when it names none this module knows (a data row)."""
    names = [_norm(c) for c in cells]
    file_col = _pick(names, _FILE_COLUMNS)
    # OM's decisions file (the veto's OM adapter, decisions_file): no file column, "event_id" = "file // 0005"
    event_id = _pick(names, _EVENT_ID_COLUMNS) if file_col is None else None
    event_col = None if event_id is not None else _pick(names, _EVENT_COLUMNS)
    cols = _Columns(file_col, event_col, _pick(names, _PEAK_COLUMNS), event_id, _pick(names, _HIT_COLUMNS))
    if all(v is None for v in (cols.file, cols.event, cols.peaks, cols.event_id, cols.hit)):
        return None
    return cols


def _iter_csv(handle: io.TextIOBase, path: str) -> Iterator[HitEntry]:
    cols = _Columns()
    header_seen = False
    for lineno, line in enumerate(handle, start=1):
        bare = line.rstrip("\r\n")
        if not bare.strip():
            continue
        cells = next(csv.reader([bare.lstrip("# ") if bare.startswith("#") else bare]))
        if not header_seen and (bare.startswith("#") or lineno == 1):
            found = _header(cells) if len(cells) > 1 else None
            if found is not None:  # a header, with '#' (Cheetah) or without (OM's decisions, scores CSVs)
                header_seen, cols = True, found
                if cols.file is None and cols.event_id is None:
                    raise FrameReadError(f"{path}:{lineno}: no file-name column in header {bare!r}")
                continue
        if bare.startswith("#"):
            continue
        yield _row_entry([cell.strip() for cell in cells], cols, path, lineno, bare)


def _row_entry(row: list[str], cols: _Columns, path: str, lineno: int, bare: str) -> HitEntry:
    def cell(index: int | None) -> str | None:
        return row[index] if index is not None and index < len(row) else None

    if cols.event_id is not None:
        match = _OM_LINE.match(cell(cols.event_id) or "")
        if match is None:
            raise FrameReadError(f"{path}:{lineno}: expected an OM event id 'file // 0005' in column "
                                 f"{cols.event_id}, got {bare!r}")
        file, event = match.group("file"), _event(match.group("index"))
    else:
        file = cell(cols.file)
        if file is None:
            raise FrameReadError(f"{path}:{lineno}: expected a file name in column {cols.file}, got {bare!r}")
        event = _event(cell(cols.event))
    flag = cell(cols.hit)
    is_hit = None if flag in (None, "") else _int(flag) != 0
    return HitEntry(file, event, _int(cell(cols.peaks)), lineno, is_hit)


def peak_counts(path: str | os.PathLike, *, fmt: str = "auto") -> Iterator[tuple[str, str | None, int | None]]:
    """``(file, event, npeaks)`` of each entry of a hit list (the tuple form of :func:`iter_hitlist`)."""
    for entry in iter_hitlist(path, fmt=fmt):
        yield entry.file, entry.event, entry.npeaks


def to_lst_line(entry: HitEntry) -> str:
    """indexamajig's form of a hit-list entry: ``file //5``."""
    return entry.lst_line()
