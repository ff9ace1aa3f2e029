"""CrystFEL streams (format 2.3): read chunks, copy them byte for byte, add header lines.

A stream is a preamble (``CrystFEL stream format 2.3``, the command line, the
geometry and cell between their ``----- Begin/End ... -----`` markers), then
chunks::

    ----- Begin chunk -----
    Image filename: /data/run_1.cxi
    Event: //3
    Image serial number: 4
    hit = 1
    indexed_by = mosflm-latt-nolatt-nocell
    num_peaks = 12
    Peaks from peak search
      fs/px   ss/px (1/d)/nm^-1   Intensity  Panel
      ...
    End of peak list
    --- Begin crystal
    ...
    --- End crystal
    ----- End chunk -----

The chunk header is the ``key = value`` / ``Key: value`` lines before the first
section (peak list, crystal). CrystFEL reads unknown ``key = value`` header
lines as copied header fields (``--copy-header``), so tags added there, such
as ``cnn_hit_score = 0.970000``, leave the stream readable by CrystFEL tools.

Files are read with ``newline=""`` and ``surrogateescape``: every byte,
including CRLF line ends and non-UTF-8 bytes, is copied unchanged.
With ``indexamajig -j N`` chunk order differs from list order: match chunks
by :attr:`Chunk.key` (filename + event), never by position.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator

from sfx_cnn_veto.errors import FrameReadError

log = logging.getLogger(__name__)

STREAM_MAGIC = "CrystFEL stream format"
CHUNK_BEGIN = "----- Begin chunk -----"
CHUNK_END = "----- End chunk -----"
PEAKS_BEGIN = "Peaks from peak search"
PEAKS_END = "End of peak list"
CRYSTAL_BEGIN = "--- Begin crystal"
CRYSTAL_END = "--- End crystal"
#: Lines that end a chunk's header part (the first section of the chunk body).
SECTION_STARTS = (PEAKS_BEGIN, CRYSTAL_BEGIN, "Reflections measured after indexing", CHUNK_END)

_KEY_VALUE = re.compile(r"^([^=:]+?)\s*(?: = |: )(.*)$")
_EVENT_INDEX = re.compile(r"^//0*(\d+)$")
#: indexamajig 0.12's event ID of a single-frame file (a CBF, a 2-D HDF5 data set)
SINGLE_FRAME_EVENT = "//"


def _bare(line: str) -> str:
    """A line without its terminator (``\\n`` or ``\\r\\n``)."""
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def canonical_event(event: str | None) -> str | None:
    """``"//00003"`` -> ``"//3"``; other event IDs (placeholders) unchanged.

    ``""`` and ``"//"`` -> ``None``: the one frame of a single-frame file
    (indexamajig 0.12 writes ``Event: //`` for a CBF or a 2-D HDF5 file, 0.9
    writes no ``Event:`` line).
    """
    if event is None:
        return None
    event = event.strip()
    if not event or event == SINGLE_FRAME_EVENT:
        return None
    match = _EVENT_INDEX.match(event)
    return f"//{int(match.group(1))}" if match else event


@dataclass
class Chunk:
    """One ``----- Begin chunk -----`` ... ``----- End chunk -----`` block.

    Attributes
    ----------
    lines : list of str
        The raw lines, terminators included, from the Begin line to the End
        line (to the end of the file for a truncated chunk).
    lineno : int
        Line number (1-based) of the Begin line.
    complete : bool
        ``False`` when the stream ends inside this chunk (a cut stream).
    header : dict
        ``key -> value`` of the header lines (``"Image filename"``, ``"hit"`` ...).
    """

    lines: list[str]
    lineno: int
    complete: bool = True
    header: dict[str, str] = field(default_factory=dict)
    header_end: int = 0  # index in ``lines`` of the first line after the header part
    num_crystals: int = 0
    peak_rows: int = 0
    has_peak_table: bool = False

    @property
    def filename(self) -> str | None:
        return self.header.get("Image filename")

    @property
    def event(self) -> str | None:
        """The event ID as written (``"//3"``), ``None`` when the chunk has no ``Event:`` line."""
        return self.header.get("Event") or None

    @property
    def key(self) -> tuple[str | None, str | None]:
        """``(filename, canonical event)``: what to match list entries and scores by."""
        return self.filename, canonical_event(self.event)

    @property
    def serial(self) -> int | None:
        return _int_or_none(self.header.get("Image serial number"))

    @property
    def hit(self) -> int | None:
        return _int_or_none(self.header.get("hit"))

    @property
    def num_peaks(self) -> int | None:
        """``num_peaks = N`` of the header; else the rows of the peak table; ``None`` if neither."""
        value = _int_or_none(self.header.get("num_peaks"))
        if value is not None:
            return value
        return self.peak_rows if self.has_peak_table else None

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def with_header_items(self, items: Iterable[tuple[str, str]], *, after: str = "hit") -> list[str]:
        """The chunk's lines with ``key = value`` header lines set.

        A key already in the header is replaced in place; new keys go right
        after the ``after = ...`` line (``hit``), else at the end of the
        header part. The line terminator of the chunk (``\\n`` or ``\\r\\n``)
        is reused. Nothing else changes.
        """
        items = list(items)
        newline = "\r\n" if self.lines and self.lines[0].endswith("\r\n") else "\n"
        lines = list(self.lines)
        wanted = {key for key, _ in items}
        # replace keys already there (a stream tagged twice keeps one copy)
        kept: list[str] = []
        for i, line in enumerate(lines):
            if 0 < i < self.header_end:
                match = _KEY_VALUE.match(_bare(line))
                if match and match.group(1) in wanted and " = " in line:
                    continue
            kept.append(line)
        removed = len(lines) - len(kept)
        header_end = self.header_end - removed
        insert_at = header_end
        for i in range(1, header_end):
            if _bare(kept[i]).startswith(f"{after} = "):
                insert_at = i + 1
                break
        new = [f"{key} = {value}{newline}" for key, value in items]
        return kept[:insert_at] + new + kept[insert_at:]


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _finish(chunk: Chunk) -> Chunk:
    """Fill header, header_end, crystal and peak counts from ``chunk.lines``."""
    in_header = True
    in_peaks = False
    header_end = len(chunk.lines)
    for i, line in enumerate(chunk.lines[1:], start=1):
        bare = _bare(line)
        if in_header:
            if bare.startswith(SECTION_STARTS):
                in_header = False
                header_end = i
            else:
                match = _KEY_VALUE.match(bare)
                if match:
                    chunk.header.setdefault(match.group(1), match.group(2).strip())
                continue
        if bare.startswith(PEAKS_BEGIN):
            in_peaks = True
            chunk.has_peak_table = True
            continue
        if in_peaks:
            if bare.startswith(PEAKS_END):
                in_peaks = False
            elif bare.strip() and not bare.lstrip().startswith("fs/px"):
                chunk.peak_rows += 1
            continue
        if bare.startswith(CRYSTAL_BEGIN):
            chunk.num_crystals += 1
    chunk.header_end = header_end
    return chunk


def iter_stream(source: str | os.PathLike | IO[str]) -> Iterator[str | Chunk]:
    """The stream in order: raw text (a ``str`` of one or more lines) outside chunks, and :class:`Chunk` s.

    Joining the ``str`` pieces and the chunks' :attr:`Chunk.text` gives back the
    file byte for byte. A stream cut inside a chunk yields that chunk with
    ``complete=False`` and logs a warning; it never raises for it.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            handle = open(source, encoding="utf-8", errors="surrogateescape", newline="")
        except OSError as exc:
            raise FrameReadError(f"cannot open stream {os.fspath(source)!r}: {exc.strerror or exc}") from exc
        name = os.fspath(source)
        close = True
    else:
        handle, name, close = source, getattr(source, "name", "<stream>"), False
    try:
        outside: list[str] = []
        chunk: Chunk | None = None
        for lineno, line in enumerate(handle, start=1):
            bare = _bare(line)
            if chunk is None:
                if bare == CHUNK_BEGIN:
                    if outside:
                        yield "".join(outside)
                        outside = []
                    chunk = Chunk([line], lineno)
                else:
                    outside.append(line)
                continue
            if bare == CHUNK_BEGIN:
                # a Begin line inside a chunk: the previous chunk was cut (e.g. a crashed writer)
                log.warning("%s:%d: chunk starting at line %d has no end line", name, lineno, chunk.lineno)
                chunk.complete = False
                yield _finish(chunk)
                chunk = Chunk([line], lineno)
                continue
            chunk.lines.append(line)
            if bare == CHUNK_END:
                yield _finish(chunk)
                chunk = None
        if chunk is not None:
            log.warning("%s: stream ends inside the chunk starting at line %d (cut stream)", name, chunk.lineno)
            chunk.complete = False
            yield _finish(chunk)
        if outside:
            yield "".join(outside)
    finally:
        if close:
            handle.close()


def iter_chunks(source: str | os.PathLike | IO[str], *, incomplete: bool = True) -> Iterator[Chunk]:
    """Every chunk of a stream, in file order (a cut last chunk with ``complete=False`` unless ``incomplete=False``)."""
    for piece in iter_stream(source):
        if isinstance(piece, Chunk) and (incomplete or piece.complete):
            yield piece


def read_preamble(source: str | os.PathLike) -> str:
    """The text before the first chunk (format line, command line, geometry, cell)."""
    for piece in iter_stream(source):
        return piece if isinstance(piece, str) else ""
    return ""


def stream_version(preamble: str) -> str | None:
    """``"2.3"`` from a preamble starting ``CrystFEL stream format 2.3``; ``None`` if absent."""
    for line in preamble.splitlines():
        if line.startswith(STREAM_MAGIC):
            return line[len(STREAM_MAGIC):].strip() or None
    return None


def peak_counts(source: str | os.PathLike) -> Iterator[tuple[str | None, str | None, int | None]]:
    """``(filename, event, num_peaks)`` for each complete chunk (event canonical, ``None`` if absent)."""
    for chunk in iter_chunks(source, incomplete=False):
        filename, event = chunk.key
        yield filename, event, chunk.num_peaks


# ---------------------------------------------------------------------------
# Writing (used by tests and the simulator to produce CrystFEL-format streams).

def format_chunk(
    filename: str,
    event: str | None,
    serial: int,
    *,
    peaks: Iterable[tuple[float, float, float, float, str]] = (),
    hit: int | None = None,
    indexed_by: str = "none",
    extra_header: Iterable[tuple[str, str]] = (),
    crystals: Iterable[str] = (),
    photon_energy_ev: float = 9500.0,
    camera_length_m: float = 0.1,
) -> str:
    """One chunk as indexamajig 0.10 writes it (format 2.3).

    ``peaks`` are ``(fs, ss, 1/d in nm^-1, intensity, panel)`` rows;
    ``crystals`` are the inner texts of ``--- Begin crystal`` blocks.
    """
    peaks = list(peaks)
    hit = int(len(peaks) > 0) if hit is None else int(hit)
    out = [CHUNK_BEGIN, f"Image filename: {filename}"]
    if event is not None:
        out.append(f"Event: {event}")
    out += [
        f"Image serial number: {serial}",
        f"hit = {hit}",
        f"indexed_by = {indexed_by}",
        f"photon_energy_eV = {photon_energy_ev:f}",
        "beam_divergence = 0.00e+00 rad",
        "beam_bandwidth = 1.00e-08 (fraction)",
        f"average_camera_length = {camera_length_m:f} m",
    ]
    out += [f"{key} = {value}" for key, value in extra_header]
    out.append(f"num_peaks = {len(peaks)}")
    out.append("peak_resolution = 0.000000 nm^-1 or 0.000000 A")
    out.append(PEAKS_BEGIN)
    out.append("  fs/px   ss/px (1/d)/nm^-1   Intensity  Panel")
    out += [f"{fs:7.2f} {ss:7.2f} {d:10.2f}  {i:10.2f}   {panel}" for fs, ss, d, i, panel in peaks]
    out.append(PEAKS_END)
    for crystal in crystals:
        out.append(CRYSTAL_BEGIN)
        out += crystal.splitlines()
        out.append(CRYSTAL_END)
    out.append(CHUNK_END)
    return "\n".join(out) + "\n"


def format_preamble(geometry: str = "", *, command: str = "indexamajig -i files.lst -o out.stream -g run.geom",
                    version: str = "2.3") -> str:
    """The stream preamble indexamajig writes: format line, generator, command line, geometry."""
    out = [f"{STREAM_MAGIC} {version}", "Generated by CrystFEL 0.10.2", command,
           "----- Begin geometry file -----"]
    out += geometry.splitlines()
    out.append("----- End geometry file -----")
    return "\n".join(out) + "\n"
