"""examples/crystfel/run.sh runs end to end and exits 0, handing indexamajig (a FAKE here: CrystFEL
is not installable) the exact command line and a list it can read (MPI step skipped here: tested in
test_crystfel_filter_lst)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

import _crystfel_data as data


@pytest.mark.slow
def test_example_run_sh_hands_indexamajig_the_hits_list(tmp_path):
    script = os.path.join(data.ROOT, "examples", "crystfel", "run.sh")
    fake = tmp_path / "fake-indexamajig"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} {os.path.join(data.ROOT, 'tests', '_fake_indexamajig.py')} "
                    "\"$@\"\n")
    fake.chmod(0o755)
    report_path = tmp_path / "indexamajig.json"
    env = data.env()
    env.update(PYTHON=sys.executable, MPI="0", INDEXAMAJIG=str(fake), FAKE_INDEXAMAJIG_REPORT=str(report_path))
    proc = subprocess.run(["bash", script, str(tmp_path / "work")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    work = tmp_path / "work"
    report = json.loads(report_path.read_text())
    assert report["argv"] == ["-i", "hits.lst", "-g", "data/run90.geom", "-o", "hits.stream", "-j",
                              str(len(os.sched_getaffinity(0))), "--peaks=peakfinder8", "--min-snr=5",
                              "--threshold=100", "--indexing=xgandalf,mosflm", "--int-radius=3,4,5"]
    assert report["cwd"] == str(work)
    assert report["problems"] == []
    # what indexamajig read is, in order, every event the scores put in hits.lst, each once
    with open(work / "scores.csv", encoding="utf-8", newline="") as handle:
        listed = [[r["file"], r["event"]] for r in csv.DictReader(handle) if r["in_hits_lst"] == "1"]
    assert listed and report["entries"] == listed
    for name in ("hits.lst", "scores.csv", "tagged.stream", "from_om.lst", "hits_scores.csv"):
        assert (work / name).stat().st_size > 0, name
    assert not list(work.glob("*.part")) and not list(work.glob("*.journal"))
