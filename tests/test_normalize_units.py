"""Unit-free normalization: ADU and photon-unit frames (the same frame times 1/8, 8 or 30) normalize alike."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sfx_cnn_veto.core.crop import crop  # noqa: E402
from sfx_cnn_veto.core.normalize import despeckle, despike, noise_scale, robust  # noqa: E402
from sfx_cnn_veto.simulate import RunSimulator, default_experiment  # noqa: E402

FACTORS = (1 / 8, 8.0, 30.0)


def _frames():
    rng = np.random.default_rng(21)
    adu = (rng.normal(1000, 3, (350, 350)) + rng.poisson(0.3, (350, 350)) * 8).round().astype(np.float32)
    adu[100:103, 200:203] += 400  # a Bragg spot
    photons = rng.poisson(0.05, (350, 350)).astype(np.float32)  # a photon-counting frame: MAD 0
    photons[50:52, 50:52] += 30
    hot_photons = photons.copy()
    hot_photons[::4, ::4][:3, :3] = 5e5  # hot pixels in the sample: the scale must not follow them
    flat = np.full((350, 350), 12.0, np.float32)
    off_sample = np.zeros((350, 350), np.float32)
    off_sample[1::4, 1::4] = 3.0  # nothing varies in the every-4th sample; the frame does
    weak_noise = (rng.normal(0, 0.2, (350, 350))).astype(np.float32)  # 1.4826 MAD < 1 in these units
    return {"adu": adu, "photons": photons, "hot_photons": hot_photons, "flat": flat,
            "off_sample": off_sample, "weak_noise": weak_noise}


@pytest.mark.parametrize("name", list(_frames()))
@pytest.mark.parametrize("k", FACTORS)
def test_noise_scale_scales_with_the_unit(name, k):
    frame = _frames()[name]
    median, scale = noise_scale(frame)
    median_k, scale_k = noise_scale(frame * np.float32(k))
    assert scale > 0
    np.testing.assert_allclose(scale_k, k * scale, rtol=1e-6)
    np.testing.assert_allclose(median_k, k * median, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("name", list(_frames()))
@pytest.mark.parametrize("k", FACTORS)
@pytest.mark.parametrize("func", [robust, despeckle, despike], ids=lambda f: f.__name__)
def test_normalizations_are_the_same_in_any_unit(func, k, name):
    frame = _frames()[name]
    np.testing.assert_allclose(func(frame * np.float32(k)), func(frame), atol=1e-5, rtol=0)


def test_a_mostly_zero_photon_frame_keeps_its_spots_and_hot_pixels_do_not_set_the_scale():
    frames = _frames()
    _, scale = noise_scale(frames["photons"])
    _, hot_scale = noise_scale(frames["hot_photons"])
    assert 0 < scale < 1  # one photon stands above the noise of a mostly-zero frame
    assert hot_scale == scale  # nine 5e5 pixels (0.1% of the sample) move no percentile used
    assert robust(frames["photons"])[50, 50] > 3


def test_flat_and_all_zero_frames_normalize_to_zero():
    assert not robust(np.full((64, 64), 7.0, np.float32)).any()
    assert not robust(np.zeros((64, 64), np.float32)).any()
    median, scale = noise_scale(np.zeros((64, 64), np.float32))
    assert median == 0 and scale > 0


@pytest.fixture(scope="module")
def shipped_veto():
    from sfx_cnn_veto.core.model import default_model_path
    from sfx_cnn_veto.core.pipeline import Veto

    return Veto.load(default_model_path(), backend="keras")


def _simulated_crops(run: str, n: int) -> list[np.ndarray]:
    experiment = default_experiment("streptavidin")
    config = experiment.run(run)
    sim = RunSimulator(config, experiment.run_seed(config))
    return [np.ascontiguousarray(crop(sim.frame(i)[0], shape=(350, 350)), dtype=np.float32) for i in range(n)]


@pytest.mark.parametrize("run", ["run90", "run100"])
def test_shipped_model_scores_adu_and_photon_units_alike(shipped_veto, run):
    """The same simulated frames in ADU, times 8 and 30, and divided by 8 (photons): scores within 1e-3."""
    crops = _simulated_crops(run, 6)
    norm = shipped_veto.metadata.normalize
    assert norm == "despeckle"

    def scores(k):
        return shipped_veto.predict_batch(np.stack([despeckle(c * np.float32(k)) for c in crops])[..., None])

    base = scores(1.0)
    for k in FACTORS:
        np.testing.assert_allclose(scores(k), base, atol=1e-3, rtol=0, err_msg=f"frames times {k}")
