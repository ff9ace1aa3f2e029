"""Open files through the reader plugins, expand lists into events, read frames.

:class:`FrameStore` keeps a few files open (LRU), so a list of thousands of
``file //N`` lines over a handful of files opens each file once.
"""

from __future__ import annotations

import fnmatch
import os
from collections import OrderedDict
from typing import Any, Iterable, Iterator

import numpy as np

from sfx_cnn_veto import manager
from sfx_cnn_veto.errors import FrameReadError
from sfx_cnn_veto.io.base import FrameSource, Region
from sfx_cnn_veto.io.events import EventRef
from sfx_cnn_veto.io.lst import LstEntry, read_lst, resolve_path

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def choose_reader(path: str, options: dict[str, Any] | None = None, pm=None) -> str:
    """The name of the reader for ``path``: a plugin's choice, else file patterns, else sniffing."""
    options = options or {}
    if options.get("reader"):
        return options["reader"]
    chosen = manager.select_reader(path, options, pm=pm)
    if chosen:
        return chosen
    name = os.path.basename(path).lower()
    matches = [
        spec
        for spec in manager.readers(pm).values()
        if any(fnmatch.fnmatch(name, pattern) for pattern in spec.patterns)
    ]
    if matches:
        return max(matches, key=lambda spec: spec.priority).name
    try:
        with open(path, "rb") as handle:
            if handle.read(8) == _HDF5_SIGNATURE:
                return "hdf5"
    except OSError:
        pass
    return "fabio"


class FrameStore:
    """Reads frames of :class:`EventRef` s, keeping up to ``max_open`` files open.

    Parameters
    ----------
    options : dict
        Reader options (``dataset``, ``reader``), passed to every reader.
    """

    def __init__(self, options: dict[str, Any] | None = None, *, max_open: int = 8, pm=None) -> None:
        self.options = dict(options or {})
        self.max_open = max_open
        self._pm = pm
        self._open: OrderedDict[str, FrameSource] = OrderedDict()

    def source(self, path: str) -> FrameSource:
        src = self._open.get(path)
        if src is not None:
            self._open.move_to_end(path)
            return src
        if not os.path.exists(path):
            raise FrameReadError(f"{path}: file not found")
        reader = choose_reader(path, self.options, pm=self._pm)
        specs = manager.readers(self._pm)
        if reader not in specs:
            raise FrameReadError(f"{path}: no reader named {reader!r} (have: {', '.join(sorted(specs))})")
        src = specs[reader].open(path, self.options)
        self._open[path] = src
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return src

    def frame_shape(self, ref: EventRef) -> tuple[int, int]:
        return self.source(ref.file).frame_shape()

    def read(self, ref: EventRef, region: Region | None = None) -> np.ndarray:
        return self.source(ref.file).read(ref.event, region)

    def expand(self, ref: EventRef) -> list[EventRef]:
        """A bare file name becomes all its events (CrystFEL's ``list_events``)."""
        if ref.event is not None:
            return [ref]
        return [EventRef(ref.path, event, ref.resolved) for event in self.source(ref.file).events()]

    def close(self) -> None:
        while self._open:
            _, src = self._open.popitem()
            src.close()

    def __enter__(self) -> "FrameStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def refs_from_inputs(
    inputs: Iterable[str], *, prefix: str = "", base: str | None = None
) -> Iterator[tuple[EventRef, LstEntry | None]]:
    """Events named by the command line: ``.lst`` files are read as lists, other paths are files.

    Yields ``(ref, entry)`` with ``ref.event`` ``None`` for whole files (expand them
    with :meth:`FrameStore.expand`).
    """
    for item in inputs:
        if item.endswith(".lst") or item.endswith(".txt") or item == "-":
            for entry in read_lst(item if item != "-" else "/dev/stdin"):
                yield entry.ref(prefix=prefix, base=base), entry
        else:
            yield EventRef(item, None, resolve_path(item, prefix=prefix, base=base)), None


def iter_events(
    inputs: Iterable[str], store: FrameStore, *, prefix: str = "", base: str | None = None
) -> Iterator[tuple[EventRef, str | None]]:
    """Every event of ``inputs`` in order, with an error text where a file cannot even be listed.

    A file that cannot be opened, or holds no frames, yields one ``(ref, reason)``
    so that it is accounted for; nothing is dropped silently.
    """
    for ref, _entry in refs_from_inputs(inputs, prefix=prefix, base=base):
        if ref.event is not None:
            yield ref, None
            continue
        try:
            expanded = store.expand(ref)
        except FrameReadError as exc:
            yield ref, str(exc)
            continue
        if not expanded:  # e.g. a run file created but not yet written to: still accounted for
            yield ref, f"{ref.file}: the file holds no frames"
            continue
        for one in expanded:
            yield one, None
