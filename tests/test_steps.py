"""Crop and normalize: the NumPy steps every host runs."""

import numpy as np
import pytest

from sfx_cnn_veto import ConfigError, FrameReadError
from sfx_cnn_veto.core.crop import crop, crop_region
from sfx_cnn_veto.core.normalize import normalize, robust, standardize


def test_centre_crop_default_is_the_papers_350():
    frame = np.arange(1750 * 1750, dtype=np.float32).reshape(1750, 1750)
    out = crop(frame)
    assert out.shape == (350, 350)
    assert out[0, 0] == frame[700, 700]


def test_crop_with_beam_centre_and_clamping():
    frame = np.zeros((700, 800))
    assert crop_region(frame.shape, (350, 350), (370.0, 420.0)) == (slice(195, 545), slice(245, 595))
    # a window that would leave the frame is moved inside, keeping its size
    assert crop_region(frame.shape, (350, 350), (10.0, 790.0)) == (slice(0, 350), slice(450, 800))


def test_frame_smaller_than_crop_names_both_shapes():
    with pytest.raises(FrameReadError, match=r"200x300 is smaller than the 350x350 crop"):
        crop(np.zeros((200, 300)))


def test_standardize_is_zero_mean_unit_std():
    rng = np.random.default_rng(1)
    out = standardize(rng.normal(100, 7, (350, 350)))
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3


def test_robust_is_invariant_to_gain_and_offset():
    rng = np.random.default_rng(2)
    frame = rng.poisson(20, (350, 350)).astype(np.float32)
    frame[100, 100] += 5000  # a Bragg spot
    a = robust(frame)
    b = robust(frame * 2.0 + 37.0)  # 2x gain, pedestal offset
    np.testing.assert_allclose(a, b, atol=1e-4)
    # the spot stands out, compressed, and a hot pixel cannot blow up the scale
    assert 5 < a[100, 100] < 12


def test_robust_beats_standardize_against_one_hot_pixel():
    rng = np.random.default_rng(3)
    frame = rng.poisson(20, (350, 350)).astype(np.float32)
    frame[50, 50] += 300  # a spot
    hot = frame.copy()
    hot[0, 0] = 1e7  # one hot pixel
    spot_std = standardize(hot)[50, 50] / standardize(frame)[50, 50]
    spot_rob = robust(hot)[50, 50] / robust(frame)[50, 50]
    assert spot_std < 0.2  # standardize loses the spot's contrast
    assert abs(spot_rob - 1) < 0.01


def test_non_finite_pixels_become_background_and_mostly_nan_is_an_error():
    frame = np.random.default_rng(4).poisson(20, (350, 350)).astype(np.float32)
    frame[:10] = np.nan
    frame[20, 20] = np.inf
    for method in ("standardize", "robust", "none"):
        out = normalize(frame, method=method)
        assert np.isfinite(out).all()
        assert out[0, 0] == 0
    with pytest.raises(FrameReadError, match="NaN or infinite"):
        normalize(np.full((350, 350), np.nan), method="robust")


def test_unknown_method():
    with pytest.raises(ConfigError, match="expected one of standardize, robust, none"):
        normalize(np.zeros((4, 4)), method="magic")


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float64, np.float32])
def test_dtypes_are_accepted(dtype):
    frame = (np.random.default_rng(5).poisson(20, (350, 350))).astype(dtype)
    assert robust(frame).dtype == np.float32
