"""Multi-panel detectors for the simulator: lay an assembled frame out as a raw slab plus its geometry.

Real detectors deliver a raw slab (panels side by side, some rotated, with
gaps between them in the lab) and a CrystFEL geometry. :func:`to_slab` samples
an assembled frame at each raw pixel's centre, so the veto on
``(slab, geometry)`` must see exactly the pixels it sees on the assembled
frame, with the gaps masked.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sfx_cnn_veto.io.geometry import Geometry, Panel

#: ``(fs, ss)`` unit vectors of a panel turned by 0, 90, 180 and 270 degrees.
_TURNS = {
    0: ((1.0, 0.0), (0.0, 1.0)),
    90: ((0.0, 1.0), (-1.0, 0.0)),
    180: ((-1.0, 0.0), (0.0, -1.0)),
    270: ((0.0, -1.0), (1.0, 0.0)),
}


def rotated_panel(name: str, slab_origin: tuple[int, int], shape: tuple[int, int], turn: int,
                  lab_box: tuple[int, int], *, res: float | None = None) -> Panel:
    """A panel of ``shape`` (ss, fs) at ``slab_origin`` (row, col) of the slab, turned by ``turn`` degrees,
    whose lab footprint's lower corner is ``lab_box`` (x, y) in pixels."""
    fs, ss = _TURNS[turn]
    nss, nfs = shape
    # the first pixel's outer corner: the footprint corner the fs and ss vectors point away from
    extent_x = nfs * fs[0] + nss * ss[0]
    extent_y = nfs * fs[1] + nss * ss[1]
    corner_x = lab_box[0] + (-extent_x if extent_x < 0 else 0)
    corner_y = lab_box[1] + (-extent_y if extent_y < 0 else 0)
    row, col = slab_origin
    return Panel(name, col, col + nfs - 1, row, row + nss - 1, fs=fs, ss=ss,
                 corner_x=float(corner_x), corner_y=float(corner_y), res=res)


def eight_panel_geometry(frame_shape: Sequence[int] = (700, 700), *, gap: int = 6,
                         res: float | None = None) -> Geometry:
    """Eight panels tiling an assembled ``frame_shape`` (beam at its centre), two per quadrant; the
    panels of two quadrants are turned by 90 and 270 degrees, the others by 0 and 180 (as CSPAD and
    ePix quadrants are), with ``gap``-pixel gaps between panels.

    The raw slab stacks the eight panels in two columns of four, in DAQ order.
    """
    height, width = int(frame_shape[0]), int(frame_shape[1])
    half_h, half_w = height // 2, width // 2
    panels = []
    for q, (qx, qy) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
        x0, y0 = -half_w + qx * half_w, -half_h + qy * half_h
        turned = q % 2 == 1
        for k in range(2):
            if turned:
                turn, foot = (90, 270)[k], (half_w // 2 - gap, half_h - gap)
                box = (x0 + k * (half_w // 2) + gap // 2, y0 + gap // 2)
                shape = (foot[0], foot[1])  # fs runs along y: ss = width of the footprint
            else:
                turn, foot = (0, 180)[k], (half_w - gap, half_h // 2 - gap)
                box = (x0 + gap // 2, y0 + k * (half_h // 2) + gap // 2)
                shape = (foot[1], foot[0])
            index = 2 * q + k
            origin = ((index % 4) * (half_h // 2), (index // 4) * max(half_w, half_h))
            panels.append(rotated_panel(f"q{q}a{k}", origin, shape, turn, box, res=res))
    return Geometry(tuple(panels), source=f"eight panels over {height}x{width}")


def to_slab(frame: np.ndarray, geometry: Geometry, *, fill: float = 0.0) -> np.ndarray:
    """The raw slab of ``geometry`` whose pixels read the assembled ``frame`` (beam at its centre).

    Each raw pixel takes the assembled pixel its centre falls in; raw pixels
    that fall outside the frame, and slab pixels no panel uses, get ``fill``.
    """
    frame = np.asarray(frame)
    height, width = frame.shape
    x, y = geometry.pixel_maps()
    rows = np.floor(y + height / 2.0)
    cols = np.floor(x + width / 2.0)
    inside = np.isfinite(rows) & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    slab = np.full(x.shape, fill, dtype=frame.dtype)
    slab[inside] = frame[rows[inside].astype(np.int64), cols[inside].astype(np.int64)]
    return slab


def assembled_good(geometry: Geometry, frame_shape: Sequence[int]) -> np.ndarray:
    """Which pixels of the assembled frame some panel covers (the rest are gaps)."""
    height, width = int(frame_shape[0]), int(frame_shape[1])
    x, y = geometry.pixel_maps()
    rows = np.floor(y + height / 2.0)
    cols = np.floor(x + width / 2.0)
    inside = np.isfinite(rows) & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    good = np.zeros((height, width), dtype=bool)
    good[rows[inside].astype(np.int64), cols[inside].astype(np.int64)] = True
    return good


def cspad_like_geometry(frame_shape: Sequence[int] = (700, 700), *, gap: int = 2,
                        res: float | None = None) -> Geometry:
    """64 square ASICs in four quadrants of 4x4 over the assembled ``frame_shape`` (beam at its centre),
    each quadrant turned by 0, 90, 180 or 270 degrees as CSPAD quadrants are, with ``gap``-pixel gaps.

    The ASICs' side is ``min(frame_shape) // 8 - gap``; the raw slab is 8x8 ASICs (DAQ order: quadrant
    by quadrant, column by column), every ASIC the same shape, tiling the slab without a gap.
    """
    cell = min(int(frame_shape[0]), int(frame_shape[1])) // 8
    side = cell - gap
    if side < 8:
        raise ValueError(f"a CSPAD-like layout needs a frame of at least {8 * (8 + gap)} pixels, got {frame_shape}")
    panels = []
    for q, (qx, qy) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
        for i in range(4):
            for j in range(4):
                box = (-4 * cell + (4 * qx + j) * cell + gap // 2, -4 * cell + (4 * qy + i) * cell + gap // 2)
                n = 16 * q + 4 * i + j
                origin = ((n % 8) * side, (n // 8) * side)
                panels.append(rotated_panel(f"q{q}a{4 * i + j}", origin, (side, side), 90 * q, box, res=res))
    return Geometry(tuple(panels), source=f"CSPAD-like 64 ASICs over {frame_shape[0]}x{frame_shape[1]}")


#: A JUNGFRAU module: 512 slow-scan x 1024 fast-scan pixels.
JUNGFRAU_MODULE = (512, 1024)


def jungfrau4m_geometry(*, gap: int = 8, res: float | None = None) -> Geometry:
    """A JUNGFRAU 4M: eight 512x1024 modules in two columns of four around the beam, the lower four
    turned by 180 degrees, ``gap`` pixels apart; the raw slab stacks them, 4096x1024 (as psana's
    ``(8, 512, 1024)`` flattened)."""
    nss, nfs = JUNGFRAU_MODULE
    panels = []
    top = -(4 * nss + 3 * gap) // 2
    for n in range(8):
        column, row = n // 4, n % 4
        box = (-nfs - gap // 2 if column == 0 else gap - gap // 2, top + row * (nss + gap))
        turn = 180 if row >= 2 else 0
        panels.append(rotated_panel(f"m{n}", (n * nss, 0), (nss, nfs), turn, box, res=res))
    return Geometry(tuple(panels), source="JUNGFRAU 4M-like, 8 modules of 512x1024")
