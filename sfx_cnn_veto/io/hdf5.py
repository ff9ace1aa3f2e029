"""HDF5 frames: CXI multi-event files, Cheetah single frames, compressed data.

Events of a 3-D dataset are ``//0 ... //N-1`` (CrystFEL's ``dim0 = %``).
``read(..., region=...)`` reads only that hyperslab, so a 350x350 crop of a
1750x1750 frame never reads the whole frame. Compressed datasets need the
filters of :mod:`hdf5plugin` (bitshuffle/LZ4, Blosc ...), imported here.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto.errors import FrameReadError
from sfx_cnn_veto.io.base import FrameSource, Region
from sfx_cnn_veto.io.events import SINGLE_FRAME, EventRef, event_for_index

#: EIGER master files link their frames in blocks ``/entry/data/data_000001``, ``data_000002`` ...
#: (external links to the data files); found by default, the blocks are read as one stack (:class:`Blocks`).
EIGER_FIRST_BLOCK = "/entry/data/data_000001"

#: Tried in order when no dataset is configured.
DEFAULT_DATASETS = ("/entry_1/data_1/data", "/data/data", "/entry/data/data", EIGER_FIRST_BLOCK)

#: A crop is read as the block of whole rows it spans (one contiguous read
#: per chunk), then cut in memory, when that block is at most this many bytes.
#: Measured on a 1750x1750 float32 frame, one chunk a frame: 0.13-0.16 ms for
#: the 350 rows against 0.22-1.3 ms for the 350x350 hyperslab (350 small reads
#: inside HDF5) and 6 ms for the whole frame. It reads 5x the bytes of the
#: crop, which is free from the page cache; on a network file system where
#: bandwidth is the limit, set ``SFX_CNN_VETO_ROW_BLOCK_BYTES=0`` (hyperslab only).
ROW_BLOCK_BYTES = int(os.environ.get("SFX_CNN_VETO_ROW_BLOCK_BYTES", 16 * 2**20))


def _h5py():
    import h5py
    import hdf5plugin  # noqa: F401 - registers the compression filters with h5py

    return h5py


def _open(h5py: Any, path: str) -> Any:
    """Open for reading without a file lock; a file held by an SWMR writer is opened as an SWMR reader.

    (A writer in SWMR mode marks the file open for writing; a plain read-only
    open is then refused with "file is already open for write".)
    """
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise
        return h5py.File(path, "r", locking=False, swmr=True)


class Blocks:
    """Consecutive 3-D data sets of one frame shape (an EIGER master's ``data_000001``, ``data_000002`` ...)
    read as one stack: ``shape``, ``ndim``, ``dtype`` and ``[index, rows, cols]`` with an integer ``index``.

    A block whose data file is not there (yet) ends the stack: a run still
    being written shows the frames of the blocks already written.
    """

    def __init__(self, group: Any, first: str = "data_000001") -> None:
        prefix, digits = first.rsplit("_", 1)
        self.datasets = []
        number = int(digits)
        while True:
            name = f"{prefix}_{number:0{len(digits)}d}"
            try:
                node = group[name] if name in group else None
            except (KeyError, OSError):  # an external link to a file not there
                node = None
            if node is None:
                break
            if node.ndim != 3 or (self.datasets and node.shape[1:] != self.datasets[0].shape[1:]):
                shape = self.datasets[0].shape[1:] if self.datasets else "(N, H, W)"
                raise FrameReadError(f"{group.file.filename}:{group.name}/{name}: shape {node.shape}, "
                                     f"expected a stack of {shape} frames like the blocks before it")
            self.datasets.append(node)
            number += 1
        if not self.datasets:
            raise FrameReadError(f"{group.file.filename}:{group.name}/{first}: the data file it links to is not there")
        self.starts = np.cumsum([0] + [int(d.shape[0]) for d in self.datasets])
        first_ds = self.datasets[0]
        self.shape = (int(self.starts[-1]),) + tuple(first_ds.shape[1:])
        self.ndim = 3
        self.dtype = first_ds.dtype

    def __getitem__(self, selection: tuple) -> np.ndarray:
        index = int(selection[0])
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"frame {index} out of range ({self.shape[0]} frames)")
        block = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.datasets[block][(index - int(self.starts[block]),) + tuple(selection[1:])]


def _dataset(handle: Any, path: str, *, blocks: bool) -> Any:
    """``handle[path]``; EIGER's first block with ``blocks``: all the blocks (:class:`Blocks`)."""
    if blocks and path == EIGER_FIRST_BLOCK:
        group, _, first = path.rpartition("/")
        return Blocks(handle[group], first)
    return handle[path]


class HDF5Source(FrameSource):
    """Frames of one HDF5 file.

    Parameters
    ----------
    path : str
        The file.
    options : dict
        ``dataset``: the data set path (default: the first of
        :data:`DEFAULT_DATASETS` that exists).
    """

    def __init__(self, path: str, options: dict[str, Any] | None = None) -> None:
        options = options or {}
        self.path = path
        h5py = _h5py()
        try:
            # No file lock: a run still being written (by Cheetah, OM, a DAQ) stays writable.
            self._file = _open(h5py, path)
        except FileNotFoundError as exc:
            raise FrameReadError(f"{path}: file not found") from exc
        except PermissionError as exc:
            raise FrameReadError(f"{path}: permission denied") from exc
        except OSError as exc:
            raise FrameReadError(f"{path}: not a readable HDF5 file ({exc})") from exc
        wanted = options.get("dataset")
        candidates: Sequence[str] = (wanted,) if wanted else DEFAULT_DATASETS
        self.dataset_path = next((name for name in candidates if name in self._file), None)
        if self.dataset_path is None:
            self._file.close()
            raise FrameReadError(
                f"{path}: no data set {' or '.join(candidates)} in the file"
                + ("" if wanted else "; name one with --dataset")
            )
        self._blocks = not wanted
        try:
            self._ds = _dataset(self._file, self.dataset_path, blocks=self._blocks)
        except FrameReadError:
            self._file.close()
            raise
        if self._ds.ndim not in (2, 3, 4):
            shape = self._ds.shape
            self._file.close()
            raise FrameReadError(
                f"{path}:{self.dataset_path}: expected a 2-D frame, a 3-D stack of frames or a 4-D stack of "
                f"multi-panel frames (events, panels, ss, fs), got shape {shape}"
            )

    @property
    def multi_event(self) -> bool:
        """A stack of frames: 3-D (events, ss, fs), or 4-D (events, panels, ss, fs) for panel detectors."""
        return self._ds.ndim >= 3

    def _refresh(self) -> None:
        """See frames appended since opening (a run still being written): reopen the file."""
        h5py = _h5py()
        self._file.close()
        try:
            self._file = _open(h5py, self.path)
            self._ds = _dataset(self._file, self.dataset_path, blocks=self._blocks)
        except Exception as exc:  # noqa: BLE001
            raise FrameReadError(f"{self.path}: cannot reopen growing file ({exc})") from exc

    def events(self) -> list[str | None]:
        if not self.multi_event:
            return [None]
        return [event_for_index(i) for i in range(self._ds.shape[0])]

    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self._ds.shape[1:] if self.multi_event else self._ds.shape)  # type: ignore[return-value]

    def read(self, event: str | None, region: Region | None = None) -> np.ndarray:
        ys, xs = region if region is not None else (slice(None), slice(None))
        if not self.multi_event:
            if event not in (None, SINGLE_FRAME, "//0"):
                raise FrameReadError(f"{self.path}: single-frame file has no event {event}")
            return self._read((ys, xs), event)
        try:
            index = EventRef(self.path, event).index
        except ValueError as exc:
            raise FrameReadError(f"{self.path} {event}: {exc}") from exc
        if index is None:  # no event, or "//": the one frame of a stack of one
            if self._ds.shape[0] != 1:
                raise FrameReadError(f"{self.path}: file holds {self._ds.shape[0]} frames; name one (//N)")
            index = 0
        if index >= self._ds.shape[0]:
            self._refresh()
            if index >= self._ds.shape[0]:
                raise FrameReadError(
                    f"{self.path} {event}: event out of range (the file holds {self._ds.shape[0]} frames)"
                )
        return self._read((index, ys, xs), event)

    def _read(self, selection: tuple, event: str | None) -> np.ndarray:
        try:
            ys, xs = selection[-2:]
            if isinstance(xs, slice) and xs != slice(None):
                width = self._ds.shape[-1]
                rows = len(range(*ys.indices(self._ds.shape[-2]))) if isinstance(ys, slice) else 1
                if rows * width * self._ds.dtype.itemsize <= ROW_BLOCK_BYTES:
                    block = self._ds[selection[:-1] + (slice(None),)]
                    return np.ascontiguousarray(block[..., xs])
            return np.asarray(self._ds[selection])
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError ...
            raise FrameReadError(
                f"{self.path} {event or ''}: cannot read frame ({type(exc).__name__}: {exc})".replace("  ", " ")
            ) from exc

    def close(self) -> None:
        try:
            self._file.close()
        except Exception:  # noqa: BLE001
            pass
