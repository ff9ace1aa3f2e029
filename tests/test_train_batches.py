"""Training batches made ahead in a thread: same batches and model as in line, errors and early stops handled."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.training.batches import Prefetcher, epoch_batches
from sfx_cnn_veto.training.datasets import Augmentation, CropSet
from sfx_cnn_veto.training.labels import LabelRow

from test_train import tiny_labels  # noqa: F401 - the module-scoped fixture


def _crop_set(n=12, size=40, margin=4, seed=0):
    rng = np.random.default_rng(seed)
    crops = rng.normal(100.0, 5.0, (n, size + 2 * margin, size + 2 * margin)).astype(np.float32)
    labels = np.arange(n) % 2
    rows = [LabelRow("f.cxi", f"//{i}", "r", 30 if labels[i] else 0, int(labels[i])) for i in range(n)]
    return CropSet(crops, labels.astype(np.int64), rows, margin, (size, size))


def test_prefetched_batches_equal_the_in_line_ones_across_epochs():
    crops = _crop_set()
    aug = Augmentation.parse("shift=4,flips=1,gain=0.5:2,hot_pixels=10,background=0:2,weak_hits=0.5", margin=4)
    norm = lambda f: (f - np.median(f)) / 5.0  # noqa: E731

    def batches(depth):
        made = epoch_batches(crops, norm, epochs=3, batch_size=5, aug=aug, rng=np.random.default_rng(7))
        with Prefetcher(made, depth=depth) as ahead:
            return list(ahead)

    serial, ahead = batches(0), batches(2)
    assert [(b.epoch, b.step) for b in serial] == [(e, s) for e in range(3) for s in range(3)]
    assert [(b.epoch, b.step) for b in ahead] == [(b.epoch, b.step) for b in serial]
    assert all(np.array_equal(a.indices, b.indices) and np.array_equal(a.x, b.x) for a, b in zip(serial, ahead))


def test_producer_error_is_raised_in_the_consumer_after_the_good_items():
    def items():
        yield 1
        yield 2
        raise ConfigError("normalize method 'x' is not registered")

    ahead = Prefetcher(items(), depth=2)
    assert next(ahead) == 1 and next(ahead) == 2
    with pytest.raises(ConfigError, match="not registered"):
        next(ahead)
    assert not ahead._thread.is_alive()


def test_closing_early_stops_the_producer_and_discards_what_it_made_ahead():
    made = []

    def items():
        for i in itertools.count():
            made.append(i)
            yield i

    before = threading.active_count()
    with Prefetcher(items(), depth=2) as ahead:
        got = [next(ahead) for _ in range(3)]
    assert got == [0, 1, 2]
    assert not ahead._thread.is_alive() and threading.active_count() == before
    assert len(made) <= 3 + 2 + 1  # taken, queued, and the one being made when told to stop
    with pytest.raises(StopIteration):
        next(ahead)


def test_training_with_batches_made_ahead_gives_the_in_line_model_bit_for_bit(tiny_labels):  # noqa: F811
    from sfx_cnn_veto.training.train import TrainConfig, train

    d, labels = tiny_labels

    def fit(name, prefetch):
        return train(TrainConfig(
            labels=labels, output=str(d / f"{name}.keras"), train_runs=["ta"], val_runs=["tb"], crop_shape=(64, 64),
            epochs=2, patience=0, batch_size=20, optimizer="adam", learning_rate=0.01, decay=0.0, seed=3, margin=4,
            augment="shift=4,flips=1,gain=0.5:2,hot_pixels=10,background=0:2,weak_hits=0.5,p_raw=0.5",
            prefetch=prefetch, curves=False))

    serial, ahead = fit("serial", 0), fit("ahead", 2)
    ws, wa = (r.model.keras_model.get_weights() for r in (serial, ahead))
    assert len(ws) == len(wa) and all(np.array_equal(x, y) for x, y in zip(ws, wa))
    assert serial.history == ahead.history and serial.threshold == ahead.threshold
