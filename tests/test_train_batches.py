"""Training batches made ahead in a thread: same batches and model as in line, errors and early stops handled."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.prefetch import Prefetcher
from sfx_cnn_veto.training.batches import epoch_batches
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


def _dense_weak_hit(hit, miss, num_peaks, aug, rng):
    """The dense formula weak_hit had before it sampled only the spot pixels (the reference)."""
    from sfx_cnn_veto.training.datasets import PHOTON_SCALES, _noise_scale, bragg_signal

    lo = min(1.0, float(aug.weak_min_peaks) / max(float(num_peaks), 1.0))
    a = float(np.exp(rng.uniform(np.log(lo), 0.0))) if lo < 1.0 else 1.0
    signal = bragg_signal(hit) * np.float32(a)
    _, scale = _noise_scale(hit)
    photon = np.float32(PHOTON_SCALES * max(scale, 1.0))
    spots = rng.poisson(signal / photon).astype(np.float32) * photon
    return np.asarray(miss, dtype=np.float32) + spots


def test_weak_hit_from_sparse_spots_equals_the_dense_formula_and_leaves_the_same_rng_state():
    from sfx_cnn_veto.training.datasets import BraggSpots, weak_hit

    crops = _crop_set(n=6, size=48, margin=0, seed=5)
    yy, xx = np.mgrid[:48, :48]
    for k in range(0, 6, 2):  # some hits: Gaussian spots above the noise, a hot pixel, a -0.0 in the miss
        for cy, cx in ((10, 12), (30, 33), (40, 8)):
            crops.crops[k] += 400.0 * np.exp(-((yy - cy - k) ** 2 + (xx - cx) ** 2) / 2.0)
        crops.crops[k, 5, 5] = 5000.0
    crops.crops[1, 0, 0] = -0.0
    aug = Augmentation(weak_hits=1.0, weak_min_peaks=11)
    for k in (0, 2, 4):
        for seed, peaks in ((0, 150), (1, 11), (2, 40)):
            ra, rb = np.random.default_rng(seed), np.random.default_rng(seed)
            dense = _dense_weak_hit(crops.crops[k], crops.crops[1], peaks, aug, ra)
            sparse = weak_hit(crops.crops[k], crops.crops[1], peaks, aug, rb, spots=crops.bragg_spots(k))
            assert np.array_equal(dense.view(np.uint32), sparse.view(np.uint32))  # bit for bit, signed zeros too
            assert (dense != crops.crops[1]).any()
            assert ra.bit_generator.state == rb.bit_generator.state
    assert isinstance(crops.bragg_spots(0), BraggSpots) and crops.bragg_spots(0) is crops.bragg_spots(0)


def _dense_background_noise(frame, aug, rng):
    """The background part of augment_raw as it was, pixel by pixel (the reference)."""
    from sfx_cnn_veto.training.datasets import _noise_scale

    frame = np.array(frame, dtype=np.float32)
    h, w = frame.shape
    med, scale = _noise_scale(frame)
    hb, wb = h // 10, w // 10
    if hb == 0 or wb == 0:
        bg = np.full_like(frame, med)
    else:
        core = np.minimum(frame[: hb * 10, : wb * 10], np.float32(med + 3.0 * scale))
        means = core.reshape(hb, 10, wb, 10).mean(axis=(1, 3), dtype=np.float32)
        up = np.repeat(np.repeat(means, 10, axis=0), 10, axis=1)
        bg = np.pad(up, ((0, h - up.shape[0]), (0, w - up.shape[1])), mode="edge")
    variance = None
    lo, hi = aug.weaken
    alpha = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if aug.weaken != (1.0, 1.0) else 1.0
    if alpha < 1.0:
        frame = bg + np.float32(alpha) * (frame - bg)
        variance = np.float32(scale * scale * (1.0 - alpha * alpha))
    k = float(rng.uniform(*aug.background))
    if k > 0:
        extra = np.float32(k) * np.maximum(bg - np.float32(med - scale), np.float32(0.0))
        frame = frame + extra
        more = extra * np.float32(max(scale, 1.0))
        variance = more if variance is None else variance + more
    if variance is not None:
        frame = frame + rng.standard_normal(frame.shape, dtype=np.float32) * np.sqrt(variance)
    return frame


@pytest.mark.parametrize("shape", [(48, 48), (53, 47), (7, 30)])
@pytest.mark.parametrize("weaken", [(1.0, 1.0), (0.2, 0.9)])
def test_background_augmentation_on_the_block_grid_equals_the_pixel_by_pixel_formula(shape, weaken):
    from sfx_cnn_veto.training.datasets import augment_raw

    frame = np.random.default_rng(3).poisson(20.0, shape).astype(np.float32) * 3.0 + 100.0
    frame[shape[0] // 2, 1:4] += 900.0  # a spot above the clip
    aug = Augmentation(flips=False, background=(0.5, 4.0), weaken=weaken)
    for seed in range(4):
        ra, rb = np.random.default_rng(seed), np.random.default_rng(seed)
        want, got = _dense_background_noise(frame, aug, ra), augment_raw(frame, aug, rb)
        assert np.array_equal(want.view(np.uint32), got.view(np.uint32))
        assert not np.array_equal(got, frame)
        assert ra.bit_generator.state == rb.bit_generator.state


def test_early_stop_with_batches_made_ahead_ends_the_producer_and_matches_in_line(tiny_labels):  # noqa: F811
    """Learning rate 0: the validation loss never improves, so patience 1 stops after epoch 2 of 8."""
    import dataclasses

    from sfx_cnn_veto.training import train as T

    d, labels = tiny_labels
    cfg = T.TrainConfig(labels=labels, output=str(d / "stop.keras"), train_runs=["ta"], val_runs=["tb"],
                        crop_shape=(64, 64), epochs=8, patience=1, batch_size=20, optimizer="adam",
                        learning_rate=0.0, decay=0.0, seed=3, margin=4, augment="shift=4,flips=1,gain=0.5:2")
    _, train_rows, val_rows = T.select_rows(cfg)
    prep = T.plan_preprocessing(cfg, None)
    data = T.read_and_split(cfg, train_rows, val_rows, prep)
    fits = []
    for prefetch in (0, 2):
        c = dataclasses.replace(cfg, prefetch=prefetch)
        model = T.build_model(c, None, prep)
        before = threading.active_count()
        fits.append(T.fit(c, model, data, prep))
        assert threading.active_count() == before  # the producer thread has ended
    assert len(fits[0].history["loss"]) == 2 and fits[0].history == fits[1].history
