"""Per-run calibration: the Wilson interval, the threshold rule, and `calibrate` lifting a run's sensitivity."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from sfx_cnn_veto.cli import main
from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
from sfx_cnn_veto.errors import ConfigError, ModelFormatError
from sfx_cnn_veto.training import metrics as M
from sfx_cnn_veto.training.calibrate import calibrated_threshold
from sfx_cnn_veto.training.labels import LabelRow, write_labels

from train_helpers import max_pixel_model, write_run


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775; 8/10 (Wilson): 0.4902-0.9433
    assert M.wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert M.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert M.wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert M.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        M.wilson_interval(11, 10)


def test_calibrated_threshold_keeps_the_target_share_of_hits():
    hit_scores = np.array([0.02, 0.05, 0.1, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    miss_scores = np.array([0.01, 0.03, 0.2, np.nan])
    scores = np.r_[hit_scores, miss_scores]
    labels = np.r_[np.ones(10, int), np.zeros(4, int)]
    threshold, rec = calibrated_threshold(scores, labels, target=0.9, previous=0.5)
    assert threshold == 0.05  # one of ten hits may be lost: the second-lowest hit's score
    assert (rec["hits"], rec["hits_kept"], rec["misses"], rec["misses_vetoed"], rec["unscored"]) == (10, 9, 3, 2, 1)
    assert rec["sensitivity_interval"] == pytest.approx(list(M.wilson_interval(9, 10)))
    assert rec["before"]["hits_kept"] == 6  # 0.6, 0.7, 0.8, 0.9, 0.95, 0.99 at the old threshold 0.5
    threshold, _ = calibrated_threshold(scores, labels, target=1.0)
    assert threshold == 0.02
    # confident hits do not raise the threshold above 0.5, nor above the model's own unless asked
    assert calibrated_threshold([0.9, 0.95, 0.1], [1, 1, 0], target=0.99)[0] == 0.5
    assert calibrated_threshold([0.4, 0.45, 0.1], [1, 1, 0], target=0.99, previous=0.2)[0] == 0.2
    assert calibrated_threshold([0.4, 0.45, 0.1], [1, 1, 0], target=0.99, previous=0.2, may_raise=True)[0] == 0.4
    with pytest.raises(ConfigError, match="no scored hit"):
        calibrated_threshold([0.9, np.nan], [0, 1])


def test_metadata_without_calibration_still_loads():
    old = {"architecture": "veto", "input_shape": [350, 350, 1], "crop_shape": [350, 350], "threshold": 0.2}
    meta = ModelMetadata.from_dict(old)
    assert meta.calibration == {} and meta.threshold == 0.2
    assert ModelMetadata.from_dict(json.loads(meta.to_json())).calibration == {}
    with pytest.raises(ModelFormatError, match="calibration"):
        ModelMetadata.from_dict({**old, "calibration": [0.1]})


def _labels(tmp_path, run, n, seed, *, first_name):
    lst, truth = write_run(str(tmp_path), run, n, seed=seed, hot=0, amplitude=(40.0, 400.0))
    rows = [LabelRow(str(tmp_path / f"{run}.cxi"), f"//{j}", run, 20 if hit else 0, int(hit))
            for j, hit in enumerate(truth)]
    write_labels(str(tmp_path / first_name), rows)
    return rows


def test_calibrate_lifts_a_shifted_runs_sensitivity_to_the_target(tmp_path):
    # a model whose stored threshold (0.99) is too high for this run's weak hits
    model = str(tmp_path / "m.keras")
    max_pixel_model(model, (64, 64), cut=130.0, scale=100.0, threshold=0.99)
    rows = _labels(tmp_path, "run7", 160, 31, first_name="all.csv")
    write_labels(str(tmp_path / "later.csv"), rows[100:])  # held out: the run after the calibration frames

    assert main(["evaluate", "-m", model, "--labels", str(tmp_path / "later.csv"), "--report",
                 str(tmp_path / "before")]) == 0
    before = json.loads((tmp_path / "before" / "metrics.json").read_text())["overall"]
    assert before["sensitivity"] < 0.99  # the uncalibrated threshold misses the target

    out = str(tmp_path / "m_run7.keras")
    assert main(["calibrate", "-m", model, "--labels", str(tmp_path / "all.csv"), "--first", "100",
                 "--target-sensitivity", "0.99", "-o", out]) == 0
    meta = VetoModel.read_metadata(out)
    cal = meta.calibration
    assert meta.threshold < 0.99 and cal["threshold"] == meta.threshold and cal["previous_threshold"] == 0.99
    assert cal["runs"] == ["run7"] and cal["frames"] == 100
    n_hits = sum(r.label for r in rows[:100])
    assert cal["hits"] == n_hits and cal["misses"] == 100 - n_hits
    assert cal["hits_kept"] >= 0.99 * n_hits
    assert cal["before"]["hits_kept"] < cal["hits_kept"]
    lo, hi = cal["sensitivity_interval"]
    assert (lo, hi) == pytest.approx(M.wilson_interval(cal["hits_kept"], n_hits))
    assert VetoModel.read_metadata(model).threshold == 0.99 and not VetoModel.read_metadata(model).calibration
    with zipfile.ZipFile(out) as a, zipfile.ZipFile(model) as b:  # the network itself is the same
        assert sorted(set(a.namelist())) == sorted(set(b.namelist()))
        assert a.read("model.weights.h5") == b.read("model.weights.h5")

    assert main(["evaluate", "-m", out, "--labels", str(tmp_path / "later.csv"), "--report",
                 str(tmp_path / "after")]) == 0
    after = json.loads((tmp_path / "after" / "metrics.json").read_text())["overall"]
    assert after["sensitivity"] >= 0.99  # on frames the calibration did not see
    assert "calibrated on run7" in (tmp_path / "after" / "report.md").read_text()


def test_calibrate_refuses_labels_without_hits_and_overwriting(tmp_path, capsys):
    model = str(tmp_path / "m.keras")
    max_pixel_model(model, (64, 64), cut=130.0, scale=100.0, threshold=0.99)
    lst, truth = write_run(str(tmp_path), "r", 20, seed=3, hot=0, hit_rate=0.0)
    write_labels(str(tmp_path / "l.csv"), [LabelRow(str(tmp_path / "r.cxi"), f"//{j}", "r", 0, 0) for j in range(20)])
    assert main(["calibrate", "-m", model, "--labels", str(tmp_path / "l.csv"), "-o", str(tmp_path / "c.keras")]) == 1
    assert "no scored hit" in capsys.readouterr().err
    assert not (tmp_path / "c.keras").exists()
    assert main(["calibrate", "-m", model, "--labels", str(tmp_path / "l.csv"), "-o", model]) == 1
    assert "must not overwrite" in capsys.readouterr().err
