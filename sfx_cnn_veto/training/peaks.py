"""Peak counters for labelling: OM's compiled peakfinder8, with indexamajig-style options.

The counters are created through the ``sfxveto_labelers`` hook
(:class:`~sfx_cnn_veto.types.LabelerSpec`): ``create(options) -> counter`` and
``counter(frame) -> int``. Options (all optional):

``threshold`` (ADU, indexamajig ``--threshold``), ``min_snr``, ``min_pix_count``,
``max_pix_count``, ``local_bg_radius``, ``min_res`` and ``max_res`` (pixels
from the beam centre), ``max_num_peaks``, ``mask`` (2-D array, True/nonzero =
good pixel), ``center`` (beam centre ``(row, col)`` in pixels; default the
frame centre), ``fast_mode`` (OM's sampled radial statistics).

For a multi-panel raw slab (``peakfinder8`` only): ``radius`` (each slab
pixel's distance from the beam, e.g. ``hypot(x, y)`` of
:meth:`Geometry.pixel_maps <sfx_cnn_veto.io.geometry.Geometry.pixel_maps>`; it
replaces ``center``) and ``asic_shape`` (the ASIC grid cell,
:func:`asic_grid`); ``pad_to_asics`` pads a slab the grid does not tile with
bad pixels.

The peak finder runs on the full frame, as a user's indexamajig or OM would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError, FrameReadError, MissingDependencyError

#: indexamajig's own defaults, except ``threshold`` (indexamajig: 800 ADU, for
#: CSPAD gain); 0 lets the signal-to-noise cut decide, whatever the gain.
DEFAULTS: dict[str, Any] = {
    "threshold": 0.0,
    "min_snr": 5.0,
    "min_pix_count": 2,
    "max_pix_count": 200,
    "local_bg_radius": 3,
    "min_res": 0,
    "max_res": 1200,
    "max_num_peaks": 2048,
    "fast_mode": False,
}


@dataclass
class Peakfinder8Options:
    threshold: float = DEFAULTS["threshold"]
    min_snr: float = DEFAULTS["min_snr"]
    min_pix_count: int = DEFAULTS["min_pix_count"]
    max_pix_count: int = DEFAULTS["max_pix_count"]
    local_bg_radius: int = DEFAULTS["local_bg_radius"]
    min_res: float = DEFAULTS["min_res"]
    max_res: float = DEFAULTS["max_res"]
    max_num_peaks: int = DEFAULTS["max_num_peaks"]
    fast_mode: bool = DEFAULTS["fast_mode"]

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "Peakfinder8Options":
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in options.items() if k in known and v is not None}
        opts = cls(**values)
        if opts.min_pix_count < 1 or opts.max_pix_count < opts.min_pix_count:
            raise ConfigError(
                f"peakfinder8: expected 1 <= min_pix_count <= max_pix_count, got "
                f"{opts.min_pix_count} and {opts.max_pix_count}"
            )
        if opts.local_bg_radius < 1:
            raise ConfigError(f"peakfinder8: local_bg_radius must be >= 1, got {opts.local_bg_radius}")
        if opts.max_res <= opts.min_res:
            raise ConfigError(f"peakfinder8: max_res ({opts.max_res}) must exceed min_res ({opts.min_res})")
        return opts


def finite_frame(frame: np.ndarray) -> np.ndarray:
    """A 2-D float32 frame for peakfinder8, non-finite pixels set to 0 (below any threshold)."""
    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim != 2:
        raise FrameReadError(f"peakfinder8 needs a 2-D frame, got shape {frame.shape}")
    if not np.isfinite(frame).all():
        frame = np.where(np.isfinite(frame), frame, np.float32(0.0))
    return frame


def asic_tiles(shape: Sequence[int], asic_shape: Sequence[int] | None) -> tuple[int, int]:
    """The ASIC (panel) size peakfinder8 scans: the whole frame unless ``asic_shape`` tiles it."""
    height, width = int(shape[0]), int(shape[1])
    ny, nx = (height, width) if asic_shape is None else (int(asic_shape[0]), int(asic_shape[1]))
    if height % ny or width % nx:
        raise ConfigError(f"peakfinder8: ASIC shape {ny}x{nx} does not tile the {height}x{width} frame")
    return ny, nx


def asic_grid(geometry, frame_shape: Sequence[int]) -> tuple[int, int] | None:
    """The ASIC cell ``(ny, nx)`` of a geometry's 2-D slab, each panel inside one cell; None if there is none.

    All panels of one shape on a grid of that shape (CSPAD, ePix, JUNGFRAU slabs): the panel
    shape. Otherwise the grid's pitch, the greatest common divisor of the panels' first rows
    (columns), when every panel fits in one cell (slabs with unused strips between panels, to
    be padded to whole cells: ``pad_to_asics``). A slab of panel planes ``(P, ss, fs)`` is
    seen as the planes stacked, ``(P * ss, fs)``.
    """
    import math

    rows = int(np.prod(frame_shape[:-1]))
    plane_rows = int(frame_shape[-2])
    boxes = []
    for p in geometry.panels:
        offset = 0
        if p.plane:
            offset = int(np.ravel_multi_index(p.plane, tuple(frame_shape[:-2]))) * plane_rows
        boxes.append((p.min_ss + offset, p.max_ss + offset, p.min_fs, p.max_fs))
    shapes = {(r1 - r0 + 1, c1 - c0 + 1) for r0, r1, c0, c1 in boxes}
    if len(shapes) == 1:
        ny, nx = shapes.pop()
        if (rows % ny == 0 and frame_shape[-1] % nx == 0
                and all(r0 % ny == 0 and c0 % nx == 0 for r0, _, c0, _ in boxes)):
            return ny, nx
    ny = math.gcd(*(r0 for r0, _, _, _ in boxes)) or max(r1 + 1 for _, r1, _, _ in boxes)
    nx = math.gcd(*(c0 for _, _, c0, _ in boxes)) or max(c1 + 1 for _, _, _, c1 in boxes)
    if all(r0 // ny == r1 // ny and c0 // nx == c1 // nx for r0, r1, c0, c1 in boxes):
        return ny, nx
    return None


def radius_map(shape: Sequence[int], center: Sequence[float] | None = None) -> np.ndarray:
    """Distance of each pixel's centre from the beam centre ``(row, col)`` (default: frame centre), float32.

    Pixel ``i`` spans ``[i, i + 1)`` (the package's convention, :mod:`sfx_cnn_veto.io.geometry`).
    """
    height, width = int(shape[0]), int(shape[1])
    cy, cx = (height / 2.0, width / 2.0) if center is None else (float(center[0]), float(center[1]))
    yy = (np.arange(height, dtype=np.float32) + np.float32(0.5) - np.float32(cy))[:, None]  # pixel centres
    xx = (np.arange(width, dtype=np.float32) + np.float32(0.5) - np.float32(cx))[None, :]
    return np.sqrt(yy * yy + xx * xx).astype(np.float32)


class Peakfinder8Counter:
    """Counts Bragg peaks with OM's ``Peakfinder8PeakDetection`` (compiled peakfinder8).

    One OM detector object is built per frame shape (OM caches the mask on
    the first call). The whole frame is one ASIC unless ``asic_shape`` is given.
    """

    name = "peakfinder8"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        options = self._configure(options)
        self.seed = int(options.get("seed", 0))
        try:
            from om.algorithms.crystallography import Peakfinder8PeakDetection
        except ImportError as exc:
            raise MissingDependencyError(
                "ondamonitor", 'pip install "ondamonitor==23.8.3" "numpy<2"', purpose="peakfinder8 labelling"
            ) from exc
        self._cls = Peakfinder8PeakDetection
        self._detectors: dict[tuple[int, int], Any] = {}

    def _configure(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """The options every peakfinder8 counter reads: thresholds, mask, centre, ASIC shape."""
        options = dict(options or {})
        self.options = Peakfinder8Options.from_dict(options)
        self.mask = options.get("mask")
        self.center = options.get("center")
        self.asic_shape = options.get("asic_shape")
        self.radius = options.get("radius")
        self.pad_to_asics = bool(options.get("pad_to_asics", False))
        if (self.radius is not None or self.pad_to_asics) and self.name != "peakfinder8":
            raise ConfigError(f"{self.name}: multi-panel slabs (a geometry's radius map and ASIC grid) are "
                              "counted by the peakfinder8 labeler only; use --labeler peakfinder8")
        if self.radius is not None and self.center is not None:
            raise ConfigError("peakfinder8: give a beam centre or a radius map, not both")
        return options

    def _padded(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The shape peakfinder8 scans: ``shape``, or with ``pad_to_asics`` the next whole ASIC cells."""
        if not self.pad_to_asics or self.asic_shape is None:
            return shape
        ny, nx = int(self.asic_shape[0]), int(self.asic_shape[1])
        return (-(-shape[0] // ny) * ny, -(-shape[1] // nx) * nx)

    def _radius(self, shape: tuple[int, int], scanned: tuple[int, int]) -> np.ndarray:
        """The radius map of the scanned frame: the given one (padding and pixels off every panel at 0), or
        the distance from the centre."""
        if self.radius is None:
            return radius_map(scanned, self.center)
        given = np.asarray(self.radius, dtype=np.float32)
        if given.shape != shape:
            raise FrameReadError(f"radius map of shape {given.shape} does not match the {shape[0]}x{shape[1]} frame")
        out = np.zeros(scanned, dtype=np.float32)
        out[:shape[0], :shape[1]] = np.where(np.isfinite(given), given, np.float32(0.0))
        return out

    def mask_for(self, shape: tuple[int, int]) -> np.ndarray:
        """The ``mask`` option (nonzero = good) as an array, refused unless it has the frame's shape."""
        mask = np.asarray(self.mask)
        if mask.shape != tuple(shape):
            raise FrameReadError(f"mask of shape {mask.shape} does not match the {shape[0]}x{shape[1]} frame")
        return mask

    def _detector(self, shape: tuple[int, int]):
        det = self._detectors.get(shape)
        if det is not None:
            return det
        scanned = self._padded(shape)
        height, width = scanned
        ny, nx = asic_tiles(scanned, self.asic_shape)
        o = self.options
        params = {
            "max_num_peaks": int(o.max_num_peaks),
            "adc_threshold": float(o.threshold),
            "minimum_snr": float(o.min_snr),
            "min_pixel_count": int(o.min_pix_count),
            "max_pixel_count": int(o.max_pix_count),
            "local_bg_radius": int(o.local_bg_radius),
            "min_res": int(o.min_res),
            "max_res": int(o.max_res),
            "bad_pixel_map_filename": None,
            "bad_pixel_map_hdf5_path": None,
            "fast_mode": bool(o.fast_mode),
        }
        layout = {"asic_nx": nx, "asic_ny": ny, "nasics_x": width // nx, "nasics_y": height // ny}
        state = random.getstate()
        random.seed(self.seed)  # OM's fast mode samples pixels with `random`: keep labels reproducible
        try:
            det = self._cls(radius_pixel_map=self._radius(shape, scanned), layout_info=layout,
                            crystallography_parameters=params)
        finally:
            random.setstate(state)
        good = np.zeros(scanned, dtype=np.int8)
        good[:shape[0], :shape[1]] = 1
        if self.mask is not None:
            good[:shape[0], :shape[1]] = self.mask_for(shape) != 0
        if self.mask is not None or scanned != shape:
            det.set_bad_pixel_map(good)
        self._detectors[shape] = det
        return det

    def find(self, frame: np.ndarray) -> dict[str, Any]:
        """OM's peak list of one full frame (``num_peaks``, ``fs``, ``ss``, ``intensity`` ...)."""
        frame = finite_frame(frame)
        det = self._detector(frame.shape)
        scanned = self._padded(frame.shape)
        if scanned != frame.shape:
            padded = np.zeros(scanned, dtype=np.float32)
            padded[:frame.shape[0], :frame.shape[1]] = frame
            frame = padded
        return det.find_peaks(data=np.ascontiguousarray(frame))

    def __call__(self, frame: np.ndarray) -> int:
        return int(self.find(frame)["num_peaks"])


def create_peakfinder8(options: dict[str, Any]) -> Peakfinder8Counter:
    return Peakfinder8Counter(options)
