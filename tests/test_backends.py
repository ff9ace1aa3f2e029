"""Classifier backends: the numba backend reproduces Keras; ``auto`` picks and falls back; no retracing."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sfx_cnn_veto.bench import synthetic_frame  # noqa: E402
from sfx_cnn_veto.core import normalize  # noqa: E402
from sfx_cnn_veto.errors import MissingDependencyError  # noqa: E402

numba = pytest.importorskip("numba")


def _randomize_batchnorm(model, rng):
    """Trained-looking batch-norm statistics, so folding them is really tested."""
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.3, 2.0, var.shape)])


@pytest.fixture(scope="module")
def paper_model():
    from sfx_cnn_veto.core.architectures import build_paper_model

    model = build_paper_model(seed=1)
    _randomize_batchnorm(model, np.random.default_rng(2))
    return model


def real_looking_batch(n=6, method="standardize"):
    """Normalized 350x350 crops of simulated frames: hits with Bragg-like spots and misses."""
    rng = np.random.default_rng(7)
    frames = [synthetic_frame(rng, (350, 350), hit=bool(i % 2)) for i in range(n)]
    func = getattr(normalize, method)
    return np.stack([func(f) for f in frames])[..., None]


@pytest.mark.parametrize("method", ["standardize", "robust"])
def test_numba_equals_keras_on_paper_network(paper_model, method):
    from sfx_cnn_veto.core.backends import KerasClassifier
    from sfx_cnn_veto.core.fused import FusedClassifier

    batch = real_looking_batch(method=method)
    fused = FusedClassifier(paper_model, 1, threads=2)
    want = np.asarray(paper_model(batch, training=False), dtype=np.float64)
    got = fused.predict_proba(batch)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # batch 1 and the hit column through the Classifier API, against the keras backend
    keras_scores = KerasClassifier(paper_model, 1).predict(batch)
    one = np.concatenate([fused.predict(batch[i:i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(one, keras_scores, rtol=0, atol=1e-5)
    assert not np.isnan(one).any()


def test_numba_one_thread_serial_kernels_give_the_bits_of_two_threads(paper_model):
    """One thread runs the kernels compiled without ``parallel``: the same scores, bit for bit."""
    from sfx_cnn_veto.core import fused as F

    batch = real_looking_batch(4, "robust")
    one = F.FusedClassifier(paper_model, 1, threads=1)
    two = F.FusedClassifier(paper_model, 1, threads=2)
    calls = []
    serial = F._serial
    F._serial = lambda: calls.append(serial()) or calls[-1]
    try:
        got_one = one.predict_proba(batch)
        got_two = two.predict_proba(batch)
    finally:
        F._serial = serial
    assert calls and calls[0] is True and calls[-1] is False  # both variants really ran
    assert np.array_equal(got_one, got_two)


def test_numba_covers_other_layer_kinds():
    """same padding, channel-wise BN, average and global pooling, Dense with activations."""
    from sfx_cnn_veto.core.fused import FusedClassifier
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input((40, 36, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(6, 5)(x)
    x = layers.BatchNormalization(axis=1)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(3, (3, 2), use_bias=False)(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(8, activation="relu")(x)
    x = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, x)
    _randomize_batchnorm(model, np.random.default_rng(3))
    batch = np.random.default_rng(4).standard_normal((5, 40, 36, 1)).astype(np.float32)
    fused = FusedClassifier(model, 1, threads=1)
    np.testing.assert_allclose(fused.predict_proba(batch), np.asarray(model(batch, training=False)), atol=1e-5)


def test_numba_runs_a_branching_network_like_the_default_one():
    """Max-pool first, same-padded 3x3 blocks, global max + average pooling concatenated (branches)."""
    from sfx_cnn_veto.core.fused import FusedClassifier
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input((350, 350, 1))
    x = layers.MaxPooling2D(3)(inputs)
    for i, n in enumerate((8, 16, 24), start=1):
        x = layers.Conv2D(n, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if i < 3:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Concatenate()([layers.GlobalMaxPooling2D()(x), layers.GlobalAveragePooling2D()(x)])
    x = layers.ReLU()(layers.Dense(16)(x))
    x = layers.Dropout(0.1)(x)
    model = keras.Model(inputs, layers.Softmax()(layers.Dense(2)(x)))
    _randomize_batchnorm(model, np.random.default_rng(5))
    batch = real_looking_batch(4, "robust")
    fused = FusedClassifier(model, 1)
    got = fused.predict_proba(batch)
    np.testing.assert_allclose(got, np.asarray(model(batch, training=False)), atol=1e-5)
    assert np.isfinite(got).all()


def test_numba_refuses_unsupported_and_auto_falls_back():
    from sfx_cnn_veto.core.backends import create_classifier
    from sfx_cnn_veto.core.fused import FusedClassifier, UnsupportedModelError
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(2, 3, strides=2)(inputs)  # strided conv: not covered
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(UnsupportedModelError, match="stride"):
        FusedClassifier(model, 1)
    name, classifier = create_classifier(model, "auto", {"hit_index": 1})
    assert name == "keras"
    assert classifier.predict(np.zeros((2, 16, 16, 1), np.float32)).shape == (2,)


def test_verify_catches_a_wrong_plan(paper_model):
    from sfx_cnn_veto.core.fused import FusedClassifier, UnsupportedModelError

    fused = FusedClassifier(paper_model, 1, verify=False)
    fused.steps[0].weights = fused.steps[0].weights * 1.01  # a plan that no longer matches Keras
    with pytest.raises(UnsupportedModelError, match="differs from Keras"):
        fused.verify(paper_model)


def test_auto_prefers_numba_and_falls_back_without_it(paper_model, monkeypatch):
    from sfx_cnn_veto.core import fused
    from sfx_cnn_veto.core.backends import create_classifier

    name, _ = create_classifier(paper_model, "auto", {"hit_index": 1})
    assert name == "numba"

    def missing():
        raise MissingDependencyError("numba", purpose="the numba backend")

    monkeypatch.setattr(fused, "import_numba", missing)
    name, _ = create_classifier(paper_model, "auto", {"hit_index": 1})
    assert name == "keras"
    with pytest.raises(MissingDependencyError, match="pip install numba"):
        create_classifier(paper_model, "numba", {"hit_index": 1})


def test_keras_backend_traces_once(paper_model):
    from sfx_cnn_veto.core.backends import KerasClassifier

    clf = KerasClassifier(paper_model, 1)
    for n in (1, 3, 64, 1, 7):
        assert clf.predict(np.zeros((n, 350, 350, 1), np.float32)).shape == (n,)
    assert clf._predict.experimental_get_tracing_count() == 1
