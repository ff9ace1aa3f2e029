"""The demo, in its --quick form: every step runs and writes what the summary points to.

(The full demo is the README's first command; its figures are the README's table.)
"""

import csv
import json
import os
from collections import Counter
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
    _check_metrics(out, metrics)
    _check_filtered_lists(out)
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
    import importlib.util

    if importlib.util.find_spec("sfx_cnn_veto.core.audit") is not None:  # the live audit (issue 14, item 1)
        assert "live audit of the uncalibrated veto: sensitivity" in result.stdout
        assert json.loads((out / "filter" / "run100" / "audit.json").read_text())["audit_fraction"] == 0.25
    else:
        assert "live audit: not available" in result.stdout


def _rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _check_metrics(out, metrics):
    """metrics.json agrees with the per-event scores it was computed from, run by run and overall."""
    from sfx_cnn_veto.core.model import VetoModel

    threshold = VetoModel.read_metadata(str(out / "models" / "default.keras")).threshold
    rows = [r for r in _rows(out / "report" / "scores.csv") if r["label"] in ("0", "1")]  # ambiguous left out
    for r in rows:  # each prediction is the score against the model's threshold (an error: kept as a hit)
        assert r["predicted"] == ("1" if r["error"] or float(r["score"]) >= threshold else "0"), r
    total = Counter()
    for run, m in list(metrics["runs"].items()) + [("overall", metrics["overall"])]:
        mine = rows if run == "overall" else [r for r in rows if r["run"] == run]
        c = Counter((r["label"], r["predicted"]) for r in mine)
        tp, fn, fp, tn = c["1", "1"], c["1", "0"], c["0", "1"], c["0", "0"]
        assert (m["tp"], m["fn"], m["fp"], m["tn"], m["events"]) == (tp, fn, fp, tn, len(mine)), run
        assert m["hit_fraction"] == pytest.approx((tp + fn) / len(mine))
        assert m["accuracy"] == pytest.approx((tp + tn) / len(mine))
        if tp + fn:
            assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
        if tn + fp:
            assert m["specificity"] == pytest.approx(tn / (tn + fp))
        if run != "overall":
            total.update({"events": len(mine)})
    assert total["events"] == metrics["overall"]["events"]


def _check_filtered_lists(out):
    """run98's list: each line once in scores.csv with one label; the lists hold exactly their rows, in order."""
    listed = (out / "data" / "run98.lst").read_text().splitlines()
    hits = (out / "filter" / "hits.lst").read_text().splitlines()
    misses = (out / "filter" / "misses.lst").read_text().splitlines()
    errors = (out / "filter" / "errors.lst").read_text().splitlines()
    rows = _rows(out / "filter" / "scores.csv")
    lines = [f"{r['file']} {r['event']}" if r["event"] else r["file"] for r in rows]
    assert lines == listed  # every event once, in input order, duplicates counted
    assert {r["decision"] for r in rows} <= {"hit", "miss", "error"}
    assert all(r["in_hits_lst"] == "1" for r in rows if r["decision"] in ("hit", "error"))  # fail open
    assert hits == [l for l, r in zip(lines, rows) if r["in_hits_lst"] == "1"]
    assert misses == [l for l, r in zip(lines, rows) if r["decision"] == "miss"]
    assert errors == [l for l, r in zip(lines, rows) if r["decision"] == "error"]
    # filter-lst and evaluate ran the same model on the same frames: the same scores
    evaluated = {(r["file"], r["event"]): float(r["score"]) for r in _rows(out / "report" / "scores.csv")
                 if r["run"] == "run98" and r["score"]}
    filtered = {(r["file"], r["event"]): float(r["score"]) for r in rows if r["score"]}
    assert filtered.keys() == evaluated.keys()
    assert all(abs(filtered[k] - evaluated[k]) < 1e-5 for k in filtered)
