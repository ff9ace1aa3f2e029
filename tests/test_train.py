"""Training: reproducibility, threshold selection, splits, augmentation, the default pipeline's pieces."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sfx_cnn_veto.core.normalize import despeckle, despeckle_raw
from sfx_cnn_veto.training import metrics as M
from sfx_cnn_veto.training.datasets import Augmentation, CropSet, augment_one, holdout_split
from sfx_cnn_veto.training.labels import LabelRow, write_labels

from train_helpers import write_run


@pytest.fixture(scope="module")
def tiny_labels(tmp_path_factory):
    """Two small runs labelled from the truth of the synthetic generator (no peakfinder needed)."""
    d = tmp_path_factory.mktemp("tiny")
    rows = []
    for i, run in enumerate(("ta", "tb")):
        lst, truth = write_run(str(d), run, 40, seed=10 + i)
        for j, hit in enumerate(truth):
            rows.append(LabelRow(str(d / f"{run}.cxi"), f"//{j}", run, 20 if hit else 0, int(hit)))
    path = str(d / "labels.csv")
    write_labels(path, rows)
    return d, path


def _train(d, labels, name, seed, **kw):
    from sfx_cnn_veto.training.train import TrainConfig, train

    cfg = TrainConfig(labels=labels, output=str(d / f"{name}.keras"), train_runs=["ta"], val_runs=["tb"],
                      crop_shape=(64, 64), epochs=3, patience=0, batch_size=20, optimizer="adam",
                      learning_rate=0.01, decay=0.0, seed=seed, margin=4,
                      augment=kw.pop("augment", "shift=4,flips=1,gain=0.5:2,hot_pixels=10,background=0:2"), **kw)
    return train(cfg)


def test_training_is_reproducible_and_threshold_meets_target(tiny_labels):
    d, labels = tiny_labels
    a = _train(d, labels, "a", seed=3)
    b = _train(d, labels, "b", seed=3)
    c = _train(d, labels, "c", seed=4)
    wa, wb, wc = (r.model.keras_model.get_weights() for r in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert a.history == b.history
    assert a.val_metrics == b.val_metrics
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc))
    # the stored threshold gives at least the target sensitivity on the validation run
    meta = a.model.metadata
    assert meta.threshold == a.threshold
    assert meta.metrics["validation"]["overall"]["sensitivity"] >= 0.99
    assert meta.training["train_runs"] == ["ta"] and meta.training["val_runs"] == ["tb"]
    assert meta.training["seed"] == 3 and meta.architecture == "veto" and meta.normalize == "despeckle"
    assert meta.use_mask and meta.training["mask"] == "each CXI file's own"  # new models train on masked frames
    assert os.path.exists(a.curves_path) and a.curves_path.endswith("a.curves.png")
    # the saved file reloads and reproduces the validation scores through the inference path
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.io.store import FrameStore
    from sfx_cnn_veto.training.labels import read_labels

    veto = Veto.load(str(d / "a.keras"))
    rows = [r for r in read_labels(labels) if r.run == "tb"]
    with FrameStore() as store:
        frames = [store.read(__import__("sfx_cnn_veto.io.events", fromlist=["EventRef"]).EventRef(r.file, r.event, r.file))
                  for r in rows]
    scores = veto.score(frames)
    predicted = scores >= veto.threshold
    cm = M.confusion([r.label for r in rows], predicted)
    assert M.table_row(cm) == meta.metrics["validation"]["runs"]["tb"]


def test_fine_tuning_from_init_model(tiny_labels):
    d, labels = tiny_labels
    base = _train(d, labels, "base", seed=1)
    from sfx_cnn_veto.training.train import TrainConfig, train

    tuned = train(TrainConfig(labels=labels, output=str(d / "tuned.keras"), train_runs=["tb"], val_runs=["ta"],
                              init_model=str(d / "base.keras"), epochs=1, patience=0, batch_size=20, seed=1,
                              augment="none"))
    assert tuned.model.metadata.training["init_model"].endswith("base.keras")
    assert tuned.model.metadata.crop_shape == base.model.metadata.crop_shape == (64, 64)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.99, 1.0])
def test_threshold_for_sensitivity(target):
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.3
    scores = np.where(labels, rng.beta(5, 2, 500), rng.beta(2, 5, 500))
    t = M.threshold_for_sensitivity(scores, labels, target, cap=None)
    sens = np.mean(scores[labels] >= t)
    assert sens >= target
    # the highest such threshold: any higher score cut loses the target
    higher = np.sort(scores[labels & (scores > t)])
    if higher.size:
        assert np.mean(scores[labels] >= higher[0]) < target
    assert M.threshold_for_sensitivity(scores, labels, target) <= 0.5


def test_threshold_for_specificity_hand_computed():
    scores = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.9, 0.8])
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    t = M.threshold_for_specificity(scores, labels, 0.8)  # 4 of the 5 misses must score below it
    assert 0.3 < t < 0.3000001 and np.mean(scores[labels == 0] < t) == 0.8
    assert M.threshold_for_specificity(scores, labels, 1.0) > 0.4
    assert M.threshold_for_specificity(scores, labels, 0.0) == 0.0
    assert M.threshold_for_specificity(scores[5:], labels[5:], 0.9) == 0.0  # no misses


def test_choose_threshold_stage_meets_the_target_on_held_out_and_weak_hits(capsys):
    from sfx_cnn_veto.training.train import choose_threshold

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.01, 0.02, 0.03, 0.04, 0.4, 0.6, 0.7, 0.9])
    weak = np.array([0.2, 0.3])
    t, rule = choose_threshold(scores, y, weak, target_sensitivity=1.0, min_specificity=0.5)
    # every held-out and weak hit kept, every miss still below it: no warning
    assert 0.04 < t <= 0.2 and not rule["limited_by_specificity"]
    assert np.all(np.concatenate([scores[y == 1], weak]) >= t) and np.all(scores[y == 0] < t)
    assert capsys.readouterr().err == ""


def test_choose_threshold_stage_lets_the_specificity_floor_win_and_says_so(capsys):
    from sfx_cnn_veto.training.train import choose_threshold

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.05, 0.1, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9])
    weak = np.array([0.01, 0.02])  # the target would need a threshold below most misses
    t, rule = choose_threshold(scores, y, weak, target_sensitivity=1.0, min_specificity=0.75)
    assert rule["limited_by_specificity"] and t == rule["specificity_floor"]
    assert np.mean(scores[y == 0] < t) >= 0.75 and t <= 0.5
    err = capsys.readouterr().err
    assert "warning: the target sensitivity 1" in err
    # what it costs, measured at the threshold used: every held-out hit kept, the weak hits lost
    assert "keeps 100.0% of the held-out hits and 0.0% of the weak hits" in err


def test_choose_threshold_warning_names_the_hits_it_loses_not_a_contradiction(capsys):
    """The weak hits all kept, held-out hits lost: the warning must say so, not 'weak hits will be lost (100%)'."""
    from sfx_cnn_veto.training.train import choose_threshold

    y = np.array([0] * 10 + [1] * 4)
    scores = np.array([0.01] * 8 + [0.45, 0.46] + [0.02, 0.03, 0.8, 0.9])
    weak = np.array([0.7, 0.8])
    t, rule = choose_threshold(scores, y, weak, target_sensitivity=1.0, min_specificity=0.9)
    assert rule["limited_by_specificity"]
    err = capsys.readouterr().err
    assert "keeps 50.0% of the held-out hits and 100.0% of the weak hits" in err
    assert "will be lost" not in err


def test_choose_threshold_honours_min_specificity_above_one_half(capsys):
    """An under-trained model scoring everything 0.6-0.78: the threshold goes above the misses, not to 0.5
    (which kept every miss: specificity 0)."""
    from sfx_cnn_veto.training.train import choose_threshold

    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(np.int64)
    scores = rng.uniform(0.6, 0.78, 200)
    t, rule = choose_threshold(scores, y, np.zeros(0), target_sensitivity=0.99, min_specificity=0.97)
    assert t > 0.5 and t == rule["specificity_floor"]
    assert np.mean(scores[y == 0] < t) >= 0.97
    assert "--min-specificity 0.97" in capsys.readouterr().err


def test_training_failure_names_the_figures_below_the_floor():
    from sfx_cnn_veto.training.train import failed_path, training_failure

    good = {"overall": {"sensitivity": 0.99, "specificity": 0.6}}
    assert training_failure(good, 0.2) is None
    reason = training_failure({"overall": {"sensitivity": 0.0, "specificity": 1.0}}, 0.71)
    assert reason.startswith("held-out sensitivity 0.0% at threshold 0.71, below 50%")
    assert "specificity" not in reason.split(",")[0]
    assert failed_path("/x/model.keras") == "/x/model.failed.keras"


def test_cli_train_that_learns_nothing_fails_and_marks_the_file(tiny_labels, tmp_path, capsys):
    """Labels that say nothing about the frames (shuffled): a useless model is rc 4 and NAME.failed.keras."""
    import dataclasses
    import json
    import zipfile

    from sfx_cnn_veto.cli import EXIT_TRAINING_FAILED, main
    from sfx_cnn_veto.training.labels import read_labels

    d, labels = tiny_labels
    rows = read_labels(labels)
    rng = np.random.default_rng(0)
    shuffled = [dataclasses.replace(r, label=int(v)) for r, v in zip(rows, rng.permutation([r.label for r in rows]))]
    noise = tmp_path / "noise_labels.csv"
    write_labels(str(noise), shuffled)
    out = tmp_path / "useless.keras"
    out.write_bytes(b"a good model from yesterday")
    rc = main(["train", "--labels", str(noise), "--train-runs", "ta", "--val-runs", "tb", "--crop", "64,64",
               "--epochs", "1", "--batch-size", "20", "--margin", "4", "--augment", "none", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == EXIT_TRAINING_FAILED, err[-2000:]
    assert "error: training failed: held-out" in err and "useless.failed.keras" in err
    assert out.read_bytes() == b"a good model from yesterday"       # never over a good model
    failed = tmp_path / "useless.failed.keras"
    meta = json.loads(zipfile.ZipFile(failed).read("sfx_cnn_veto.json"))
    assert "below 50%" in meta["training"]["failed"]
    from sfx_cnn_veto.core.model import VetoModel

    with pytest.warns(UserWarning, match="failed its training"):
        VetoModel.load(str(failed))


def test_select_rows_stage_refuses_runs_in_both_sets_and_one_class_runs(tiny_labels, tmp_path):
    from sfx_cnn_veto import ConfigError
    from sfx_cnn_veto.training.train import TrainConfig, select_rows

    d, labels = tiny_labels
    cfg = TrainConfig(labels=labels, output=str(tmp_path / "m.keras"), train_runs=["ta"], val_runs=["tb"])
    train_runs, train_rows, val_rows = select_rows(cfg)
    assert train_runs == ["ta"] and {r.run for r in train_rows} == {"ta"} and {r.run for r in val_rows} == {"tb"}
    with pytest.raises(ConfigError, match="share ta"):
        select_rows(TrainConfig(labels=labels, output=cfg.output, train_runs=["ta"], val_runs=["ta", "tb"]))
    misses = tmp_path / "misses.csv"
    write_labels(str(misses), [LabelRow("a.cxi", "//0", "r", 0, 0), LabelRow("a.cxi", "//1", "r", 0, 0)])
    with pytest.raises(ConfigError, match="need both hits and misses"):
        select_rows(TrainConfig(labels=str(misses), output=cfg.output))


def test_holdout_split_reproducible_and_stratified():
    rows = [LabelRow("f", f"//{i}", "r", 0, int(i % 4 == 0)) for i in range(200)]
    a = holdout_split(rows, 0.15, seed=0)
    b = holdout_split(list(reversed(rows)), 0.15, seed=0)
    assert sorted(rows[i].key for i in a[1]) == sorted(list(reversed(rows))[i].key for i in b[1])
    held = [rows[i] for i in a[1]]
    assert 0.1 <= len(held) / 200 <= 0.2
    assert sum(r.label for r in held) == round(0.15 * 50)
    assert set(a[0]).isdisjoint(a[1]) and len(a[0]) + len(a[1]) == 200


def test_augmentation_is_seeded_and_keeps_shape():
    raw = np.random.default_rng(0).normal(100, 5, (72, 72)).astype(np.float32)
    aug = Augmentation.parse("shift=4,flips=1,gain=0.5:2,hot_pixels=30,background=0:3,weaken=0.2:1,p_raw=0.5",
                             margin=4)
    x1 = augment_one(raw, aug, np.random.default_rng(5), margin=4, crop_shape=(64, 64))
    x2 = augment_one(raw, aug, np.random.default_rng(5), margin=4, crop_shape=(64, 64))
    assert x1.shape == (64, 64) and np.array_equal(x1, x2)
    with pytest.raises(Exception):
        Augmentation.parse("shift=9", margin=4)


def test_weakening_keeps_noise_and_lowers_spots():
    from sfx_cnn_veto.training.datasets import augment_raw

    rng = np.random.default_rng(0)
    frame = rng.normal(100, 5, (100, 100)).astype(np.float32)
    frame[50, 50] = 600.0
    aug = Augmentation(flips=False, weaken=(0.2, 0.2))
    out = augment_raw(frame, aug, np.random.default_rng(1))
    assert out[50, 50] == pytest.approx(100 + 0.2 * 500, abs=25)
    noise = out.copy()
    noise[45:56, 45:56] = 100
    assert np.std(noise) == pytest.approx(5.0, rel=0.15)  # noise level kept
    assert np.median(out) == pytest.approx(100, abs=1)


def _spotty_frame(rng, n_spots, *, level=400.0, shape=(100, 100)):
    """Photon-counting background (0.1 photons of 8 ADU a pixel, read noise 2.5) with 2x2 spots."""
    frame = (rng.poisson(0.1, shape) * 8.0 + rng.normal(0, 2.5, shape)).astype(np.float32)
    spots = []
    for _ in range(n_spots):
        y, x = (int(v) for v in rng.integers(5, shape[0] - 6, 2))
        frame[y:y + 2, x:x + 2] += level
        spots.append((y, x))
    return frame, spots


def test_bragg_signal_keeps_spots_drops_background_and_hot_pixels():
    from sfx_cnn_veto.training.datasets import bragg_signal

    rng = np.random.default_rng(0)
    frame, spots = _spotty_frame(rng, 12)
    frame[3, 90] = 5000.0  # hot pixel: isolated
    signal = bragg_signal(frame)
    for y, x in spots:
        assert signal[y:y + 2, x:x + 2].min() > 300
    assert signal[3, 90] == 0
    on_spots = np.zeros(frame.shape, bool)
    for y, x in spots:
        on_spots[y - 1:y + 3, x - 1:x + 3] = True
    assert np.count_nonzero(signal[~on_spots]) < 10  # the single photons of the background stay out


def test_weak_hit_weakens_only_as_far_as_the_peaks_allow():
    from sfx_cnn_veto.training.datasets import bragg_signal, weak_hit

    rng = np.random.default_rng(1)
    hit, _ = _spotty_frame(rng, 40, level=2000.0)
    miss, _ = _spotty_frame(rng, 0)
    full = float(bragg_signal(hit).sum())
    aug = Augmentation(weak_hits=1.0, weak_min_peaks=15)
    factors = []
    for seed in range(30):
        out = weak_hit(hit, miss, 150, aug, np.random.default_rng(seed))
        assert out.shape == hit.shape and out.dtype == np.float32
        factors.append(float((out - miss).sum()) / full)
    # a is log-uniform in [15/150, 1]: never weaker than 0.1 (Poisson noise aside), sometimes near it
    assert min(factors) > 0.08 and max(factors) < 1.05
    assert min(factors) < 0.2 and max(factors) > 0.6
    # a hit at the boundary is not weakened at all, only moved onto the miss's background
    out = weak_hit(hit, miss, 15, aug, np.random.default_rng(0))
    assert float((out - miss).sum()) / full == pytest.approx(1.0, rel=0.02)
    # the spots are grainy (photon-sampled), not a smooth copy: values come in whole photons
    diff = (out - miss)[out - miss > 0]
    photon = diff.min()
    assert np.allclose(diff / photon, np.round(diff / photon), atol=1e-3)


def test_make_batch_weak_hits_replace_hits_only():
    from sfx_cnn_veto.training.datasets import make_batch, normalizer

    rng = np.random.default_rng(2)
    frames, labels, rows = [], [], []
    for i in range(6):
        hit = i % 2 == 1
        frames.append(_spotty_frame(rng, 30 if hit else 0, level=2000.0, shape=(72, 72))[0])
        labels.append(int(hit))
        rows.append(LabelRow("f", f"//{i}", "r", 150 if hit else 0, int(hit)))
    crops = CropSet(np.stack(frames), np.array(labels), rows, 4, (64, 64))
    norm = normalizer("none")
    aug = Augmentation(flips=False, weak_hits=1.0, weak_min_peaks=15)
    a = make_batch(crops, range(6), norm, aug=aug, rng=np.random.default_rng(3))
    b = make_batch(crops, range(6), norm, aug=aug, rng=np.random.default_rng(3))
    assert np.array_equal(a, b)
    for i in range(6):
        same = np.array_equal(a[i, :, :, 0], frames[i][4:68, 4:68])
        assert same == (labels[i] == 0), i  # misses untouched, every hit rebuilt on a miss
    with pytest.raises(Exception, match="probabilities"):
        Augmentation.parse("weak_hits=1.5", margin=4)


def test_make_batch_cache_path_matches_shapes():
    from sfx_cnn_veto.training.datasets import make_batch, normalized_windows, normalizer

    rng = np.random.default_rng(0)
    raw = rng.normal(100, 5, (6, 72, 72)).astype(np.float32)
    rows = [LabelRow("f", f"//{i}", "r", 0, i % 2) for i in range(6)]
    crops = CropSet(raw, np.array([i % 2 for i in range(6)]), rows, 4, (64, 64))
    norm = normalizer("despeckle")
    cache = normalized_windows(crops, norm)
    aug = Augmentation.parse("shift=4,flips=1,background=0:2,p_raw=0.5", margin=4)
    a = make_batch(crops, range(6), norm, aug=aug, rng=np.random.default_rng(3), cache=cache)
    b = make_batch(crops, range(6), norm, aug=aug, rng=np.random.default_rng(3), cache=cache)
    assert a.shape == (6, 64, 64, 1) and np.array_equal(a, b)
    plain = make_batch(crops, range(6), norm)
    assert np.array_equal(plain[0, :, :, 0], norm(raw[0, 4:68, 4:68]))


def test_despeckle_removes_isolated_pixels_keeps_spots():
    frame = np.random.default_rng(0).normal(100, 5, (50, 50)).astype(np.float32)
    frame[10, 10] = 1e5            # hot pixel
    frame[30, 30:32] = 600         # two-pixel Bragg spot
    raw = despeckle_raw(frame)
    assert raw[10, 10] < 130 and raw[30, 30] == raw[30, 31] == 600
    out = despeckle(frame)
    assert out[10, 10] < 2 and out[30, 30] > 3
    nan = frame.copy()
    nan[0, :5] = np.nan
    assert np.isfinite(despeckle(nan)).all()


def test_hot_clusters_survive_despeckle_single_hot_pixels_do_not():
    from sfx_cnn_veto.training.datasets import augment_raw

    frame = np.random.default_rng(0).normal(100, 3, (120, 120)).astype(np.float32)
    singles = augment_raw(frame, Augmentation(flips=False, hot_pixels=40), np.random.default_rng(4))
    assert (singles > 150).sum() > 0 and (despeckle_raw(singles) > 150).sum() <= 4  # a rare adjacent pair
    found = 0
    for seed in range(5):
        out = augment_raw(frame, Augmentation(flips=False, hot_clusters=6), np.random.default_rng(seed))
        kept = despeckle_raw(out) > 150  # 30+ noise scales above the background
        assert kept.sum() == (out > 150).sum()  # every pixel of a pair or 2x2 block survives
        found += int(kept.sum())
    assert found >= 2


def test_read_crops_fills_masked_pixels_with_the_window_median(tmp_path):
    import h5py

    from sfx_cnn_veto.testing import write_cxi
    from sfx_cnn_veto.training.datasets import read_crops
    from sfx_cnn_veto.training.train import _mask_source

    frames = np.random.default_rng(0).normal(100, 5, (2, 80, 80)).astype(np.float32)
    frames[:, 40:42, 40:42] = 9000.0  # a hot block the file's mask knows
    path = write_cxi(tmp_path / "m.cxi", frames)
    with h5py.File(path, "a") as handle:
        bad = np.zeros((80, 80), np.uint16)
        bad[40:42, 40:42] = 4
        handle["/entry_1/data_1/mask"] = bad
    rows = [LabelRow(path, f"//{i}", "r", 20 * i, i) for i in range(2)]
    plain = read_crops(rows, crop_shape=(64, 64), margin=4)
    masked = read_crops(rows, crop_shape=(64, 64), margin=4, mask_for=_mask_source(None))
    assert plain.crops.max() == 9000.0
    window = masked.crops[0]
    keep = np.ones(window.shape, bool)
    keep[36:38, 36:38] = False
    assert window.max() < 200
    assert np.all(np.abs(window[36:38, 36:38] - np.median(window[keep])) < 1.0)
    assert np.array_equal(window[keep], plain.crops[0][keep])  # nothing else touched


def test_weak_validation_is_fixed_by_the_seed_and_made_of_hits():
    from sfx_cnn_veto.training.datasets import weak_validation

    rng = np.random.default_rng(5)
    frames = [_spotty_frame(rng, 30 if i % 2 else 0, level=2000.0, shape=(64, 64))[0] for i in range(6)]
    rows = [LabelRow("f", f"//{i}", "r", 150 if i % 2 else 0, i % 2) for i in range(6)]
    val = CropSet(np.stack(frames), np.array([i % 2 for i in range(6)]), rows, 0, (64, 64))
    aug = Augmentation(weak_hits=1.0, weak_min_peaks=11)
    a = weak_validation(val, aug, 3, per_hit=4)
    b = weak_validation(val, aug, 3, per_hit=4)
    assert len(a) == 12 and a.labels.tolist() == [1] * 12 and np.array_equal(a.crops, b.crops)
    assert not np.array_equal(a.crops, weak_validation(val, aug, 4, per_hit=4).crops)
    no_misses = CropSet(val.crops[1::2], val.labels[1::2], rows[1::2], 0, (64, 64))
    assert len(weak_validation(no_misses, aug, 3)) == 0


def test_threshold_also_covers_weak_hits_made_from_held_out_hits(tiny_labels):
    d, labels = tiny_labels
    r = _train(d, labels, "weak", seed=3, augment="shift=4,flips=1,weak_hits=0.75,weak_min_peaks=11")
    weak = r.val_metrics["weak_hits"]
    from sfx_cnn_veto.training.train import WEAK_VALIDATION_PER_HIT

    assert weak["events"] == WEAK_VALIDATION_PER_HIT * r.model.metadata.training["val_hits"]
    rule = r.val_metrics["threshold_rule"]
    assert r.threshold == max(rule["for_sensitivity"], rule["specificity_floor"]) and rule["for_sensitivity"] <= 0.5
    if not rule["limited_by_specificity"]:
        # 99% of held-out and weak hits together: at most one of these ~100 weak hits lost
        assert weak["sensitivity"] >= 0.98 and r.threshold <= 0.5
    # asking that every held-out miss stay below it puts the threshold above the highest miss
    strict = _train(d, labels, "strict", seed=3, augment="shift=4,flips=1,weak_hits=0.75,weak_min_peaks=11",
                    min_specificity=1.0)
    floor = strict.val_metrics["threshold_rule"]["specificity_floor"]
    assert strict.threshold == max(strict.val_metrics["threshold_rule"]["for_sensitivity"], floor)
    assert strict.val_metrics["overall"]["specificity"] == 1.0
    assert r.model.metadata.metrics["validation"]["weak_hits"] == weak


def test_cli_training_is_bit_exact_in_fresh_processes(tiny_labels):
    """Two `train` processes, same seed and data: the same weights, bit for bit (one TensorFlow thread)."""
    import json
    import subprocess
    import sys
    import zipfile

    d, labels = tiny_labels
    paths = []
    for name in ("cli_a", "cli_b"):
        out = d / f"{name}.keras"
        cmd = [sys.executable, "-m", "sfx_cnn_veto.cli", "train", "--labels", labels, "--train-runs", "ta",
               "--val-runs", "tb", "--crop", "64,64", "--epochs", "2", "--batch-size", "20", "--seed", "5",
               "--margin", "4", "--augment", "shift=4,flips=1,gain=0.5:2,weak_hits=0.5", "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "not bit-exact" not in proc.stderr
        paths.append(out)
    meta_a, meta_b = (json.loads(zipfile.ZipFile(p).read("sfx_cnn_veto.json")) for p in paths)
    assert meta_a["training"]["tf_threads"] == 1
    from sfx_cnn_veto.core.model import VetoModel

    wa, wb = (VetoModel.load(str(p)).keras_model.get_weights() for p in paths)
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert meta_a["metrics"] == meta_b["metrics"] and meta_a["threshold"] == meta_b["threshold"]
    assert meta_a["training"]["history"] == meta_b["training"]["history"]
