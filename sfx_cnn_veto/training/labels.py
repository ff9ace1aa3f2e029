"""Labels: peak counts per event and the hit/miss rules of the paper and the poster.

The labels CSV has exactly the columns ``file,event,run,num_peaks,label``:
``label`` is 1 (hit), 0 (miss) or empty (ambiguous: left out of training and
scoring); ``num_peaks`` is empty where the event could not be read or has no
count (such rows are kept, never dropped, and warned about).

Peak counts come from a counter (``sfxveto_labelers``, default OM's compiled
peakfinder8) run on the full frame, or from counts users already have: a
CrystFEL stream (``num_peaks`` per chunk, matched by filename + event),
Cheetah/OM ``cleaned.txt``/``frames.txt``, or CXI ``/entry_1/result_1/nPeaks``.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError
# the masks live in io.masks (the veto applies them too); re-exported here for the labeller

COLUMNS = ("file", "event", "run", "num_peaks", "label")

#: The paper's rule: fewer than 2 peaks is a miss, more than 10 a hit.
PAPER_MISS_BELOW = 2
PAPER_HIT_ABOVE = 10


@dataclass
class LabelRow:
    """One event of a labels file."""

    file: str
    event: str | None
    run: str
    num_peaks: int | None
    label: int | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.file, self.event or "")


# ---------------------------------------------------------------------------
# Rules

def paper_rule(counts: Sequence[int | None], *, miss_below: float = PAPER_MISS_BELOW,
               hit_above: float = PAPER_HIT_ABOVE) -> list[int | None]:
    """``0`` if ``n < miss_below``, ``1`` if ``n > hit_above``, else ``None`` (ambiguous or no count)."""
    if miss_below > hit_above + 1:
        raise ConfigError(f"paper rule: miss_below ({miss_below}) must not exceed hit_above + 1 ({hit_above + 1})")
    out: list[int | None] = []
    for n in counts:
        if n is None:
            out.append(None)
        elif n < miss_below:
            out.append(0)
        elif n > hit_above:
            out.append(1)
        else:
            out.append(None)
    return out


def percentile_rule(counts: Sequence[int | None], *, percentile: float = 25.0) -> list[int | None]:
    """The poster's rule: the bottom ``percentile`` % of counts are misses, the top ``percentile`` % hits.

    Quantiles are taken over the events with a count; an event at or below the
    lower quantile is a miss, one at or above the upper quantile (and above the
    lower one) a hit, the rest ambiguous.
    """
    if not 0 < percentile < 50:
        raise ConfigError(f"percentile rule: expected 0 < percentile < 50, got {percentile}")
    values = np.array([n for n in counts if n is not None], dtype=np.float64)
    if values.size == 0:
        return [None] * len(counts)
    low = float(np.percentile(values, percentile))
    high = float(np.percentile(values, 100.0 - percentile))
    out: list[int | None] = []
    for n in counts:
        if n is None:
            out.append(None)
        elif n <= low:
            out.append(0)
        elif n >= high:
            out.append(1)
        else:
            out.append(None)
    return out


# ---------------------------------------------------------------------------
# CSV

def write_labels(path: str, rows: Iterable[LabelRow]) -> int:
    """Write the labels CSV atomically; returns the number of rows."""
    tmp = path + ".part"
    n = 0
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # file names are kept byte for byte (undecodable bytes of a list pass through, as in filter-lst)
    with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([
                row.file,
                row.event or "",
                row.run,
                "" if row.num_peaks is None else int(row.num_peaks),
                "" if row.label is None else int(row.label),
            ])
            n += 1
    os.replace(tmp, path)
    return n


def read_labels(path: str) -> list[LabelRow]:
    """Read a labels CSV written by :func:`write_labels` (or by hand, same columns)."""
    try:
        handle = open(path, newline="", encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"cannot open labels file {path!r}: {exc.strerror or exc}") from exc
    rows: list[LabelRow] = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ConfigError(
                f"{path}: expected columns {','.join(COLUMNS)}, got {','.join(reader.fieldnames or ())}"
            )
        for lineno, rec in enumerate(reader, start=2):
            try:
                num = rec["num_peaks"].strip()
                lab = rec["label"].strip()
                label = None if lab == "" else int(lab)
                if label not in (None, 0, 1):
                    raise ValueError(f"label {lab!r} is not 0, 1 or empty")
                rows.append(LabelRow(rec["file"], rec["event"].strip() or None, rec["run"],
                                     None if num == "" else int(float(num)), label))
            except (ValueError, AttributeError) as exc:
                raise ConfigError(f"{path}:{lineno}: {exc}") from exc
    return rows


def runs_of(rows: Iterable[LabelRow]) -> list[str]:
    """Run names in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.setdefault(row.run, None)
    return list(seen)


def parse_runs(text: str | None) -> list[str] | None:
    """``"run90,run91"`` -> ``["run90", "run91"]`` (``None`` stays ``None``)."""
    if text is None:
        return None
    runs = [r.strip() for r in text.split(",") if r.strip()]
    if not runs:
        raise ConfigError("expected a comma-separated list of run names, got an empty one")
    return runs


def select_runs(rows: Sequence[LabelRow], runs: Sequence[str] | None, *, what: str = "runs") -> list[LabelRow]:
    if runs is None:
        return list(rows)
    have = set(runs_of(rows))
    unknown = [r for r in runs if r not in have]
    if unknown:
        raise ConfigError(f"{what}: no run {', '.join(unknown)} in the labels (have: {', '.join(runs_of(rows))})")
    wanted = set(runs)
    return [row for row in rows if row.run in wanted]


# ---------------------------------------------------------------------------
# Peak counts users already have

def _norm_event(event: str | None) -> str:
    """Canonical event key: ``//5``, ``// 0005`` and ``5`` all become ``//5``; no event ``""``."""
    if event is None:
        return ""
    text = str(event).strip()
    if text in ("", "(none)", "//"):  # "//": indexamajig 0.12's event of a single-frame file
        return ""
    match = re.fullmatch(r"(.*?)//\s*0*(\d+)", text)
    if match:
        return f"{match.group(1)}//{int(match.group(2))}"
    if re.fullmatch(r"\d+", text):
        return f"//{int(text)}"
    return text


class PeakCounts:
    """Peak counts by ``(filename, event)``, matched on the full path first, then on the base name.

    ``base``: the directory relative file names are relative to (a stream's: where indexamajig
    is taken to have run); they then also match as absolute paths.
    """

    def __init__(self, source: str, *, base: str | None = None) -> None:
        self.source = source
        self.base = base
        self._full: dict[tuple[str, str], int] = {}
        self._base: dict[tuple[str, str], list[int]] = {}

    def add(self, filename: str, event: str | None, count: int) -> None:
        key_event = _norm_event(event)
        self._full[(os.path.normpath(filename), key_event)] = int(count)
        if self.base is not None and not os.path.isabs(filename):
            self._full[(os.path.normpath(os.path.join(self.base, filename)), key_event)] = int(count)
        self._base.setdefault((os.path.basename(filename), key_event), []).append(int(count))

    def __len__(self) -> int:
        return len(self._full)

    def get(self, filename: str, event: str | None) -> int | None:
        key_event = _norm_event(event)
        hit = self._full.get((os.path.normpath(filename), key_event))
        if hit is not None:
            return hit
        candidates = self._base.get((os.path.basename(filename), key_event))
        if candidates and len(candidates) == 1:
            return candidates[0]
        return None


def read_stream_counts(path: str) -> PeakCounts:
    """``num_peaks`` of every chunk of a CrystFEL stream, keyed by ``Image filename`` + ``Event``.

    Parsed by :mod:`sfx_cnn_veto.io.stream`; chunks may be in any order
    (``indexamajig -j N``): they are matched by name, never by position. A
    single-frame file's chunk (``Event: //``, or no ``Event:`` line) matches
    the file's list line without an event. Relative file names match as
    written (list line with the ``-x`` prefix) or relative to the stream's directory.
    """
    from sfx_cnn_veto.errors import VetoError
    from sfx_cnn_veto.io.stream import peak_counts

    counts = PeakCounts(path, base=os.path.dirname(os.path.abspath(path)))
    if not os.path.exists(path):
        raise ConfigError(f"cannot open stream {path!r}: no such file")
    try:
        for filename, event, num in peak_counts(path):
            if filename is not None and num is not None:
                counts.add(filename, event, num)
    except (OSError, VetoError) as exc:
        raise ConfigError(f"cannot read stream {path!r}: {exc}") from exc
    return counts


def read_hitlist_counts(path: str) -> PeakCounts:
    """Peak counts of a Cheetah ``cleaned.txt`` / OM ``frames.txt`` style table (:mod:`sfx_cnn_veto.io.hitlists`)."""
    from sfx_cnn_veto.errors import VetoError
    from sfx_cnn_veto.io.hitlists import iter_hitlist

    counts = PeakCounts(path)
    try:
        for entry in iter_hitlist(path):
            if entry.npeaks is not None:
                counts.add(entry.file, entry.event, entry.npeaks)
    except (OSError, VetoError) as exc:
        raise ConfigError(f"cannot read hit list {path!r}: {exc}") from exc
    if len(counts) == 0:
        raise ConfigError(f"{path}: no peak counts found (expected a Cheetah/OM table with an nPeaks column)")
    return counts


CXI_NPEAKS = "/entry_1/result_1/nPeaks"


def read_cxi_counts(path: str, dataset: str = CXI_NPEAKS) -> list[int]:
    """``nPeaks`` per frame of a CXI file (Cheetah/OM/psocake)."""
    import h5py
    import hdf5plugin  # noqa: F401 - filters for compressed masks

    with h5py.File(path, "r", locking=False) as handle:
        if dataset not in handle:
            raise ConfigError(f"{path}: no {dataset} in the file")
        return [int(v) for v in np.asarray(handle[dataset]).ravel()]


def fraction(n: int, d: int) -> float:
    return float(n) / d if d else math.nan


def summarize(rows: Sequence[LabelRow]) -> Iterator[tuple[str, int, int, int, int, int]]:
    """``(run, events, hits, misses, ambiguous, unreadable)`` per run."""
    for run in runs_of(rows):
        sel = [r for r in rows if r.run == run]
        yield (run, len(sel), sum(r.label == 1 for r in sel), sum(r.label == 0 for r in sel),
               sum(r.label is None and r.num_peaks is not None for r in sel),
               sum(r.num_peaks is None for r in sel))
