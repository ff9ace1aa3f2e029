"""Decision sinks of the CrystFEL adapter, for any host (OM, psana, Python) that decides events one by one.

``crystfel-lst``
    writes the events it is given as indexamajig ``.lst`` lines (``path //N``),
    filtered by decision; the file appears (atomically) on ``close()``.
    Options: ``path`` (required), ``include``: ``"hits"`` (default: hits and
    fail-open errors), ``"misses"``, ``"errors"`` or ``"all"``.
``cxi-sidecar``
    collects per-event scores and writes one ``<stem>.cnn.h5`` per data file on
    ``close()`` (see :mod:`.sidecar`). Options: ``output_dir`` (default: beside
    each data file), ``suffix`` (``.cnn.h5``), ``dataset``.

Both take ``write(decision, event=...)`` where ``event`` is an
:class:`~sfx_cnn_veto.io.events.EventRef` or a ``(path, "//N")`` pair.
"""

from __future__ import annotations

from typing import Any

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.events import EventRef

from sfx_cnn_veto_crystfel import atomic

_INCLUDE = ("hits", "misses", "errors", "all")


def _ref(event: Any) -> EventRef:
    if isinstance(event, EventRef):
        return event
    if isinstance(event, (tuple, list)) and len(event) == 2:
        return EventRef(str(event[0]), event[1] or None)
    if isinstance(event, str):
        return EventRef(event, None)
    raise ConfigError(f"sink: expected an EventRef or a (path, event) pair, got {event!r}")


class LstSink:
    """Writes decided events as ``.lst`` lines; the list appears when closed."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.path = options.get("path")
        if not self.path:
            raise ConfigError("crystfel-lst sink: option 'path' (the .lst to write) is required")
        self.include = options.get("include", "hits")
        if self.include not in _INCLUDE:
            raise ConfigError(f"crystfel-lst sink: include must be one of {', '.join(_INCLUDE)}, got {self.include!r}")
        self._handle = atomic.open_part(self.path)

    def write(self, decision: Any, event: Any = None) -> None:
        if event is None:
            raise ConfigError("crystfel-lst sink: write(decision, event=...) needs the event")
        wanted = {
            "all": True,
            "hits": decision.is_hit,  # hits and fail-open errors
            "misses": decision.label == "miss",
            "errors": decision.label == "error",
        }[self.include]
        if wanted:
            self._handle.write(_ref(event).lst_line() + "\n")

    def close(self) -> None:
        if self._handle.closed:
            return
        atomic.sync_close(self._handle)
        atomic.commit([self.path])


class SidecarSink:
    """Collects scores per data file and writes CXI-layout sidecars when closed."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)
        self._events: list = []

    def write(self, decision: Any, event: Any = None) -> None:
        if event is None:
            raise ConfigError("cxi-sidecar sink: write(decision, event=...) needs the event")
        self._events.append((_ref(event), decision))

    def close(self) -> list[str]:
        from sfx_cnn_veto.io.hdf5 import HDF5Source
        from sfx_cnn_veto.io.stream import canonical_event

        from sfx_cnn_veto_crystfel.sidecar import FileTags, _frame_index, sidecar_path, write_sidecar

        tags: dict[str, FileTags] = {}
        for ref, decision in self._events:
            if ref.file not in tags:
                opts = {"dataset": self.options["dataset"]} if self.options.get("dataset") else {}
                with HDF5Source(ref.file, opts) as src:
                    tags[ref.file] = FileTags.empty(ref.file, src.dataset_path, len(src.events()))
            index = _frame_index(canonical_event(ref.event))
            if index is not None and index < len(tags[ref.file].score):
                tags[ref.file].set(index, None if decision.error else decision.score, decision.is_hit, decision.error)
        written = []
        for path, file_tags in tags.items():
            target = sidecar_path(path, output_dir=self.options.get("output_dir"),
                                  suffix=self.options.get("suffix", ".cnn.h5"))
            write_sidecar(file_tags, target, {})
            written.append(target)
        self._events = []
        return written
