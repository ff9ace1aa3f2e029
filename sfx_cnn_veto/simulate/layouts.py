"""Detector layouts of a simulated run: the assembled frame itself, or a multi-panel raw slab plus its geometry.

``simulate --layout`` picks one: ``assembled`` (one panel, the frame as the
physics made it), ``eight-panel`` (:func:`~sfx_cnn_veto.simulate.panels.eight_panel_geometry`),
``cspad`` (64 ASICs, :func:`~sfx_cnn_veto.simulate.panels.cspad_like_geometry`),
``jungfrau4m`` (8 modules of 512x1024, :func:`~sfx_cnn_veto.simulate.panels.jungfrau4m_geometry`),
or a CrystFEL ``.geom`` file whose panels the assembled frame covers (e.g. a real CSPAD geometry on
frames of 1750x1750 or more). The slab's pixels read the assembled frame at their centres
(:func:`~sfx_cnn_veto.simulate.panels.to_slab`); the written geometry puts the run's beam at x = y = 0.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.geometry import Geometry, moved, read_geometry
from sfx_cnn_veto.simulate import panels as P

LAYOUTS = ("assembled", "eight-panel", "cspad", "jungfrau4m")


@dataclasses.dataclass(frozen=True)
class SlabLayout:
    """How a run's assembled frames become raw slabs.

    Attributes
    ----------
    name : the layout's name (or the .geom file it came from)
    sampling : the geometry with the beam at the assembled frame's centre (what :func:`to_slab` reads)
    geometry : the geometry written beside the run: the beam (``RunConfig.beam_center``) at x = y = 0
    outside : fraction of the panels' pixels that fall outside the assembled frame (masked in the slab)
    """

    name: str
    sampling: Geometry
    geometry: Geometry
    outside: float

    @property
    def slab_shape(self) -> tuple[int, ...]:
        return self.geometry.frame_shape

    def slab(self, frame: np.ndarray) -> np.ndarray:
        """The raw slab of one assembled frame (0 where no panel pixel, or outside the frame)."""
        return P.to_slab(frame, self.sampling, fill=0)

    def slab_mask(self, mask: np.ndarray, gap_bits: int) -> np.ndarray:
        """The run's CXI mask (nonzero = bad) in slab layout; unused slab pixels get ``gap_bits``."""
        return P.to_slab(mask, self.sampling, fill=gap_bits)


def slab_layout(layout: str, frame_shape: Sequence[int], beam_center: Sequence[float], *,
                res: float | None = None) -> SlabLayout | None:
    """The :class:`SlabLayout` named ``layout`` for assembled frames of ``frame_shape``; None for ``assembled``.

    ``beam_center``: the run's beam ``(fs, ss)`` with pixel centres at integers
    (:attr:`RunConfig.beam_center`); ``res``: pixels per metre, written on every panel.
    """
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if layout == "assembled":
        return None
    if layout == "eight-panel":
        sampling = P.eight_panel_geometry((height, width), res=res)
    elif layout == "cspad":
        try:
            sampling = P.cspad_like_geometry((height, width), res=res)
        except ValueError as exc:
            raise ConfigError(f"--layout cspad: {exc}") from exc
    elif layout == "jungfrau4m":
        sampling = P.jungfrau4m_geometry(res=res)
    elif layout.endswith(".geom") and os.path.exists(layout):
        sampling = _file_layout(layout, (height, width), res)
    else:
        raise ConfigError(f"--layout: expected one of {', '.join(LAYOUTS)} or an existing .geom file, got {layout!r}")
    outside = _outside_fraction(sampling, (height, width))
    if outside >= 1.0:
        raise ConfigError(f"--layout {layout}: no panel pixel falls inside the {height}x{width} frame")
    fs0, ss0 = float(beam_center[0]), float(beam_center[1])
    geometry = moved(sampling, dx=width / 2.0 - (fs0 + 0.5), dy=height / 2.0 - (ss0 + 0.5))
    geometry = dataclasses.replace(geometry, source=f"{sampling.source}, beam at the run's centre")
    return SlabLayout(layout, sampling, geometry, outside)


def _file_layout(path: str, frame_shape: tuple[int, int], res: float | None) -> Geometry:
    """A .geom file's panels (res replaced by the run's), refused unless the assembled frame covers them."""
    geometry = read_geometry(path)
    if any(p.plane for p in geometry.panels):
        raise ConfigError(f"--layout {path}: panels in separate planes (dimN = K) are not simulated; "
                          "use a 2-D slab geometry")
    panels = tuple(dataclasses.replace(p, res=res, data=None, mask=None, no_index=False) for p in geometry.panels)
    geometry = Geometry(panels, source=os.path.basename(path))
    x, y = geometry.pixel_maps()
    need_h = 2 * int(np.ceil(np.nanmax(np.abs(y))))
    need_w = 2 * int(np.ceil(np.nanmax(np.abs(x))))
    if frame_shape[0] < need_h or frame_shape[1] < need_w:
        raise ConfigError(f"--layout {path}: its panels span {need_h}x{need_w} pixels around the beam; "
                          f"simulate frames of at least that size (--size {need_h}x{need_w})")
    return geometry


def _outside_fraction(geometry: Geometry, frame_shape: tuple[int, int]) -> float:
    x, y = geometry.pixel_maps()
    used = np.isfinite(x)
    rows = np.floor(y[used] + frame_shape[0] / 2.0)
    cols = np.floor(x[used] + frame_shape[1] / 2.0)
    inside = (rows >= 0) & (rows < frame_shape[0]) & (cols >= 0) & (cols < frame_shape[1])
    return float(1.0 - inside.mean())
