"""Bad-pixel masks: a CrystFEL geometry's, a CXI or NeXus file's own, or a mask file; all as good-pixel booleans.

The labeller gives them to peakfinder8; the veto gives the bad pixels of its
crop the crop's background level before normalization (:func:`fill_masked`),
so a hot pixel the detector's mask knows about is never taken for a Bragg spot.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.conventions import NEXUS_PIXEL_MASK

# Files are opened with locking=False, as the frame readers open them (sfx_cnn_veto.io.hdf5):
# HDF5 refuses a second handle on an open file with other locking flags.


def mask_from_bits(raw: np.ndarray, good_bits: int | None, bad_bits: int | None) -> np.ndarray:
    """Good pixels of a raw mask under CrystFEL's rules: all ``good_bits`` set and no ``bad_bits``;
    with neither named, nonzero = good."""
    raw = np.asarray(raw).astype(np.int64, copy=False)
    if not good_bits and not bad_bits:
        return raw != 0
    good = np.ones(raw.shape, dtype=bool)
    if good_bits:
        good &= (raw & good_bits) == good_bits
    if bad_bits:
        good &= (raw & bad_bits) == 0
    return good


def read_mask_dataset(path: str, dataset: str, frame_shape: tuple[int, ...]) -> np.ndarray:
    """A mask data set of ``frame_shape`` (the first frame of a per-frame stack), raw values."""
    import h5py
    import hdf5plugin  # noqa: F401 - filters for compressed masks

    try:
        with h5py.File(path, "r", locking=False) as handle:
            if dataset not in handle:
                raise ConfigError(f"{path}: geometry names mask {dataset}, which is not in the file")
            node = handle[dataset]
            raw = np.asarray(node[0] if node.ndim == len(frame_shape) + 1 else node[()])
    except OSError as exc:
        raise ConfigError(f"cannot read mask {path}:{dataset}: {exc}") from exc
    if raw.shape != tuple(frame_shape):
        raise ConfigError(f"{path}:{dataset}: mask shape {raw.shape} does not match frames {tuple(frame_shape)}")
    return raw


def geom_mask(geom: Any, data_file: str, frame_shape: tuple[int, ...]) -> np.ndarray | None:
    """Good-pixel mask (bool) of a geometry (:class:`~sfx_cnn_veto.io.geometry.Geometry`, or a path),
    or None when it names no mask, no bad region and no ``no_index`` panel."""
    from sfx_cnn_veto.io.geometry import Geometry, read_geometry

    geometry = geom if isinstance(geom, Geometry) else read_geometry(str(geom))
    if not (geometry.bad_regions or any(p.mask or p.no_index for p in geometry.panels)):
        return None
    return geometry.good_pixels(frame_shape, data_file)


#: Where CXI files keep a detector mask; CXI convention: nonzero = bad pixel.
CXI_MASKS = ("/entry_1/data_1/mask", "/entry_1/instrument_1/detector_1/mask")
#: A data file's own masks, tried in order: CXI's, then NeXus/EIGER's ``pixel_mask``; all nonzero = bad.
OWN_MASKS = CXI_MASKS + (NEXUS_PIXEL_MASK,)


def cxi_mask(data_file: str, frame_shape: tuple[int, int]) -> np.ndarray | None:
    """Good-pixel mask from an HDF5 file's own mask (:data:`OWN_MASKS`; nonzero = bad, CXI and NeXus alike).

    A per-frame mask stack ``(N, H, W)`` gives its first frame, and only that
    frame is read.
    """
    import h5py
    import hdf5plugin  # noqa: F401 - filters for compressed masks

    try:
        with h5py.File(data_file, "r", locking=False) as handle:
            for name in OWN_MASKS:
                if name not in handle:
                    continue
                node = handle[name]
                if node.ndim not in (2, 3) or tuple(node.shape[-2:]) != tuple(frame_shape):
                    continue
                raw = node[0] if node.ndim == 3 else node[()]
                return np.asarray(raw) == 0
    except OSError:
        return None
    return None


def own_mask(data_file: str, frame_shape: tuple[int, int]) -> np.ndarray | None:
    """A data file's own good-pixel mask: the CXI or NeXus one of an HDF5 file, None for other formats."""
    if not str(data_file).endswith((".cxi", ".h5", ".hdf5", ".nxs", ".nx5")):
        return None
    return cxi_mask(str(data_file), frame_shape)


def load_mask_file(spec: str, frame_shape: tuple[int, int] | None = None) -> np.ndarray:
    """``FILE.h5[:DATASET]`` or ``FILE.npy``: a good-pixel mask (nonzero = good, CrystFEL's default)."""
    path, _, dataset = spec.partition(":")
    if path.endswith(".npy"):
        raw = np.load(path)
    else:
        import h5py
        import hdf5plugin  # noqa: F401 - filters for compressed masks

        try:
            with h5py.File(path, "r", locking=False) as handle:
                name = dataset or next((n for n in ("/data/data", "/mask", "/data") if n in handle), None)
                if name is None or name not in handle:
                    raise ConfigError(f"{path}: name the mask data set as {path}:/path/in/file")
                raw = np.asarray(handle[name])
        except OSError as exc:
            raise ConfigError(f"cannot read mask {spec!r}: {exc}") from exc
    if frame_shape is not None and raw.shape != tuple(frame_shape):
        raise ConfigError(f"mask {spec}: shape {raw.shape} does not match frames {tuple(frame_shape)}")
    return raw != 0


class CropMask:
    """A crop's good-pixel mask, prepared once for filling many crops (:meth:`fill`).

    The bad pixels get the median of the good ones among every 4th row and
    column (the sample ``robust`` estimates the background from): what
    normalization would make of them as NaN, without its slower non-finite path.
    """

    def __init__(self, good: np.ndarray) -> None:
        good = np.asarray(good).astype(bool, copy=False)
        self.good = good
        self.shape = good.shape
        self.all_good = bool(good.all())
        self.none_good = not good.any()
        self.bad = np.flatnonzero(~good)
        sample = good[::4, ::4]
        self.sample_shape = sample.shape
        self.sample_good = np.flatnonzero(sample) if sample.any() else None
        self.good_index = np.flatnonzero(good)

    def fill(self, frame: np.ndarray) -> np.ndarray:
        """Set the bad pixels of ``frame`` (C-contiguous, this mask's shape) to the background, in place."""
        if self.all_good:
            return frame
        if self.none_good:
            frame[...] = np.nan  # nothing good: the frame cannot be scored (an error decision, kept)
            return frame
        flat = frame.reshape(-1)
        if self.sample_good is not None:
            value = np.median(np.ascontiguousarray(frame[::4, ::4]).reshape(-1)[self.sample_good])
        else:
            value = np.median(flat[self.good_index])
        flat[self.bad] = value
        return frame


def fill_masked(frame: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Set, in place, the pixels of ``frame`` that are not ``good`` to the background (:class:`CropMask`)."""
    if not frame.flags.c_contiguous:
        raise ValueError("fill_masked needs a C-contiguous frame")
    return CropMask(good).fill(frame)
