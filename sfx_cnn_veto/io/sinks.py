"""Built-in decision sinks: where per-event decisions go.

A sink is made by ``SinkSpec.create(options)`` (``options["path"]`` is the
``PATH`` of ``--sink NAME:PATH``) and has ``write(ref, decision)`` and
``close()``. Files are written to ``PATH.part`` and renamed on ``close()``,
so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import csv
from typing import Any

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io import files
from sfx_cnn_veto.types import SinkSpec

CSV_COLUMNS = ["file", "event", "score", "is_hit", "error"]


class _AtomicFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.handle = open(files.part_path(path), "w", newline="", encoding="utf-8", errors="surrogateescape")

    def close(self) -> None:
        if self.handle.closed:
            return
        files.sync_close(self.handle)
        files.commit([self.path])


class CsvSink:
    """``file,event,score,is_hit,error``: one row per event, in order."""

    def __init__(self, path: str | None = None, *, handle: Any = None) -> None:
        """Write to ``path`` atomically, or to an open ``handle`` (e.g. standard output)."""
        self._file = _AtomicFile(path) if handle is None else None
        self._writer = csv.writer(handle or self._file.handle, lineterminator="\n")
        self._writer.writerow(CSV_COLUMNS)

    def write(self, ref: Any, decision: Any) -> None:
        self._writer.writerow([
            ref.path, ref.event or "",
            "" if decision.error else f"{decision.score:.6f}",
            int(decision.is_hit), decision.error or "",
        ])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class LstSink:
    """An indexamajig event list of the hits (errors included: fail open), or of the misses."""

    def __init__(self, path: str, *, which: str = "hits") -> None:
        self._file = _AtomicFile(path)
        self._hits = which == "hits"

    def write(self, ref: Any, decision: Any) -> None:
        if decision.is_hit == self._hits:
            self._file.handle.write(ref.lst_line() + "\n")

    def close(self) -> None:
        self._file.close()


def _need_path(options: dict[str, Any], name: str) -> str:
    path = options.get("path")
    if not path:
        raise ConfigError(f"sink {name!r} needs a path: --sink {name}:PATH")
    return path


@hookimpl(trylast=True)
def sfxveto_sinks():
    return [
        SinkSpec("csv", lambda o: CsvSink(_need_path(o, "csv")), "CSV of file,event,score,is_hit,error"),
        SinkSpec("hits-lst", lambda o: LstSink(_need_path(o, "hits-lst"), which="hits"),
                 "indexamajig .lst of hits (and undecided frames)"),
        SinkSpec("misses-lst", lambda o: LstSink(_need_path(o, "misses-lst"), which="misses"),
                 "indexamajig .lst of misses"),
    ]
