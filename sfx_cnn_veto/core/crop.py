"""Centre crop: the paper's 350x350 window around the beam centre."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sfx_cnn_veto.errors import FrameReadError

DEFAULT_CROP = (350, 350)

Region = tuple[slice, slice]


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
        raise FrameReadError(f"expected a 2-D frame, got shape {tuple(frame_shape)}")
    height, width = int(frame_shape[0]), int(frame_shape[1])
    ch, cw = int(shape[0]), int(shape[1])
    if height < ch or width < cw:
        raise FrameReadError(
            f"frame of shape {height}x{width} is smaller than the {ch}x{cw} crop; "
            "use a smaller crop or another model"
        )
    cy, cx = (height / 2.0, width / 2.0) if center is None else (float(center[0]), float(center[1]))
    top = int(round(cy - ch / 2.0))
    left = int(round(cx - cw / 2.0))
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
