"""The in-place normalizations give the results of the original multi-pass code (float32 round-off)."""

from __future__ import annotations

import numpy as np
import pytest

from sfx_cnn_veto.core import normalize
from sfx_cnn_veto.errors import FrameReadError


# The original implementations, kept verbatim as the reference.
def standardize_reference(frame, *, eps=1e-6):
    frame, good = normalize._finite(frame)
    values = frame if good is None else frame[good]
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    out = (frame - np.float32(mean)) / np.float32(std + eps)
    if good is not None:
        out[~good] = 0.0
    return out


def robust_reference(frame, *, min_scale=1.0, subsample=4):
    frame, good = normalize._finite(frame)
    sample = frame[::subsample, ::subsample] if subsample > 1 else frame
    if good is not None:
        sample = sample[good[::subsample, ::subsample]] if subsample > 1 else frame[good]
        if sample.size == 0:
            sample = frame[good]
    median = np.float32(np.median(sample))
    mad = np.float32(np.median(np.abs(sample - median)))
    scale = np.float32(max(1.4826 * float(mad), min_scale))
    out = (frame - median) / scale
    out = np.sign(out) * np.log1p(np.abs(out))
    if good is not None:
        out[~good] = 0.0
    return out.astype(np.float32, copy=False)


def frames():
    rng = np.random.default_rng(11)
    base = (rng.poisson(3.0, (350, 350)) * 10 + 1000 + rng.standard_normal((350, 350)) * 3).astype(np.float32)
    spots = base.copy()
    spots[rng.integers(0, 350, 40), rng.integers(0, 350, 40)] += 3e4
    nan = spots.copy()
    nan[:20] = np.nan
    nan[50, 50] = np.inf
    big = rng.standard_normal((700, 900)).astype(np.float32) * 50 + 1e4  # pedestal >> noise
    return {
        "poisson": base,
        "spots": spots,
        "nan_and_inf": nan,
        "pedestal": big,
        "view": big[100:450, 200:550],  # a non-contiguous crop view
        "int16": (base / 10).astype(np.int16),
        "float64": base.astype(np.float64) * 1.5,
        "constant": np.full((350, 350), 7.0, np.float32),
        "negative": -base,
    }


@pytest.mark.parametrize("name", list(frames()))
def test_standardize_matches_reference(name):
    frame = frames()[name]
    got, want = normalize.standardize(frame), standardize_reference(frame)
    assert got.dtype == np.float32 and got.shape == frame.shape
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", list(frames()))
def test_robust_matches_reference(name):
    frame = frames()[name]
    got, want = normalize.robust(frame), robust_reference(frame)
    assert got.dtype == np.float32 and got.shape == frame.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_inputs_not_modified_and_mostly_nan_refused():
    frame = frames()["spots"]
    copy = frame.copy()
    normalize.standardize(frame)
    normalize.robust(frame)
    np.testing.assert_array_equal(frame, copy)
    bad = np.full((350, 350), np.nan, np.float32)
    for func in (normalize.standardize, normalize.robust):
        with pytest.raises(FrameReadError, match="NaN"):
            func(bad)
