"""What a psana user keeps from a veto pass: a per-event table and a hit list.

- The table (HDF5) has one row per event: ``timestamp`` (uint64),
  ``veto/score`` (float, NaN when undecided), ``veto/is_hit`` (0/1, the CNN's
  verdict; 1 when undecided), ``veto/error`` (0/1), and the live audit's
  ``veto/audited`` (0/1), ``veto/audit_peaks`` (psana's peakfinder8 count of an
  audited event; -1 when not audited or when peakfinder8 failed) and
  ``veto/rescued`` (0/1: vetoed by the CNN, kept because peakfinder8 calls it
  a hit; see :mod:`sfx_cnn_veto.core.audit`). Under psana2 it is written with psana's
  own ``ds.smalldata(filename=..., batch_size=...)``, so under MPI every
  big-data rank sends its rows to the smalldata servers and the file is joined
  at the end (rows are not in time order: sort by ``timestamp``). Without
  ``ds.smalldata`` (LCLS-I psana, or no DataSource) it is written with h5py,
  serially, in the same layout, plus ``veto/error_text``.
- The hit list is a ``.npy`` array of the kept events' timestamps (uint64,
  sorted): hits, undecided events and rescued ones, exactly what psana2 takes
  for a second pass that reads only hits::

      ds = DataSource(exp=..., run=..., dir=..., timestamps="hits.npy")

Usage::

    table = VetoTable(ds, "veto.h5", hits="hits.npy")
    for evt, decision in veto.events(run):
        table.record(evt, decision)
    table.done()       # on every rank, like smd.done()

With the audit, ``for evt, decision, result in veto.audited(run, audit):
table.record(evt, decision, result)``; after ``done()`` the process holding the
joined table gets the counts of every rank from it (:func:`audit_counts`).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

#: How many error reasons are logged before they are only counted.
MAX_LOGGED_ERRORS = 20


class VetoTable:
    """Per-event veto table (psana smalldata or h5py) and hit list.

    Parameters
    ----------
    ds : psana DataSource or None
        A psana2 DataSource: the table goes through ``ds.smalldata``. ``None``
        (or a DataSource without working ``smalldata``, like psana2's
        ``files=`` mode or LCLS-I psana): h5py, one process only.
    filename : path
        The HDF5 table.
    hits : path, optional
        Where to write the hit list (``.npy``, sorted uint64 timestamps),
        made from the finished table by the one process that holds it.
    batch_size : int
        Events per smalldata send (psana's ``batch_size``).
    timestamp : callable, optional
        ``evt -> int`` (default ``evt.timestamp``; give
        :meth:`PsanaVeto.timestamp` for psana1 events).
    fiducials : callable, optional
        ``evt -> int``: adds a ``fiducials`` column (h5py table only; give
        :meth:`PsanaVeto.fiducials` for psana1, whose ``idx`` mode addresses
        events by time and fiducials).
    """

    def __init__(
        self,
        ds: Any,
        filename: str | os.PathLike,
        *,
        hits: str | os.PathLike | None = None,
        batch_size: int = 100,
        timestamp: Callable[[Any], int] | None = None,
        fiducials: Callable[[Any], int] | None = None,
    ) -> None:
        self.filename = os.path.abspath(os.fspath(filename))
        self.hits_path = None if hits is None else os.path.abspath(os.fspath(hits))
        self._timestamp = timestamp or (lambda evt: int(evt.timestamp))
        self._fiducials = fiducials
        self.counts = {"hit": 0, "miss": 0, "error": 0}
        self._errors_logged = 0
        smalldata = getattr(ds, "smalldata", None) if ds is not None else None
        # psana2's files= DataSource has smalldata() but no smalldata_obj behind it (4.3.4): h5py then.
        if callable(smalldata) and hasattr(ds, "smalldata_obj"):
            self._smd = smalldata(filename=self.filename, batch_size=int(batch_size))
            self._h5 = None
        else:
            self._smd = None
            self._h5 = _H5Table(self.filename, fiducials=fiducials is not None)
        self._done = False

    def record(self, evt: Any, decision: Any, audit: Any = None) -> None:
        """Add one event's row; ``audit``: its :class:`~sfx_cnn_veto.core.audit.AuditResult`, if any."""
        self.counts[decision.label] += 1
        if decision.error and self._errors_logged < MAX_LOGGED_ERRORS:
            self._errors_logged += 1
            log.warning("event %s: undecided, kept (%s)", self._safe_ts(evt), decision.error)
        audited = audit is not None and audit.audited
        if audited and audit.error and self._errors_logged < MAX_LOGGED_ERRORS:
            self._errors_logged += 1
            log.warning("event %s: the audit's peakfinder8 failed (%s)", self._safe_ts(evt), audit.error)
        row = {
            "score": float(decision.score),
            "is_hit": np.uint8(bool(decision.is_hit)),
            "error": np.uint8(decision.error is not None),
            "audited": np.uint8(audited),
            "audit_peaks": np.int32(audit.peaks if audited and audit.peaks is not None else -1),
            "rescued": np.uint8(audit is not None and audit.rescued),
        }
        if self._smd is not None:
            self._smd.event(evt, {"veto": row})
        else:
            if self._fiducials is not None:
                row["fiducials"] = np.uint32(self._fiducials(evt) or 0)
            self._h5.append(self._timestamp(evt), row, decision.error or "")

    def _safe_ts(self, evt: Any) -> Any:
        try:
            return self._timestamp(evt)
        except Exception:  # noqa: BLE001
            return "?"

    def owns_file(self) -> bool:
        """Whether this process holds the finished table (writes the hit list)."""
        if self._smd is None:
            return True
        kind = getattr(self._smd, "_type", "serial")
        if kind == "serial":
            return True
        # psana2 parallel mode: the first smalldata client joins the servers' files in done().
        comm = getattr(self._smd, "_client_comm", None)
        return kind == "client" and comm is not None and comm.Get_rank() == 0

    def done(self) -> str | None:
        """Finish the table (``smd.done()`` under psana2) and write the hit list.

        Call it on every rank. Returns the hit-list path on the process that
        wrote it, else None.
        """
        if self._done:
            return None
        self._done = True
        if self._smd is not None:
            self._smd.done()
        else:
            self._h5.close()
        if self.hits_path is None or not self.owns_file():
            return None
        stamps = hit_timestamps(self.filename)
        write_hits(self.hits_path, stamps)
        log.info("%d hits of %d events -> %s", stamps.size, count_rows(self.filename), self.hits_path)
        return self.hits_path


class _H5Table:
    """The table's layout written with h5py (no psana smalldata)."""

    def __init__(self, filename: str, *, fiducials: bool = False) -> None:
        import h5py

        self._file = h5py.File(filename, "w")
        f = self._file
        self._ts = f.create_dataset("timestamp", (0,), maxshape=(None,), dtype=np.uint64, chunks=(1024,))
        self._cols = {
            "score": f.create_dataset("veto/score", (0,), maxshape=(None,), dtype=np.float64, chunks=(1024,)),
            "is_hit": f.create_dataset("veto/is_hit", (0,), maxshape=(None,), dtype=np.uint8, chunks=(1024,)),
            "error": f.create_dataset("veto/error", (0,), maxshape=(None,), dtype=np.uint8, chunks=(1024,)),
        }
        for name, dtype in (("audited", np.uint8), ("audit_peaks", np.int32), ("rescued", np.uint8)):
            self._cols[name] = f.create_dataset(f"veto/{name}", (0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
        if fiducials:
            self._cols["fiducials"] = f.create_dataset(
                "fiducials", (0,), maxshape=(None,), dtype=np.uint32, chunks=(1024,)
            )
        self._text = f.create_dataset(
            "veto/error_text", (0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(1024,)
        )
        self._rows: list = []

    def append(self, timestamp: int, row: dict, text: str) -> None:
        self._rows.append((timestamp, row, text))
        if len(self._rows) >= 1024:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        n0, k = self._ts.shape[0], len(self._rows)
        for ds in (self._ts, self._text, *self._cols.values()):
            ds.resize((n0 + k,))
        self._ts[n0:] = np.array([r[0] for r in self._rows], dtype=np.uint64)
        for name, ds in self._cols.items():
            ds[n0:] = np.array([r[1][name] for r in self._rows], dtype=ds.dtype)
        self._text[n0:] = [r[2] for r in self._rows]
        self._rows = []

    def close(self) -> None:
        self.flush()
        self._file.close()


def read_table(filename: str | os.PathLike) -> dict[str, np.ndarray]:
    """The table's columns, sorted by timestamp.

    ``timestamp, score, is_hit, error`` and the audit's ``audited, audit_peaks, rescued`` (tables written
    before the audit: not audited, -1, 0), plus ``fiducials`` (psana1).
    """
    import h5py

    with h5py.File(os.fspath(filename), "r") as f:
        if "timestamp" not in f:
            return {k: np.empty(0) for k in ("timestamp", "score", "is_hit", "error")}
        ts = np.asarray(f["timestamp"][:], dtype=np.uint64)
        cols = {
            "timestamp": ts,
            "score": np.asarray(f["veto/score"][:], dtype=np.float64),
            "is_hit": np.asarray(f["veto/is_hit"][:]).astype(bool),
            "error": np.asarray(f["veto/error"][:]).astype(bool),
        }
        n = ts.size
        cols["audited"] = np.asarray(f["veto/audited"][:]).astype(bool) if "veto/audited" in f else np.zeros(n, bool)
        cols["audit_peaks"] = (np.asarray(f["veto/audit_peaks"][:], dtype=np.int64) if "veto/audit_peaks" in f
                               else np.full(n, -1, np.int64))
        cols["rescued"] = np.asarray(f["veto/rescued"][:]).astype(bool) if "veto/rescued" in f else np.zeros(n, bool)
        if "fiducials" in f:
            cols["fiducials"] = np.asarray(f["fiducials"][:], dtype=np.uint32)
    order = np.argsort(ts, kind="stable")
    return {k: v[order] for k, v in cols.items()}


def count_rows(filename: str | os.PathLike) -> int:
    return int(read_table(filename)["timestamp"].size)


def kept(table: dict[str, np.ndarray]) -> np.ndarray:
    """Which rows are kept: the CNN's hits, undecided events (fail open) and those the audit rescued."""
    return table["is_hit"] | table["rescued"]


def hit_timestamps(filename: str | os.PathLike) -> np.ndarray:
    """Sorted timestamps of the table's kept events (:func:`kept`)."""
    table = read_table(filename)
    return np.unique(table["timestamp"][kept(table)]).astype(np.uint64)


def hit_rows(filename: str | os.PathLike) -> dict[str, np.ndarray]:
    """The table's kept rows (:func:`kept`), sorted: for a psana1 ``idx`` second pass."""
    table = read_table(filename)
    keep = kept(table)
    return {k: v[keep] for k, v in table.items()}


def audit_counts(filename: str | os.PathLike, *, fraction: float, min_peaks: int | None = None,
                 target_sensitivity: float | None = None):
    """The audit's :class:`~sfx_cnn_veto.core.audit.AuditCounts` from a finished table.

    Under MPI the joined table holds every rank's rows, so this is the merge of every rank's counts; the
    same events are audited serially (the draw is a hash of the timestamp). Undecided rows are not counted
    (as :class:`~sfx_cnn_veto.core.audit.Audit` does); an audited row with ``audit_peaks`` -1 is an audit error.
    ``fraction``: the audit's (recorded in ``audit.json``); ``min_peaks`` (default 11) and
    ``target_sensitivity`` (default 0.98) as the audit that wrote the table used.
    """
    from sfx_cnn_veto.core.audit import DEFAULT_MIN_PEAKS, DEFAULT_TARGET, AuditCounts

    min_peaks = DEFAULT_MIN_PEAKS if min_peaks is None else int(min_peaks)
    target = DEFAULT_TARGET if target_sensitivity is None else float(target_sensitivity)
    table = read_table(filename)
    counts = AuditCounts(audit_fraction=float(fraction), target_sensitivity=target)
    for is_hit, error, audited, peaks in zip(table["is_hit"], table["error"], table["audited"],
                                             table["audit_peaks"]):
        if error:
            continue
        verdict = None if audited and peaks < 0 else bool(peaks >= min_peaks)
        counts.add(vetoed=not is_hit, audited=bool(audited), pf8_hit=verdict)
    return counts


def write_hits(path: str | os.PathLike, timestamps) -> str:
    """Write a hit list: a ``.npy`` of sorted uint64 timestamps (psana2's ``timestamps=`` format)."""
    path = os.fspath(path)
    if not path.endswith(".npy"):
        raise ValueError(f"hit list: expected a .npy path (psana2 loads it with np.load), got {path}")
    stamps = np.unique(np.asarray(list(timestamps), dtype=np.uint64))
    tmp = path[:-4] + ".part.npy"
    np.save(tmp, stamps)
    os.replace(tmp, path)
    return path


def read_hits(path: str | os.PathLike) -> np.ndarray:
    return np.asarray(np.load(os.fspath(path)), dtype=np.uint64)
