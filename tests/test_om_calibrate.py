"""OM's ``mode: calibrate`` under ``mpirun -n 3``: the first frames set the threshold, then the ranks veto.

The model is the OM tests' tiny model with its threshold raised to 0.999 (a model whose threshold is far
too high for this run); the run's first frames, labelled by OM's own peakfinder8, bring it down.
"""

from __future__ import annotations

import dataclasses

import pytest

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.training.labels import PAPER_HIT_ABOVE, PAPER_MISS_BELOW
from sfx_cnn_veto_om.calibration import RunCalibration
from sfx_cnn_veto_om.config import CnnVetoConfig
from test_om_adapter import _check_common, needs_mpi, needs_om, run_monitor

CALIBRATION_FRAMES = 16


def _record(score, mode="calibrate"):
    return {"mode": mode, "score": score, "peakfinder8": True, "error": None}


def test_config_calibrate_mode_and_its_keys(tmp_path):
    cfg = CnnVetoConfig.from_group({"mode": "calibrate", "calibration_frames": 50, "calibration_target": 0.98})
    assert (cfg.mode, cfg.calibration_frames, cfg.calibration_target) == ("calibrate", 50, 0.98)
    with pytest.raises(ConfigError, match="calibration_frames"):
        CnnVetoConfig.from_group({"mode": "calibrate", "calibration_frames": 0})
    with pytest.raises(ConfigError, match="calibration_target"):
        CnnVetoConfig.from_group({"mode": "calibrate", "calibration_target": 1.5})


def test_run_calibration_labels_by_peak_count_and_retries_without_hits():
    cal = RunCalibration(4, 0.99, previous=0.9)
    # four misses (0-1 peaks) and nothing else: no hit to calibrate on, it tries again after 4 more
    for score in (0.1, 0.2, 0.05, 0.3):
        assert not cal.add(_record(score), 0)
    assert cal.failures == 1 and not cal.done and "no scored hit" in cal.failure
    assert not cal.add(_record(0.99, mode="veto"), 30)  # only frames scored in calibrate mode count
    assert not cal.add(_record(0.6), 5)                  # ambiguous (2-10 peaks): left out
    assert not cal.add(_record(0.7), 25)
    assert not cal.add(_record(0.4), 40)
    assert cal.add(_record(0.15), 1)
    assert cal.done and cal.threshold == 0.4  # the lowest hit's score (target 0.99 of 2 hits), below 0.9
    assert (cal.record["hits"], cal.record["misses"], cal.record["ambiguous"], cal.record["frames"]) == (2, 5, 1, 8)
    assert "first 8 frames" in cal.log_line() and "switching to veto mode" in cal.log_line()


def _high_threshold_copy(src, dst):
    from sfx_cnn_veto.core.model import VetoModel
    from sfx_cnn_veto.training.calibrate import write_calibrated

    meta = VetoModel.read_metadata(str(src))
    return write_calibrated(str(src), str(dst), dataclasses.replace(meta, threshold=0.999))


@needs_om
@needs_mpi
def test_calibrate_mode_sets_the_threshold_from_the_first_frames_then_vetoes(om_demo, tmp_path):
    from sfx_cnn_veto.training.calibrate import calibrated_threshold

    model = _high_threshold_copy(om_demo["model"], tmp_path / "too_high.keras")
    run = run_monitor(tmp_path / "run", om_demo["list"], processing_layer=(
        "sfx_cnn_veto_om.processing.CnnVetoCrystallographyProcessing"),
        cnn_veto={"model": model, "mode": "calibrate", "calibration_frames": CALIBRATION_FRAMES})
    rows = _check_common(run, om_demo["truth"])
    ordered = run["rows"]  # decisions.csv: in the order the collector received the frames
    first = [r for r in ordered if r["mode"] == "calibrate"][:CALIBRATION_FRAMES]
    assert len(first) == CALIBRATION_FRAMES and all(r["peakfinder8"] == "1" for r in first)
    labelled = [(float(r["score"]), int(int(r["num_peaks"]) > PAPER_HIT_ABOVE)) for r in first
                if int(r["num_peaks"]) < PAPER_MISS_BELOW or int(r["num_peaks"]) > PAPER_HIT_ABOVE]
    expected, _ = calibrated_threshold([s for s, _ in labelled], [y for _, y in labelled], target=0.99,
                                       previous=0.999)
    messages = [m for m in run["messages"] if "calibration" in m]
    assert len(messages) == 1, run["log"][-3000:]
    threshold = messages[0]["calibration"]["threshold"]
    assert threshold == pytest.approx(expected) and threshold < 0.999
    assert f"calibrated on the run's first {CALIBRATION_FRAMES} frames" in run["log"]
    assert "switching to veto mode" in run["log"]
    assert run["final"]["mode"] == "veto" and run["final"]["threshold"] == pytest.approx(threshold)
    # after the switch the ranks decide with the collector's threshold and skip peakfinder8 on misses
    vetoing = [r for r in rows.values() if r["mode"] == "veto"]
    assert vetoing, "no rank switched to veto mode"
    for r in vetoing:
        assert r["cnn_hit"] == str(int(float(r["score"]) >= threshold)), r
        assert r["vetoed"] == str(1 - int(r["cnn_hit"])), r
        assert r["peakfinder8"] == r["cnn_hit"] or r["audited"] == "1", r  # the audit runs peakfinder8 on a few
    assert any(r["vetoed"] == "1" for r in vetoing)
    assert run["final"]["vetoed"] == sum(r["vetoed"] == "1" for r in rows.values())
