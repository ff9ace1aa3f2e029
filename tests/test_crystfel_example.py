"""examples/crystfel/run.sh runs end to end and exits 0 (MPI step skipped here: tested in test_crystfel_filter_lst)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import _crystfel_data as data


@pytest.mark.slow
def test_example_run_sh(tmp_path):
    script = os.path.join(data.ROOT, "examples", "crystfel", "run.sh")
    env = data.env()
    env.update(PYTHON=sys.executable, MPI="0")
    proc = subprocess.run(["bash", script, str(tmp_path / "work")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "indexamajig -i hits.lst -g" in proc.stdout
    work = tmp_path / "work"
    for name in ("hits.lst", "scores.csv", "tagged.stream", "from_om.lst", "hits_scores.csv"):
        assert (work / name).stat().st_size > 0, name
    assert not list(work.glob("*.part")) and not list(work.glob("*.journal"))
