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
    assert set(metrics["runs"]) == {"run90", "run91", "run98"}
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
