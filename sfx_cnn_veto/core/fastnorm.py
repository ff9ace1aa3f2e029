"""The ``despeckle`` and ``robust`` normalizations as one compiled pass (numba), for the veto's hot path.

:func:`compiled_normalizer` returns, for the NumPy functions
:func:`~sfx_cnn_veto.core.normalize.despeckle` and
:func:`~sfx_cnn_veto.core.normalize.robust`, a function that gives their
result (to float32 round-off: ``log1p`` may differ in the last bit) in one
compiled call: isolated-pixel clip (despeckle), the sampled median and MAD,
``(x - median) / (1.4826 MAD)`` and the signed ``log1p``, with no NumPy
temporaries.

The rare cases keep the NumPy code, so they give the very same result: a frame
with non-finite pixels (NaN, Inf: their fill, or the refusal of a mostly-NaN
frame), a frame whose MAD is 0 (the noise scale's fallbacks:
:func:`~sfx_cnn_veto.core.normalize.noise_scale`), and anything but a 2-D frame.
The compiled pass finds them and hands over; nothing is guessed.

Numba is imported on first use only; without it (or for other
normalizations) :func:`compiled_normalizer` returns ``None`` and the caller
keeps the NumPy function.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable

import numpy as np

from sfx_cnn_veto.core import normalize

#: Parameters the compiled pass understands (others: the NumPy function is kept).
PARAMS = frozenset({"subsample"})


@functools.lru_cache(maxsize=1)
def _kernels() -> dict[str, Callable] | None:
    """The compiled kernels, or None without numba."""
    try:
        from numba import njit
    except ImportError:
        return None

    @njit(boundscheck=False, nogil=True, cache=True)
    def edge_pixel(frame, i, j):
        """min(x, max of the existing 8 neighbours) at one pixel (the border rows and columns)."""
        h, w = frame.shape
        m = frame[i, j]
        first = True
        for a in range(max(i - 1, 0), min(i + 2, h)):
            for b in range(max(j - 1, 0), min(j + 2, w)):
                if a != i or b != j:
                    if first or frame[a, b] > m:
                        m = frame[a, b]
                        first = False
        return min(frame[i, j], m)

    @njit(boundscheck=False, nogil=True, cache=True)
    def despeckle_into(frame, out):
        """out = min(x, max of the 8 neighbours); the frame is at least 3x3."""
        h, w = frame.shape
        for i in range(1, h - 1):
            up, row, down = frame[i - 1], frame[i], frame[i + 1]
            dst = out[i]
            for j in range(1, w - 1):
                m = max(max(max(up[j - 1], up[j]), max(up[j + 1], row[j - 1])),
                        max(max(row[j + 1], down[j - 1]), max(down[j], down[j + 1])))
                dst[j] = min(row[j], m)
        for j in range(w):
            out[0, j] = edge_pixel(frame, 0, j)
            out[h - 1, j] = edge_pixel(frame, h - 1, j)
        for i in range(1, h - 1):
            out[i, 0] = edge_pixel(frame, i, 0)
            out[i, w - 1] = edge_pixel(frame, i, w - 1)

    @njit(boundscheck=False, nogil=True, cache=True)
    def median_mad(frame, step):
        """float32 median of frame[::step, ::step] and float32 median of |sample - median|."""
        h, w = frame.shape
        nh = (h + step - 1) // step
        nw = (w + step - 1) // step
        sample = np.empty(nh * nw, dtype=np.float32)
        k = 0
        for i in range(0, h, step):
            for j in range(0, w, step):
                sample[k] = frame[i, j]
                k += 1
        med = np.float32(np.median(sample))
        for k in range(sample.size):
            sample[k] = abs(sample[k] - med)
        mad = np.float32(np.median(sample))
        return med, mad

    @njit(boundscheck=False, nogil=True, cache=True)
    def scale_into(frame, med, scale, out):
        """out = (x - med) / scale, in float32 (as NumPy's subtract and divide)."""
        h, w = frame.shape
        for i in range(h):
            src, dst = frame[i], out[i]
            for j in range(w):
                dst[j] = np.float32(src[j] - med) / scale

    return {"despeckle_into": despeckle_into, "median_mad": median_mad, "scale_into": scale_into}


def _pass(frame: Any, subsample: int, despeckle: bool) -> np.ndarray:
    """The compiled pass; NumPy's function on the cases it does not cover (see the module)."""
    numpy_func = normalize.despeckle if despeckle else normalize.robust
    k = _kernels()
    frame = np.ascontiguousarray(frame, dtype=np.float32)
    if frame.ndim != 2 or min(frame.shape) < 3 or subsample < 1 or not math.isfinite(normalize._row_sums(frame)):
        return numpy_func(frame, subsample=subsample)
    if despeckle:
        clipped = np.empty_like(frame)
        k["despeckle_into"](frame, clipped)
    else:
        clipped = frame
    med, mad = k["median_mad"](clipped, subsample)
    scale = normalize.MAD_TO_SIGMA * float(mad)
    if not scale > normalize.RELATIVE_FLOOR * abs(float(med)):
        return normalize.robust(clipped, subsample=subsample)  # the MAD is 0: the fallbacks
    out = clipped if despeckle else np.empty_like(frame)
    k["scale_into"](clipped, med, np.float32(scale), out)
    return normalize.signed_log1p(out)


def compiled_despeckle(frame: Any, *, subsample: int = 4) -> np.ndarray:
    """:func:`~sfx_cnn_veto.core.normalize.despeckle` in one compiled pass (same result, float round-off)."""
    return _pass(frame, int(subsample), True)


def compiled_robust(frame: Any, *, subsample: int = 4) -> np.ndarray:
    """:func:`~sfx_cnn_veto.core.normalize.robust` in one compiled pass (same result, float round-off)."""
    return _pass(frame, int(subsample), False)


def compiled_normalizer(func: Callable, params: dict[str, Any]) -> Callable | None:
    """The compiled equivalent of the NumPy normalization ``func`` with ``params``, or None.

    None when numba is not installed, ``func`` is not the built-in
    ``despeckle`` or ``robust``, ``params`` holds anything but ``subsample``,
    or the environment sets ``SFX_CNN_VETO_COMPILED_NORMALIZE=0``.
    """
    if os.environ.get("SFX_CNN_VETO_COMPILED_NORMALIZE", "1") == "0":
        return None
    compiled = {normalize.despeckle: compiled_despeckle, normalize.robust: compiled_robust}.get(func)
    if compiled is None or not set(params) <= PARAMS or _kernels() is None:
        return None
    return compiled
