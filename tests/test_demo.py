"""The demo, in its --quick form: every step runs and writes what the summary points to.

(The full demo is the README's first command; its figures are the README's table.)
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("om", reason="the demo labels with OM's peakfinder8")


@pytest.mark.slow
def test_quick_demo_runs_every_step(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "sfx_cnn_veto.cli", "demo", str(out), "--quick"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert set(metrics) >= {"runs", "overall"}
    assert set(metrics["runs"]) == {"run90", "run91", "run98", "run100"}
    for m in metrics["runs"].values():
        assert {"events", "hit_fraction", "sensitivity", "specificity", "accuracy", "tp", "fp", "tn", "fn"} <= set(m)
    assert (out / "report" / "compare.md").exists()
    assert (out / "models" / "default.keras").exists()
    # the filtered list accounts for every event of run98
    n_in = len((out / "data" / "run98.lst").read_text().splitlines())
    hits = (out / "filter" / "hits.lst").read_text().splitlines()
    misses = (out / "filter" / "misses.lst").read_text().splitlines()
    errors = (out / "filter" / "errors.lst").read_text().splitlines()
    assert len(set(hits) - set(errors)) + len(misses) + len(errors) == n_in
    assert list((out / "pictures").glob("*.png"))
    commands = (out / "commands.sh").read_text()
    assert "sfx-cnn-veto simulate" in commands and "sfx-cnn-veto filter-lst" in commands
    assert "Outputs:" in result.stdout and "Per run" in result.stdout
    # the shifted-run story: calibrated on run100's first frames, both vetoes judged on its other frames
    from sfx_cnn_veto.core.model import VetoModel

    calibration = VetoModel.read_metadata(str(out / "models" / "default_run100.keras")).calibration
    assert calibration["runs"] == ["run100"] and calibration["frames"] == 26
    judged = json.loads((out / "report" / "run100_after_26" / "metrics.json").read_text())["overall"]
    assert judged["events"] == len([r for r in (out / "labels.csv").read_text().splitlines()[1:]
                                    if ",run100," in r and not r.endswith(",")]) - (26 - calibration["ambiguous"])
    assert "A shifted run (run100)" in result.stdout and "calibrated (threshold" in result.stdout
    assert "sfx-cnn-veto calibrate" in commands
