"""Peak counters for labelling: OM's compiled peakfinder8, with indexamajig-style options.

The counters are created through the ``sfxveto_labelers`` hook
(:class:`~sfx_cnn_veto.types.LabelerSpec`): ``create(options) -> counter`` and
``counter(frame) -> int``. Options (all optional):

``threshold`` (ADU, indexamajig ``--threshold``), ``min_snr``, ``min_pix_count``,
``max_pix_count``, ``local_bg_radius``, ``min_res`` and ``max_res`` (pixels
from the beam centre), ``max_num_peaks``, ``mask`` (2-D array, True/nonzero =
good pixel), ``center`` (beam centre ``(row, col)`` in pixels; default the
frame centre), ``fast_mode`` (OM's sampled radial statistics).

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


def radius_map(shape: Sequence[int], center: Sequence[float] | None = None) -> np.ndarray:
    """Distance of each pixel from the beam centre ``(row, col)`` (default: frame centre), float32."""
    height, width = int(shape[0]), int(shape[1])
    cy, cx = ((height - 1) / 2.0, (width - 1) / 2.0) if center is None else (float(center[0]), float(center[1]))
    yy = (np.arange(height, dtype=np.float32) - np.float32(cy))[:, None]
    xx = (np.arange(width, dtype=np.float32) - np.float32(cx))[None, :]
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
        return options

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
        height, width = shape
        ny, nx = asic_tiles(shape, self.asic_shape)
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
            det = self._cls(radius_pixel_map=radius_map(shape, self.center), layout_info=layout,
                            crystallography_parameters=params)
        finally:
            random.setstate(state)
        if self.mask is not None:
            det.set_bad_pixel_map((self.mask_for(shape) != 0).astype(np.int8))
        self._detectors[shape] = det
        return det

    def find(self, frame: np.ndarray) -> dict[str, Any]:
        """OM's peak list of one full frame (``num_peaks``, ``fs``, ``ss``, ``intensity`` ...)."""
        frame = finite_frame(frame)
        return self._detector(frame.shape).find_peaks(data=np.ascontiguousarray(frame))

    def __call__(self, frame: np.ndarray) -> int:
        return int(self.find(frame)["num_peaks"])


def create_peakfinder8(options: dict[str, Any]) -> Peakfinder8Counter:
    return Peakfinder8Counter(options)
