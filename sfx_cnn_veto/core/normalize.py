"""Per-frame normalization, in NumPy so every host runs the very same code.

``standardize``
    The paper's: subtract the frame's mean, divide by its standard deviation.
    Hot pixels and strong background move both, which is one reason the
    paper's network failed on runs with other conditions.
``robust`` (default for new models)
    Subtract the median, divide by a robust noise scale (1.4826 x MAD, floored),
    then compress with a signed ``log1p``. Invariant to detector gain and
    pedestal offsets, keeps a Bragg spot's contrast against the local noise,
    and stops one hot pixel (1e4 sigma) from dominating the frame.
``despeckle`` (the default pipeline's)
    Clip every pixel to the largest of its 8 neighbours, then ``robust``. An
    isolated bright pixel (hot pixel, zinger) drops to its neighbourhood; a
    Bragg spot of two or more pixels keeps its contrast. peakfinder8 labels
    with ``min_pix_count >= 2`` never count single pixels either, so the
    network sees what the labeller counts, whatever a run's hot-pixel map.
``despike``
    Only pixels more than ``k`` noise scales above all 8 neighbours drop to
    them (weak one-pixel spots keep their peak), then ``robust``.
``none``
    Float32 cast only.

Non-finite pixels (masked, NaN, Inf) are set to the normalized background (0).
"""

from __future__ import annotations

import numpy as np

from sfx_cnn_veto.errors import ConfigError, FrameReadError

METHODS = ("standardize", "robust", "none")

#: Frames with more than this fraction of non-finite pixels are not scored.
MAX_NONFINITE_FRACTION = 0.5


def _finite(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    frame = np.asarray(frame, dtype=np.float32)
    good = np.isfinite(frame)
    if good.all():
        return frame, None
    bad_fraction = 1.0 - good.mean()
    if bad_fraction > MAX_NONFINITE_FRACTION:
        raise FrameReadError(f"{bad_fraction:.0%} of the frame's pixels are NaN or infinite")
    return frame, good


def _row_sums(values: np.ndarray) -> float:
    """Sum of a 2-D float32 array: float32 sums of rows (pairwise), added in float64."""
    return float(np.add.reduce(np.add.reduce(values, axis=-1), dtype=np.float64))


# The functions below make one output array and work in place on it: every
# extra temporary of a 350x350 frame costs a pass over memory plus, above
# malloc's mmap threshold, fresh pages (measured: the old robust() spent
# 1-3 ms a frame on six temporaries; this one ~0.15 ms).

def standardize(frame: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """``(frame - mean) / std``, per frame, as in the paper."""
    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim == 2 and frame.size:
        total = _row_sums(frame)
        if np.isfinite(total):  # NaN or Inf anywhere makes the sum non-finite
            mean = total / frame.size
            out = np.subtract(frame, np.float32(mean), dtype=np.float32)
            # float64 sum of squares: row dot products (float32, 350 terms) added in float64;
            # the float32-rounded mean is corrected for (exact algebra: E[(x-m)^2] - (E[x]-m)^2)
            offset = float(np.add.reduce(np.add.reduce(out, axis=-1), dtype=np.float64)) / frame.size
            squares = float(np.add.reduce(np.einsum("ij,ij->i", out, out), dtype=np.float64)) / frame.size
            std = float(np.sqrt(max(squares - offset * offset, 0.0)))
            np.divide(out, np.float32(std + eps), out=out)
            return out
    frame, good = _finite(frame)
    values = frame if good is None else frame[good]
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    out = (frame - np.float32(mean)) / np.float32(std + eps)
    if good is not None:
        out[~good] = 0.0
    return out


def robust(frame: np.ndarray, *, min_scale: float = 1.0, subsample: int = 4) -> np.ndarray:
    """Signed log of ``(frame - median) / max(1.4826 MAD, min_scale)``.

    Parameters
    ----------
    frame : ndarray
        One 2-D frame in ADU.
    min_scale : float
        Floor of the noise scale (ADU), so a flat, noiseless frame is not blown up.
    subsample : int
        Estimate median and MAD on every ``subsample``-th pixel of each row
        and column (1/16 of the pixels by default: 4x faster, same estimate).
    """
    frame, good = _finite(frame)
    sample = frame[::subsample, ::subsample] if subsample > 1 else frame
    if good is not None:
        sample = sample[good[::subsample, ::subsample]] if subsample > 1 else frame[good]
        if sample.size == 0:
            sample = frame[good]
    median = np.float32(np.median(sample))
    mad = np.float32(np.median(np.abs(sample - median)))
    scale = np.float32(max(1.4826 * float(mad), min_scale))
    out = np.subtract(frame, median, dtype=np.float32)
    np.divide(out, scale, out=out)
    # sign(y) * log1p(|y|), as copysign through the IEEE sign bit (a masked
    # np.negative(where=) took 2.7 ms here; this 20 us)
    bits = out.view(np.uint32)
    sign = np.bitwise_and(bits, np.uint32(0x80000000))
    np.abs(out, out=out)
    np.log1p(out, out=out)
    np.bitwise_or(bits, sign, out=bits)
    if good is not None:
        out[~good] = 0.0
    return out


def despeckle_raw(frame: np.ndarray) -> np.ndarray:
    """``min(x, max of the 8 neighbours)`` per pixel (edges use the neighbours that exist)."""
    frame = np.asarray(frame, dtype=np.float32)
    h, w = frame.shape
    if h < 3 or w < 3:
        return frame.copy()
    pad = np.pad(frame, 1, mode="edge")
    # the max over the 8 neighbours, excluding the pixel itself: edge padding repeats the
    # pixel at the border, so use -inf padding instead
    pad[0, :] = -np.inf
    pad[-1, :] = -np.inf
    pad[:, 0] = -np.inf
    pad[:, -1] = -np.inf
    neigh = np.maximum(pad[:-2, :-2], pad[:-2, 1:-1])
    np.maximum(neigh, pad[:-2, 2:], out=neigh)
    np.maximum(neigh, pad[1:-1, :-2], out=neigh)
    np.maximum(neigh, pad[1:-1, 2:], out=neigh)
    np.maximum(neigh, pad[2:, :-2], out=neigh)
    np.maximum(neigh, pad[2:, 1:-1], out=neigh)
    np.maximum(neigh, pad[2:, 2:], out=neigh)
    return np.minimum(frame, neigh)


def despeckle(frame: np.ndarray, *, min_scale: float = 1.0, subsample: int = 4) -> np.ndarray:
    """Isolated-pixel removal (:func:`despeckle_raw`) followed by :func:`~sfx_cnn_veto.core.normalize.robust`.

    Non-finite pixels are first set to the frame's median so they neither
    spread nor count as spots (the robust step then sets them to 0).
    """
    frame, good = _finite(frame)
    if good is not None:
        fill = np.float32(np.median(frame[good]))
        frame = np.where(good, frame, fill).astype(np.float32)
    return robust(despeckle_raw(frame), min_scale=min_scale, subsample=subsample)


def despike_raw(frame: np.ndarray, *, k: float = 20.0, min_scale: float = 1.0, subsample: int = 4) -> np.ndarray:
    """Set a pixel to the largest of its 8 neighbours only where it stands more than ``k`` noise scales above it.

    The noise scale is the frame's robust one (1.4826 MAD, as :func:`robust`).
    Hot pixels and zingers stand 40-500 scales above their neighbourhood in the
    simulated runs; the brightest pixel of a weak Bragg spot, 5-20. Unlike
    :func:`despeckle_raw`, which clips every pixel, weak 1-3 pixel spots keep
    their peak.
    """
    frame = np.asarray(frame, dtype=np.float32)
    sample = frame[::subsample, ::subsample] if subsample > 1 else frame
    median = np.float32(np.median(sample))
    scale = np.float32(max(1.4826 * float(np.median(np.abs(sample - median))), min_scale))
    neigh = despeckle_raw(frame)  # min(x, max8): equals max8 wherever x > max8
    spike = (frame - neigh) > np.float32(k) * scale
    if not spike.any():
        return frame.copy()
    return np.where(spike, neigh, frame)


def despike(frame: np.ndarray, *, k: float = 20.0, min_scale: float = 1.0, subsample: int = 4) -> np.ndarray:
    """Removal of pixels far above all their neighbours (:func:`despike_raw`), then ``robust``.

    Non-finite pixels are first set to the frame's median, as in :func:`despeckle`.
    """
    frame, good = _finite(frame)
    if good is not None:
        fill = np.float32(np.median(frame[good]))
        frame = np.where(good, frame, fill).astype(np.float32)
    return robust(despike_raw(frame, k=k, min_scale=min_scale, subsample=subsample),
                  min_scale=min_scale, subsample=subsample)


def none(frame: np.ndarray) -> np.ndarray:
    frame, good = _finite(frame)
    if good is not None:
        frame = frame.copy()
        frame[~good] = 0.0
    return frame


_FUNCS = {"standardize": standardize, "robust": robust, "none": none}


def normalize(frame: np.ndarray, *, method: str = "robust", **params) -> np.ndarray:
    """Normalize one frame with a built-in ``method`` (plugins add more through hooks)."""
    try:
        func = _FUNCS[method]
    except KeyError:
        raise ConfigError(f"normalize method {method!r}: expected one of {', '.join(METHODS)}") from None
    return func(frame, **params)
