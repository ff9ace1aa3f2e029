"""Per-frame normalization, in NumPy so every host runs the very same code.

``standardize``
    The paper's: subtract the frame's mean, divide by its standard deviation.
    Hot pixels and strong background move both, which is one reason the
    paper's network failed on runs with other conditions.
``robust`` (default for new models)
    Subtract the median, divide by a robust noise scale (1.4826 x MAD;
    :func:`noise_scale`), then compress with a signed ``log1p``. Invariant to
    the unit (ADU or photons), detector gain and pedestal offsets, keeps a
    Bragg spot's contrast against the local noise, and stops one hot pixel
    (1e4 sigma) from dominating the frame.
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


#: sigma / MAD of a normal distribution (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.4826
#: When the MAD is 0: quantiles of the absolute deviation tried next, with sigma / quantile
#: of a normal distribution (1 / Phi^-1((1 + q) / 2)).
DEVIATION_QUANTILES = ((0.9, 1 / 1.6449), (0.99, 1 / 2.5758))
#: sigma / mean absolute deviation of a normal distribution (sqrt(pi / 2)).
MEAN_AD_TO_SIGMA = 1.2533
#: Smallest noise scale, as a fraction of the frame's |median|: spreads below it are float round-off.
RELATIVE_FLOOR = 1e-6


def _sample(frame: np.ndarray, good: np.ndarray | None, subsample: int) -> np.ndarray:
    """Every ``subsample``-th pixel of each row and column (the good ones); all good pixels if none is left."""
    if subsample > 1 and frame.ndim == 2:
        sample = frame[::subsample, ::subsample]
        if good is not None:
            sample = sample[good[::subsample, ::subsample]]
        if sample.size:
            return sample
    return frame if good is None else frame[good]


def _spread(values: np.ndarray, median: np.float32, floor: float) -> float | None:
    """Sigma from the absolute deviations of ``values`` from ``median``: the first estimate above ``floor``.

    ``1.4826 MAD``; then the 90th and 99th percentiles of the deviation
    (scaled as for a normal distribution), which a few hot pixels cannot move;
    then ``1.2533`` x the mean absolute deviation. None if all are <= floor.
    """
    deviation = np.abs(values - median)
    scale = MAD_TO_SIGMA * float(np.float32(np.median(deviation)))
    if scale > floor:
        return scale
    for q, factor in DEVIATION_QUANTILES:
        scale = factor * float(np.quantile(deviation, q))
        if scale > floor:
            return scale
    scale = MEAN_AD_TO_SIGMA * float(deviation.mean(dtype=np.float64))
    return scale if scale > floor else None


def noise_scale(frame: np.ndarray, *, good: np.ndarray | None = None,
                subsample: int = 4) -> tuple[np.float32, np.float32]:
    """A frame's background level and robust noise scale: ``(median, sigma)``, float32, in the frame's units.

    ``sigma`` is ``1.4826 MAD`` of a sample of the pixels. Where more than half
    of them sit on the median (a photon-counting frame of mostly zeros, a flat
    frame), the MAD is 0 and ``sigma`` comes from the 90th or 99th percentile
    of the absolute deviation, or else the mean absolute deviation
    (:func:`_spread`); if all are 0, the same over all the (good) pixels; if
    the frame has no spread at all, ``RELATIVE_FLOOR`` x |median| (or 1 for an
    all-zero frame, which then normalizes to 0 whatever the scale).

    No floor is absolute: ``noise_scale(k * frame)`` is ``k`` times
    ``noise_scale(frame)`` for any ``k > 0``, so ADU and photon units give the
    same normalized frame. (The old ``max(1.4826 MAD, 1.0)`` floored the scale
    at 1 ADU: never active on the simulated ADU frames the shipped model was
    trained on, where 1.4826 MAD >= 2.97, but active on photon-unit frames.)

    Parameters
    ----------
    frame : ndarray
        A 2-D frame (or 1-D values: then ``subsample`` is not used).
    good : ndarray of bool, optional
        The pixels to use (default: all).
    subsample : int
        Use every ``subsample``-th pixel of each row and column (1/16 of the
        pixels by default: 4x faster, same estimate).
    """
    frame = np.asarray(frame, dtype=np.float32)
    sample = _sample(frame, good, subsample)
    median = np.float32(np.median(sample))
    floor = RELATIVE_FLOOR * abs(float(median))
    scale = _spread(sample, median, floor)
    if scale is None:
        everything = frame if good is None else frame[good]
        if everything.size > sample.size:
            scale = _spread(everything, median, floor)
    if scale is None:
        scale = floor if floor > 0 else 1.0
    return median, np.float32(scale)


def robust(frame: np.ndarray, *, subsample: int = 4) -> np.ndarray:
    """Signed log of ``(frame - median) / sigma`` (:func:`noise_scale`): the same for any unit or gain.

    Parameters
    ----------
    frame : ndarray
        One 2-D frame, in any unit (ADU, photons, keV).
    subsample : int
        Estimate median and noise scale on every ``subsample``-th pixel of
        each row and column (:func:`noise_scale`).
    """
    frame, good = _finite(frame)
    median, scale = noise_scale(frame, good=good, subsample=subsample)
    out = np.subtract(frame, median, dtype=np.float32)
    np.divide(out, scale, out=out)
    signed_log1p(out)
    if good is not None:
        out[~good] = 0.0
    return out


def signed_log1p(out: np.ndarray) -> np.ndarray:
    """``sign(y) * log1p(|y|)`` of a float32 array, in place (returns it).

    Copysign through the IEEE sign bit (a masked ``np.negative(where=)`` took
    2.7 ms here; this 20 us).
    """
    bits = out.view(np.uint32)
    sign = np.bitwise_and(bits, np.uint32(0x80000000))
    np.abs(out, out=out)
    np.log1p(out, out=out)
    np.bitwise_or(bits, sign, out=bits)
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


def _finite_filled(frame: np.ndarray) -> np.ndarray:
    """The float32 frame with its non-finite pixels set to the median of the others.

    So they neither spread (:func:`despeckle_raw`) nor count as spots.
    """
    frame, good = _finite(frame)
    if good is not None:
        frame = np.where(good, frame, np.float32(np.median(frame[good]))).astype(np.float32)
    return frame


def despeckle(frame: np.ndarray, *, subsample: int = 4) -> np.ndarray:
    """Isolated-pixel removal (:func:`despeckle_raw`) followed by :func:`robust`.

    Non-finite pixels are first set to the frame's median (the robust step
    then gives them 0).
    """
    return robust(despeckle_raw(_finite_filled(frame)), subsample=subsample)


def despike_raw(frame: np.ndarray, *, k: float = 20.0, subsample: int = 4) -> np.ndarray:
    """Set a pixel to the largest of its 8 neighbours only where it stands more than ``k`` noise scales above it.

    The noise scale is the frame's robust one (:func:`noise_scale`, as :func:`robust`).
    Hot pixels and zingers stand 40-500 scales above their neighbourhood in the
    simulated runs; the brightest pixel of a weak Bragg spot, 5-20. Unlike
    :func:`despeckle_raw`, which clips every pixel, weak 1-3 pixel spots keep
    their peak.
    """
    frame = np.asarray(frame, dtype=np.float32)
    _, scale = noise_scale(frame, subsample=subsample)
    neigh = despeckle_raw(frame)  # min(x, max8): equals max8 wherever x > max8
    spike = (frame - neigh) > np.float32(k) * scale
    if not spike.any():
        return frame.copy()
    return np.where(spike, neigh, frame)


def despike(frame: np.ndarray, *, k: float = 20.0, subsample: int = 4) -> np.ndarray:
    """Removal of pixels far above all their neighbours (:func:`despike_raw`), then :func:`robust`.

    Non-finite pixels are first set to the frame's median, as in :func:`despeckle`.
    """
    return robust(despike_raw(_finite_filled(frame), k=k, subsample=subsample), subsample=subsample)


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
