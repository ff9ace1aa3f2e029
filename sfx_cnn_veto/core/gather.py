"""The crop-map gather as a compiled loop (numba): ``block.flat[index]``, 2x faster than ``np.take`` here.

``np.take`` on the CSPAD's 64-panel slab (a 131x1367 block, a 350x350 crop)
spends most of its time per element (index checks, dtype dispatch); the loop
below reads the int32 index once, in order. Without numba, or for arrays it does
not cover, :func:`take` is ``np.take``: the same values.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

#: dtypes the compiled gather covers (others, e.g. bool masks: np.take).
DTYPES = (np.float32, np.float64, np.uint16, np.int16, np.int32, np.uint32, np.uint8, np.int8)


@functools.lru_cache(maxsize=1)
def _kernel() -> Callable | None:
    try:
        from numba import njit
    except ImportError:
        return None

    @njit(boundscheck=False, nogil=True, cache=True)
    def gather(src, index, out):
        for k in range(index.size):
            out[k] = src[index[k]]

    return gather


def flat_index(index: np.ndarray, size: int) -> np.ndarray:
    """``index`` as the gather wants it: int32 when ``size`` (the block's pixels) allows, C-contiguous."""
    dtype = np.int32 if size < 2**31 else np.int64
    return np.ascontiguousarray(index, dtype=dtype)


def take(block: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``np.take(block.reshape(-1), index)``, with ``index`` within the block (not checked).

    A strided block (a view into a full frame in memory) is copied first: a
    compiled 2-D gather, dividing each index by the row length, was 3x slower
    than the copy and the 1-D gather here.
    """
    kernel = _kernel()
    if kernel is None or block.dtype.type not in DTYPES or block.dtype.byteorder not in "=|":
        return np.take(block.reshape(-1), index)
    flat = np.ascontiguousarray(block).reshape(-1)
    out = np.empty(index.shape, dtype=block.dtype)
    kernel(flat, index.reshape(-1), out.reshape(-1))
    return out
