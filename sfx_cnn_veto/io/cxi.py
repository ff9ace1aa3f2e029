"""Writing CXI-style multi-event files: a float32 stack of frames, one HDF5 chunk a frame.

One writer for every place that makes such files: the tests (through
:mod:`sfx_cnn_veto.testing`), ``sfx-cnn-veto bench`` and the simulator
(:mod:`sfx_cnn_veto.simulate.writer`, which adds the mask, geometry and
metadata around the same frame stack). Reading them is :mod:`sfx_cnn_veto.io.hdf5`.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import numpy as np

from sfx_cnn_veto.errors import ConfigError

#: Where CXI files (and CrystFEL geometries for them) keep the frames.
DATA_PATH = "/entry_1/data_1/data"

#: Compression names :func:`compression_options` knows.
COMPRESSIONS = ("lz4", "gzip", "none")


def compression_options(compression: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The h5py ``create_dataset`` keywords for a compression.

    Parameters
    ----------
    compression
        ``None`` or ``"none"`` (no filter), ``"gzip"`` (level 1, shuffled),
        ``"lz4"`` (bitshuffle-LZ4 through hdf5plugin, as detectors write), or a
        mapping of h5py keywords passed through as they are.

    Returns
    -------
    dict
        Keywords for ``create_dataset``.

    Raises
    ------
    ConfigError
        For a name not in :data:`COMPRESSIONS`.
    """
    if compression is None or compression == "none":
        return {}
    if isinstance(compression, Mapping):
        return dict(compression)
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    if compression == "lz4":
        import hdf5plugin

        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    raise ConfigError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")


def create_frames(group, name: str, n_frames: int, shape: tuple[int, int], *,
                  dtype: Any = np.float32, compression: str | Mapping[str, Any] | None = None):
    """Create the ``(n_frames, H, W)`` frame stack in an open h5py group, one chunk a frame.

    Parameters
    ----------
    group
        An open ``h5py.File`` or group.
    name
        The dataset's name or path in ``group`` (e.g. :data:`DATA_PATH`).
    n_frames, shape
        Number of frames and the frame shape ``(H, W)``.
    dtype
        The stored type (float32: what the veto reads).
    compression
        As for :func:`compression_options`.

    Returns
    -------
    h5py.Dataset
        The empty dataset, to be filled frame by frame.
    """
    shape = tuple(int(n) for n in shape)
    return group.create_dataset(name, shape=(int(n_frames),) + shape, dtype=dtype, chunks=(1,) + shape,
                                **compression_options(compression))


def write_cxi(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], *, dataset: str = DATA_PATH,
              compression: str | Mapping[str, Any] | None = None, n_frames: int | None = None,
              shape: tuple[int, int] | None = None) -> str:
    """Write frames as a multi-event HDF5 file, one chunk a frame.

    Parameters
    ----------
    path
        The file to write (replaced if it exists).
    frames
        An ``(N, H, W)`` array (written with its own dtype); or, with
        ``n_frames`` and ``shape``, an iterable of ``(H, W)`` frames written one
        by one as float32 (a large file is never held in memory).
    dataset
        Where the frames go in the file.
    compression
        As for :func:`compression_options`.
    n_frames, shape
        For an iterable written frame by frame: how many and of what shape.

    Returns
    -------
    str
        ``path`` as a string.

    Raises
    ------
    ConfigError
        ``n_frames`` without ``shape``, or an iterable that yields another number
        of frames than ``n_frames``.
    """
    import h5py

    if n_frames is None:
        frames = np.asarray(frames)
        with h5py.File(path, "w") as handle:
            handle.create_dataset(dataset, data=frames, chunks=(1,) + frames.shape[1:],
                                  **compression_options(compression))
        return os.fspath(path)
    if shape is None:
        raise ConfigError("write_cxi: frames written one by one need their shape")
    written = 0
    with h5py.File(path, "w") as handle:
        data = create_frames(handle, dataset, n_frames, shape, compression=compression)
        for frame in frames:
            if written == n_frames:
                raise ConfigError(f"write_cxi: more frames than n_frames={n_frames}")
            data[written] = frame
            written += 1
    if written != n_frames:
        raise ConfigError(f"write_cxi: {written} frames written, n_frames={n_frames}")
    return os.fspath(path)
