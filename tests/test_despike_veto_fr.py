"""The ``despike`` normalization and the ``veto_fr`` architecture (full-resolution first convolution)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sfx_cnn_veto import manager  # noqa: E402
from sfx_cnn_veto.core.architectures import flops_estimate  # noqa: E402
from sfx_cnn_veto.core.normalize import despeckle_raw, despike, despike_raw  # noqa: E402


def _noisy(shape=(60, 60), seed=0):
    return np.random.default_rng(seed).normal(100, 5, shape).astype(np.float32)


def test_despike_keeps_a_moderate_one_pixel_spot_and_removes_a_hot_pixel():
    frame = _noisy()
    frame[10, 10] = 1e4            # hot pixel: ~2000 noise scales above its neighbours
    frame[30, 30] = 160            # isolated 1-px spot, 12 noise scales (60 ADU) above background
    frame[45, 45:47] = (190, 150)  # weak 2-px spot
    raw = despike_raw(frame)
    assert raw[10, 10] < 130                       # hot pixel down to its neighbourhood
    assert raw[30, 30] == 160                      # despike keeps the 1-px spot ...
    assert despeckle_raw(frame)[30, 30] < 130      # ... which despeckle erases
    assert raw[45, 45] == 190 and raw[45, 46] == 150
    untouched = np.ones(frame.shape, bool)
    untouched[10, 10] = False
    np.testing.assert_array_equal(raw[untouched], frame[untouched])  # nothing else changes
    out = despike(frame)
    assert out[10, 10] < 2 and out[30, 30] > 2 and out[45, 45] > 2


def test_despike_threshold_scales_with_noise_and_k():
    frame = _noisy() * 3                         # noise scale ~15 ADU
    frame[20, 20] += 200                         # ~13 scales: kept at k=20, removed at k=5
    assert despike_raw(frame)[20, 20] == frame[20, 20]
    assert despike_raw(frame, k=5)[20, 20] < frame[20, 20] - 100


def test_despike_handles_nan_and_is_registered():
    frame = _noisy()
    frame[0, :5] = np.nan
    out = despike(frame)
    assert out.shape == frame.shape and out.dtype == np.float32 and np.isfinite(out).all()
    steps = manager.preprocessing_steps()
    assert steps["normalize:despike"].func is despike


def test_veto_fr_builds_counts_and_round_trips(tmp_path):
    from sfx_cnn_veto.core.architectures import trainable_parameters
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.crop import crop
    from sfx_cnn_veto.core.pipeline import Veto

    spec = manager.architectures()["veto_fr"]
    assert spec.default_normalize == "despeckle"
    model = spec.build(spec.input_shape, seed=1)
    names = [layer.name for layer in model.layers]
    assert names[1:5] == ["conv0", "bn0", "relu0", "pool0"]  # the convolution runs before any pooling
    veto = manager.architectures()["veto"].build((350, 350, 1), seed=1)
    # conv0 (4x9 + 4) + bn0 (2x4) and conv1 now taking 4 channels (+3x9x8)
    assert trainable_parameters(model) == trainable_parameters(veto) + 40 + 8 + 3 * 9 * 8
    assert flops_estimate(stem=4) == flops_estimate() + 2 * 350 * 350 * 9 * 4 + 2 * 116 * 116 * 9 * 3 * 8

    rng = np.random.default_rng(3)
    for layer in model.layers:  # trained-looking batch norm, so folding is really exercised
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.5, m.shape), rng.uniform(0.3, 2.0, v.shape)])
    path = str(tmp_path / "fr.keras")
    meta = ModelMetadata(architecture="veto_fr", input_shape=(350, 350, 1), crop_shape=(350, 350),
                         normalize="despike")
    VetoModel(model, meta).save(path)
    frames = [np.random.default_rng(i).normal(100, 5, (400, 400)).astype(np.float32) for i in range(3)]
    for f in frames:
        f[150, 150] = 1e4  # hot pixel
        f[250, 250:252] = 170  # weak spot
    keras_scores = Veto.load(path, backend="keras").score(frames)
    batch = np.stack([despike(np.ascontiguousarray(crop(f, shape=(350, 350)))) for f in frames])[..., None]
    expected = np.asarray(model(batch, training=False))[:, 1]
    np.testing.assert_allclose(keras_scores, expected, atol=1e-5)
    pytest.importorskip("numba")
    numba_veto = Veto.load(path, backend="numba")
    np.testing.assert_allclose(numba_veto.score(frames), keras_scores, atol=1e-5)
