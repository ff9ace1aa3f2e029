"""The crop: which raw pixels make the network's 350x350 window around the beam, and which are bad.

One path for every detector. A :class:`CropMap` is built once per detector
and frame shape: for each crop pixel, the raw-slab pixel whose area covers
it, or none (a gap between panels, masked like a bad pixel). Each frame then
costs one gather. The crop is laid on the *assembled* image's lab grid, centred
on the beam (x = y = 0 of a CrystFEL geometry): crop row ``i`` is at
``y = i + 0.5 - H/2`` and column ``j`` at ``x = j + 0.5 - W/2``, in the
geometry's (first panel's) pixels.

A single-panel frame with a beam centre is the same map, a rectangle: the
reader then reads only that rectangle, and the gather is a copy.

Pixel convention (:mod:`sfx_cnn_veto.io.geometry` says it once for the whole
package): pixel ``i`` spans ``[i, i + 1)``, its centre is ``i + 0.5``; a beam
centre ``(row, col)`` is in these coordinates, so an HxW frame's centre is
``(H/2, W/2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sfx_cnn_veto.core import gather
from sfx_cnn_veto.errors import ConfigError, FrameReadError

DEFAULT_CROP = (350, 350)

Region = tuple[slice, slice]

#: Above this fraction of bad pixels (gaps, the detector mask) in the crop, a mask is refused.
MAX_BAD_FRACTION = 0.5


def crop_region(
    frame_shape: Sequence[int],
    shape: Sequence[int] = DEFAULT_CROP,
    center: Sequence[float] | None = None,
) -> Region:
    """The ``(rows, cols)`` slices of a ``shape`` window centred on ``center``.

    Parameters
    ----------
    frame_shape : (int, int)
        Shape of the full frame (slow scan, fast scan).
    shape : (int, int)
        Crop size; the paper used 350x350.
    center : (float, float), optional
        Beam centre ``(row, col)`` in pixels; default the frame centre. A window
        that would leave the frame is moved inside it, keeping its size.

    Raises
    ------
    FrameReadError
        If the frame is smaller than the crop (the message names both shapes).
    """
    if len(frame_shape) != 2:
        raise FrameReadError(
            f"frame of shape {tuple(frame_shape)} is {len(frame_shape)}-D per event: a multi-panel detector's "
            "raw data; give its CrystFEL geometry (--geometry FILE.geom) so the crop is taken around the beam"
        )
    height, width = int(frame_shape[0]), int(frame_shape[1])
    ch, cw = int(shape[0]), int(shape[1])
    if height < ch or width < cw:
        raise FrameReadError(
            f"frame of shape {height}x{width} is smaller than the {ch}x{cw} crop; "
            "use a smaller crop or another model"
        )
    cy, cx = (height / 2.0, width / 2.0) if center is None else (float(center[0]), float(center[1]))
    top = int(np.floor(cy - ch / 2.0 + 0.5))
    left = int(np.floor(cx - cw / 2.0 + 0.5))
    top = min(max(top, 0), height - ch)
    left = min(max(left, 0), width - cw)
    return slice(top, top + ch), slice(left, left + cw)


def crop(
    frame: np.ndarray,
    *,
    shape: Sequence[int] = DEFAULT_CROP,
    center: Sequence[float] | None = None,
) -> np.ndarray:
    """Crop ``frame`` to ``shape`` around ``center`` (a view, not a copy).

    Examples
    --------
    >>> crop(np.zeros((700, 700)), shape=(350, 350)).shape
    (350, 350)
    """
    frame = np.asarray(frame)
    return frame[crop_region(frame.shape, shape, center)]


@dataclass(frozen=True)
class CropMap:
    """Which raw pixels make the crop, and which of them are bad; built once, one gather per frame.

    Attributes
    ----------
    shape : (int, int)
        The crop's shape.
    frame_shape : tuple of int
        The per-event raw frame it applies to.
    region : (slice, slice) or None
        The block of a 2-D frame to read (rows and columns the map touches);
        None: the whole frame (a frame with panel planes, ``(P, ss, fs)``).
    index : ndarray or None
        Flat index into the block of each crop pixel (gaps point at pixel 0
        and are marked in ``good``); None when the block *is* the crop.
    good : ndarray of bool or None
        False at gaps and at pixels the geometry marks bad; None: all good.
    """

    shape: tuple[int, int]
    frame_shape: tuple[int, ...]
    region: Region | None
    index: np.ndarray | None = None
    good: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.index is not None:  # int32 when it fits: half the bytes read per gather (core/gather.py)
            object.__setattr__(self, "index", gather.flat_index(self.index, int(np.prod(self.block_shape))))

    @property
    def is_rectangle(self) -> bool:
        return self.index is None

    @property
    def block_shape(self) -> tuple[int, ...]:
        if self.region is None:
            return self.frame_shape
        return tuple(len(range(*s.indices(n))) for s, n in zip(self.region, self.frame_shape))

    @property
    def bad_fraction(self) -> float:
        return 0.0 if self.good is None else float(1.0 - self.good.mean())

    def block(self, frame: np.ndarray) -> np.ndarray:
        """The part of a full frame this map reads (a view)."""
        frame = np.asarray(frame)
        if tuple(frame.shape) != self.frame_shape:
            raise FrameReadError(f"frame of shape {frame.shape} does not match the crop map's {self.frame_shape}"
                                 + (f" ({self.source})" if self.source else ""))
        return frame if self.region is None else frame[self.region]

    def gather(self, block: np.ndarray) -> np.ndarray:
        """The crop from a block read at :attr:`region`, C-contiguous: for a rectangle the block itself
        (no copy when it is contiguous), else a fresh array."""
        block = np.asarray(block)
        if tuple(block.shape) != self.block_shape:
            raise FrameReadError(f"block of shape {block.shape} does not match the crop map's {self.block_shape}")
        if self.index is None:
            return np.ascontiguousarray(block)
        return gather.take(block, self.index)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The crop of a full frame."""
        return self.gather(self.block(frame))

    def crop_good(self, good_frame: np.ndarray | None) -> np.ndarray | None:
        """The crop's good pixels: this map's gaps and geometry mask, and ``good_frame`` (a full-frame mask)."""
        if good_frame is None:
            return self.good
        taken = self(np.asarray(good_frame).astype(bool, copy=False))
        return taken if self.good is None else taken & self.good

    def outline(self) -> np.ndarray:
        """Raw-frame ``(row, col)`` of the crop's border pixels that land on a panel (for drawing)."""
        border = np.zeros(self.shape, dtype=bool)
        border[[0, -1], :] = True
        border[:, [0, -1]] = True
        if self.good is not None:
            border &= self.good
        if self.index is None:
            rows, cols = np.nonzero(border)
            return np.stack([rows + self.region[0].start, cols + self.region[1].start], axis=1)
        flat = self.index.reshape(self.shape)[border]
        block_rows, block_cols = np.unravel_index(flat, self.block_shape)[-2:]
        if self.region is None:
            return np.stack([block_rows, block_cols], axis=1)
        return np.stack([block_rows + self.region[0].start, block_cols + self.region[1].start], axis=1)


def rectangle_map(frame_shape: Sequence[int], shape: Sequence[int] = DEFAULT_CROP,
                  center: Sequence[float] | None = None) -> CropMap:
    """The map of a single-panel frame: the rectangle around ``center`` (see :func:`crop_region`)."""
    region = crop_region(frame_shape, shape, center)
    return CropMap(tuple(int(v) for v in shape), tuple(int(v) for v in frame_shape), region,
                   source="frame center" if center is None else f"beam center {tuple(center)}")


def geometry_map(geometry, frame_shape: Sequence[int] | None = None,
                 shape: Sequence[int] = DEFAULT_CROP, *, good_frame: np.ndarray | None = None) -> CropMap:
    """The map of a detector described by a :class:`~sfx_cnn_veto.io.geometry.Geometry`.

    Every panel is used, whatever its direction; crop pixels that no panel
    covers are gaps. ``good_frame``: the geometry's own good-pixel mask of
    the slab (:meth:`Geometry.good_pixels`), folded into :attr:`CropMap.good`.
    """
    frame_shape = tuple(int(v) for v in (frame_shape if frame_shape is not None else geometry.frame_shape))
    geometry.check_frame(frame_shape)
    ch, cw = int(shape[0]), int(shape[1])
    ys = (np.arange(ch, dtype=np.float64) + 0.5 - ch / 2.0)[:, None]
    xs = (np.arange(cw, dtype=np.float64) + 0.5 - cw / 2.0)[None, :]
    x = np.broadcast_to(xs, (ch, cw)).ravel()
    y = np.broadcast_to(ys, (ch, cw)).ravel()
    flat = np.full(ch * cw, -1, dtype=np.int64)
    for panel in geometry.panels:
        fs, ss = panel.to_panel(x, y, geometry.scale(panel))
        nss, nfs = panel.shape
        inside = (fs >= 0) & (fs < nfs) & (ss >= 0) & (ss < nss) & (flat < 0)
        if inside.any():
            flat[inside] = geometry.flat_index(panel, np.floor(ss[inside]).astype(np.int64),
                                               np.floor(fs[inside]).astype(np.int64), frame_shape)
    covered = flat >= 0
    if not covered.any():
        raise ConfigError(f"geometry {geometry.source}: no panel covers the {ch}x{cw} crop around the beam "
                          "(x = y = 0); check corner_x/corner_y")
    good = covered.copy()
    if good_frame is not None:
        good[covered] &= np.asarray(good_frame, dtype=bool).reshape(-1)[flat[covered]]
    region, index = _block(flat, covered, frame_shape)
    return CropMap((ch, cw), frame_shape, region, index.reshape(ch, cw),
                   None if good.all() else good.reshape(ch, cw), source=f"geometry {geometry.source}")


def _block(flat: np.ndarray, covered: np.ndarray, frame_shape: tuple[int, ...]):
    """The rows/columns of a 2-D frame the map touches, and indices into that block."""
    index = np.where(covered, flat, 0)
    if len(frame_shape) != 2:
        return None, index
    rows, cols = np.unravel_index(flat[covered], frame_shape)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    block_rows, block_cols = np.unravel_index(index, frame_shape)
    local = (block_rows - r0) * (c1 - c0) + (block_cols - c0)
    local = np.where(covered, local, 0)
    return (slice(r0, r1), slice(c0, c1)), local


def assemble(frame: np.ndarray, geometry, *, fill: float = np.nan) -> tuple[np.ndarray, tuple[float, float]]:
    """The assembled image of a raw slab on the lab grid (nearest pixel), and where the beam falls ``(row, col)``.

    For drawing (``show``): the image spans every panel; gaps are ``fill``.
    """
    frame = np.asarray(frame)
    x, y = geometry.pixel_maps(frame.shape)
    half_h = float(np.ceil(max(abs(np.nanmin(y)), abs(np.nanmax(y))))) + 1
    half_w = float(np.ceil(max(abs(np.nanmin(x)), abs(np.nanmax(x))))) + 1
    shape = (int(2 * half_h), int(2 * half_w))
    cmap = geometry_map(geometry, frame.shape, shape)
    image = cmap(frame).astype(np.float32)
    if cmap.good is not None:
        image[~cmap.good] = fill
    return image, (half_h, half_w)


def check_bad_fraction(good: np.ndarray | None, *, what: str, limit: float = MAX_BAD_FRACTION) -> None:
    """Refuse a crop mask that marks more than ``limit`` of the crop bad, naming both mask conventions."""
    if good is None:
        return
    bad = 1.0 - float(np.mean(good))
    if bad > limit:
        raise ConfigError(
            f"{what} marks {bad:.0%} of the crop bad (more than {limit:.0%}): is it inverted? "
            "--mask takes nonzero = good (CrystFEL's convention); a CXI file's own mask is nonzero = bad"
        )


#: Raw-slab shapes of multi-panel detectors as their DAQs and Cheetah write them; such a frame without
#: its geometry would be cropped in the wrong place.
KNOWN_RAW_SLABS = {
    (1480, 1552): "CSPAD (Cheetah layout, 64 ASICs)",
    (32, 185, 388): "CSPAD (psana, 32 sections)",
    (5632, 384): "ePix10k2M (Cheetah layout, 16 modules)",
    (16, 352, 384): "ePix10k2M (psana, 16 modules)",
    (4096, 1024): "JUNGFRAU 4M (8 modules stacked)",
    (8, 512, 1024): "JUNGFRAU 4M (psana, 8 modules)",
    (8192, 128): "AGIPD 1M (16 modules stacked)",
    (16, 512, 128): "AGIPD 1M (16 modules)",
}


def check_single_panel(frame_shape: Sequence[int], *, source: str = "") -> None:
    """Refuse (an error decision, the frame kept), without a geometry, a frame that is a multi-panel raw slab (3-D, or a known slab shape)."""
    shape = tuple(int(v) for v in frame_shape)
    where = f"{source}: " if source else ""
    if len(shape) < 2:
        raise FrameReadError(f"{where}expected a 2-D frame, got shape {shape}")
    if len(shape) != 2:
        raise FrameReadError(
            f"{where}expected a 2-D frame, got shape {shape}: {len(shape)}-D per event, a multi-panel detector's "
            "raw data; give its CrystFEL geometry (--geometry FILE.geom) so the crop is taken around the beam"
        )
    if shape in KNOWN_RAW_SLABS:
        raise FrameReadError(
            f"{where}frame of shape {shape} is the raw slab of a {KNOWN_RAW_SLABS[shape]}: its center is not the "
            "beam; give the detector's CrystFEL geometry (--geometry FILE.geom)"
        )


def sentinel_good(crop: np.ndarray) -> np.ndarray | None:
    """Good pixels of an integer crop: gap and bad-pixel values read as bad (None when there are none).

    PILATUS writes -1 in gaps and -2 at bad pixels; Eiger and JUNGFRAU frames
    mark them with the dtype's maximum (``0xFFFFFFFF`` in uint32). Float frames
    carry NaN instead, which normalization already ignores.
    """
    if crop.dtype.kind not in "iu":
        return None
    bad = crop == np.iinfo(crop.dtype).max
    if crop.dtype.kind == "i":
        bad |= crop < 0
    if not bad.any() or bad.mean() > 0.5:  # most of the crop at the maximum: saturation, scored as data
        return None
    return ~bad


class CropMapper:
    """Builds, once per frame shape, the :class:`CropMap` of a detector: its geometry, or a beam centre.

    Parameters
    ----------
    shape : (int, int)
        The crop's shape (the model's, or a larger window for training).
    geometry : Geometry, optional
        The detector's CrystFEL geometry (:func:`sfx_cnn_veto.io.geometry.read_geometry`).
    center : (float, float), optional
        Beam centre ``(row, col)`` of a single-panel frame; refused together with a geometry.
    """

    def __init__(self, shape: Sequence[int] = DEFAULT_CROP, *, geometry=None,
                 center: Sequence[float] | None = None) -> None:
        if geometry is not None and center is not None:
            raise ConfigError("give a beam center or a geometry, not both (a geometry puts the beam at x = y = 0; "
                              "move its panels' corner_x/corner_y to correct it)")
        self.shape = (int(shape[0]), int(shape[1]))
        self.geometry = geometry
        self.center = None if center is None else (float(center[0]), float(center[1]))
        self._maps: dict[tuple, CropMap] = {}

    def __call__(self, frame_shape: Sequence[int], *, center: Sequence[float] | None = None,
                 data_file: str | None = None) -> CropMap:
        """The map for frames of ``frame_shape``; ``center``: a file's own beam centre (used without geometry
        or an explicit centre); ``data_file``: where a geometry mask without ``mask_file`` is read."""
        frame_shape = tuple(int(v) for v in frame_shape)
        center = self.center if self.center is not None else center
        needs_file = self.geometry is not None and any(
            p.mask is not None and p.mask[1] is None for p in self.geometry.panels)
        key = (frame_shape, center, data_file if needs_file else None)
        cmap = self._maps.get(key)
        if cmap is None:
            cmap = self._build(frame_shape, center, data_file)
            if len(self._maps) >= 32:
                self._maps.pop(next(iter(self._maps)))
            self._maps[key] = cmap
        return cmap

    def _build(self, frame_shape: tuple[int, ...], center, data_file) -> CropMap:
        if self.geometry is None:
            check_single_panel(frame_shape)
            return rectangle_map(frame_shape, self.shape, center)
        good = None
        if self.geometry.bad_regions or any(p.mask or p.no_index for p in self.geometry.panels):
            good = self.geometry.good_pixels(frame_shape, data_file)
        return geometry_map(self.geometry, frame_shape, self.shape, good_frame=good)
