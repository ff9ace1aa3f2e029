"""The ``cxi-sidecar`` decision sink, for any host (OM, psana, ``score --sink``) deciding events one by one.

``--sink cxi-sidecar:DIR`` collects per-event scores and, on ``close()``,
writes one ``<stem>.cnn.h5`` per data file into ``DIR`` (beside each data
file when ``DIR`` is empty), in the layout of :mod:`.sidecar`
(``/entry_1/result_1/cnnHitScore``, ``cnnHit``, ``cnnError``). Options:
``path`` (the directory), ``suffix`` (``.cnn.h5``), ``dataset``.
Sinks follow the core protocol: ``write(ref, decision)`` and ``close()``;
the ``.lst`` sinks are the core's ``hits-lst`` / ``misses-lst``.
"""

from __future__ import annotations

from typing import Any


class SidecarSink:
    """Collects scores per data file and writes CXI-layout sidecars when closed."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)
        self._events: list = []

    def write(self, ref: Any, decision: Any) -> None:
        self._events.append((ref, decision))

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
            target = sidecar_path(path, output_dir=self.options.get("path") or None,
                                  suffix=self.options.get("suffix", ".cnn.h5"))
            write_sidecar(file_tags, target, {})
            written.append(target)
        self._events = []
        return written
