"""psana's compiled peakfinder8 as a peak counter for ``sfx-cnn-veto label --labeler psana-peakfinder8``.

The same indexamajig-style options as OM's counter
(:class:`sfx_cnn_veto.training.peaks.Peakfinder8Counter`), run through
``psana.peakfinder8.peakfinder_8`` (LCLS builds). Registered through the
``sfxveto_labelers`` hook by :mod:`sfx_cnn_veto_psana.plugin`; psana is
imported only when a counter is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sfx_cnn_veto.errors import MissingDependencyError
from sfx_cnn_veto.training.peaks import Peakfinder8Counter, asic_tiles, finite_frame, radius_map


class PsanaPeakfinder8Counter(Peakfinder8Counter):
    """The same options through psana's compiled ``psana.peakfinder8.peakfinder_8`` (LCLS builds)."""

    name = "psana-peakfinder8"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self._configure(options)
        try:
            from psana.peakfinder8 import peakfinder_8
        except ImportError as exc:
            raise MissingDependencyError("psana", "pip install psana==4.3.4", purpose="psana's peakfinder8") from exc
        self._pf8 = peakfinder_8
        self._setup: dict[tuple[int, int], tuple] = {}

    def _prepared(self, shape: tuple[int, int]):
        got = self._setup.get(shape)
        if got is not None:
            return got
        height, width = shape
        ny, nx = asic_tiles(shape, self.asic_shape)
        r = radius_map(shape, self.center)
        mask = np.ones(shape, dtype=np.int8)
        if self.mask is not None:
            mask[self.mask_for(shape) == 0] = 0
        mask[r < self.options.min_res] = 0
        mask[r > self.options.max_res] = 0
        got = (np.ascontiguousarray(r), np.ascontiguousarray(mask), (nx, ny, width // nx, height // ny))
        self._setup[shape] = got
        return got

    def find(self, frame: np.ndarray) -> dict[str, Any]:
        frame = finite_frame(frame)
        r, mask, (nx, ny, nax, nay) = self._prepared(frame.shape)
        o = self.options
        peaks = self._pf8(int(o.max_num_peaks), np.ascontiguousarray(frame), mask, r, nx, ny, nax, nay,
                          float(o.threshold), float(o.min_snr), int(o.min_pix_count), int(o.max_pix_count),
                          int(o.local_bg_radius))
        return {"num_peaks": len(peaks[0]), "fs": peaks[0], "ss": peaks[1], "intensity": peaks[2]}


def create_psana_peakfinder8(options: dict[str, Any]) -> PsanaPeakfinder8Counter:
    return PsanaPeakfinder8Counter(options)
