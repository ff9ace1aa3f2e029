"""The live audit in the ``sfx-cnn-veto psana`` command, on xtc2 written by psana's own writer.

A model that vetoes every frame (hits too) runs over a small run with
``--audit-fraction 0.6``: psana's peakfinder8 must count the events whose
timestamp hash is below 0.6, the vetoed ones it calls hits must be kept, and
``audit.json``, the summary and the ALARM line must say so; serially and under
``mpirun -n 5`` (two big-data ranks), the same events are audited and the
outputs agree.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from _audit_helpers import blind_model
from test_psana_adapter import MPIRUN, _clean_env, _import_psana, needs_mpirun, needs_psana

from sfx_cnn_veto.core import audit as A

DETECTOR = "camera"
FRACTION = 0.6
AUDIT_KEYS = {"audit_fraction", "vetoed", "audited_vetoed", "audited_vetoed_pf8_hits", "kept", "audited_kept",
              "audited_kept_pf8_hits", "sensitivity_estimate", "sensitivity_interval", "target_sensitivity", "alarm"}


@pytest.fixture(scope="module")
def blind(paper_model_file, tmp_path_factory):
    """The paper network made to say "miss" on every frame: it vetoes every true hit."""
    return str(blind_model(paper_model_file, tmp_path_factory.mktemp("blind") / "blind.keras"))


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory):
    """24 toy frames (about half with 20-60 spots) and one event without detector data, as xtc2."""
    _import_psana()
    from sfx_cnn_veto_psana.frames import toy_frames
    from sfx_cnn_veto_psana.xtc import default_timestamps, write_run

    good, _labels = toy_frames(24, shape=(400, 400), hit_fraction=0.5, seed=11)
    frames = list(good)
    frames.insert(7, None)  # psana returns None: undecided, kept, never audited
    stamps = default_timestamps(len(frames), start=1_780_000_000.0)  # fixed: the same audited events every time
    run = write_run(tmp_path_factory.mktemp("xtc"), frames, exp="sfxaudit01", run=5, detector_name=DETECTOR,
                    timestamps=stamps)
    return run, frames


@pytest.fixture(scope="module")
def expected(audit_run):
    """Each event's audit, worked out directly: the hash draw and psana's peakfinder8 on the frame written."""
    from sfx_cnn_veto_psana.peaks import create_psana_peakfinder8

    run, frames = audit_run
    count = create_psana_peakfinder8({})
    rows = []
    for stamp, frame in zip(run.timestamps, frames):
        audited = frame is not None and A.is_audited(str(int(stamp)), FRACTION)
        peaks = count(frame) if audited else -1
        rows.append({"timestamp": int(stamp), "audited": audited, "peaks": peaks, "none": frame is None,
                     "rescued": audited and peaks >= A.DEFAULT_MIN_PEAKS,
                     "true_hit": frame is not None and count(frame) >= A.DEFAULT_MIN_PEAKS})
    return rows


def _args(run, blind, out, *extra):
    return ["psana", "--exp", run.exp, "--run", str(run.run), "--dir", run.dir, "--offline", "--detector", DETECTOR,
            "-m", blind, "--batch-size", "4", "--table", str(out / "t.h5"), "--hits", str(out / "h.npy"),
            "--audit-fraction", str(FRACTION), *extra]


@pytest.fixture(scope="module")
def serial(audit_run, blind, tmp_path_factory):
    """The command run serially, in this process: (output directory, exit code, stderr)."""
    from sfx_cnn_veto.cli import main

    run, _frames = audit_run
    out = tmp_path_factory.mktemp("serial")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(_args(run, blind, out))
    return out, code, err.getvalue()


@needs_psana
def test_psana_command_audit_fires_the_alarm_and_keeps_audited_pf8_hits(serial, expected):
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS
    from sfx_cnn_veto_psana import read_hits, read_table

    out, code, err = serial
    assert code == EXIT_EVENT_ERRORS, err[-3000:]  # the event without data (kept, not counted)
    audited = [r for r in expected if r["audited"]]
    rescued = [r for r in expected if r["rescued"]]
    assert rescued and len(rescued) < len(audited), "the run must hold audited hits and audited misses"
    assert any(r["true_hit"] and not r["audited"] for r in expected), "no unaudited hit: the selection is untested"

    audit = json.loads((out / "audit.json").read_text())  # beside the table by default
    assert AUDIT_KEYS <= set(audit)
    scored = sum(1 for r in expected if not r["none"])
    assert (audit["vetoed"], audit["kept"], audit["audit_fraction"]) == (scored, 0, FRACTION)
    assert (audit["audited_vetoed"], audit["audited_vetoed_pf8_hits"]) == (len(audited), len(rescued))
    assert audit["audited_kept"] == audit["audited_kept_pf8_hits"] == 0
    assert audit["sensitivity_estimate"] == 0.0 and audit["sensitivity_interval"][1] < audit["target_sensitivity"]
    assert audit["alarm"] is True
    assert re.search(rf"psana: audit: {len(rescued)} of {len(audited)} audited vetoed frames", err), err[-3000:]
    assert f"{len(rescued)} audited misses are peakfinder8 hits, kept in {out / 'h.npy'}" in err
    assert "psana: ALARM: the veto keeps at most 0.0% of the hits" in err

    # the hit list: the audited events peakfinder8 calls hits, and the undecided event (fail open); nothing else
    want = sorted(r["timestamp"] for r in expected if r["rescued"] or r["none"])
    assert read_hits(out / "h.npy").tolist() == want
    table = read_table(out / "t.h5")
    assert table["timestamp"].tolist() == [r["timestamp"] for r in expected]
    assert not table["is_hit"][~table["error"]].any()  # the CNN vetoed every scored event
    assert table["audited"].tolist() == [r["audited"] for r in expected]
    assert table["audit_peaks"].tolist() == [r["peaks"] for r in expected]  # psana's peakfinder8 on the frame
    assert table["rescued"].tolist() == [r["rescued"] for r in expected]


@pytest.mark.slow
@pytest.mark.mpi
@needs_psana
@needs_mpirun
def test_psana_command_audits_the_same_events_under_mpirun_as_serially(audit_run, blind, serial, tmp_path):
    """``mpirun -n 5``: two big-data ranks each audit their events; the joined table gives the serial counts."""
    from sfx_cnn_veto_psana import read_hits, read_table

    run, frames = audit_run
    cmd = [MPIRUN, "--oversubscribe", "-n", "5"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [sys.executable, "-c", "from sfx_cnn_veto.cli import main; raise SystemExit(main())",
            *_args(run, blind, tmp_path, "--psana-batch", "4", "--smd-batch", "2")]
    env = dict(_clean_env(), SFX_CNN_VETO_PROGRESS="0")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]  # the event without data (kept)
    per_rank = [int(n) for n in re.findall(r"^(\d+) events: ", proc.stderr, re.M)]
    assert sum(per_rank) == len(frames) and len([n for n in per_rank if n > 0]) == 2, proc.stderr[-3000:]

    out = serial[0]
    assert json.loads((tmp_path / "audit.json").read_text()) == json.loads((out / "audit.json").read_text())
    np.testing.assert_array_equal(read_hits(tmp_path / "h.npy"), read_hits(out / "h.npy"))
    mpi_table, serial_table = read_table(tmp_path / "t.h5"), read_table(out / "t.h5")
    for name in ("timestamp", "audited", "audit_peaks", "rescued", "is_hit", "error"):
        np.testing.assert_array_equal(mpi_table[name], serial_table[name], err_msg=name)
    assert proc.stderr.count("psana: ALARM:") == 1  # one report, from the process holding the joined table


@needs_psana
def test_psana_command_without_audit_writes_no_audit_json(audit_run, blind, tmp_path):
    from sfx_cnn_veto.cli import main
    from sfx_cnn_veto_psana import read_hits, read_table

    run, _frames = audit_run
    args = _args(run, blind, tmp_path)
    args[args.index("--audit-fraction") + 1] = "0"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        main(args)
    assert not (tmp_path / "audit.json").exists() and "psana: audit" not in err.getvalue()
    assert not read_table(tmp_path / "t.h5")["audited"].any()
    assert len(read_hits(tmp_path / "h.npy")) == 1  # only the undecided event: the blind model vetoes the rest


@pytest.mark.parametrize("extra, message", [
    (["--audit-fraction", "1.5"], "--audit-fraction: expected a number in [0, 1]"),
    (["--target-sensitivity", "2"], "--target-sensitivity: expected a number in [0, 1]"),
    (["--audit-min-peaks", "0"], "--audit-min-peaks: expected a positive integer"),
    (["--audit-json", "TABLE"], "must all be different files"),
])
def test_psana_command_refuses_bad_audit_options_before_reading(tmp_path, capsys, extra, message):
    """Refused in one line before psana is imported or the model read (no run, no model exists here)."""
    from sfx_cnn_veto.cli import EXIT_USER_ERROR, main

    extra = [str(tmp_path / "t.h5") if e == "TABLE" else e for e in extra]
    code = main(["psana", "--exp", "x", "--run", "1", "--detector", DETECTOR, "-m", str(tmp_path / "none.keras"),
                 "--table", str(tmp_path / "t.h5"), *extra])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and message in err, err[-2000:]


@needs_psana
def test_psana_audit_counts_every_segment_of_a_tall_stack():
    """(segments, ss, fs): every segment's peaks count, however far its rows lie from the stack's centre.

    Stacked into 3200x400 and counted with the default resolution cut (1200 pixels from the stack's
    centre), the spots in the first and last segments would all be masked.
    """
    from sfx_cnn_veto_psana.frames import toy_frames
    from sfx_cnn_veto_psana.peaks import create_psana_peakfinder8
    from sfx_cnn_veto_psana.veto import psana_audit

    _import_psana()
    hits, labels = toy_frames(8, shape=(400, 400), hit_fraction=0.5, seed=3)
    segments, _ = toy_frames(8, shape=(400, 400), hit_fraction=0.0, seed=4)
    segments[0], segments[7] = hits[np.flatnonzero(labels)[:2]]
    count = create_psana_peakfinder8({})
    per_segment = [count(s) for s in segments]
    assert per_segment[0] >= A.DEFAULT_MIN_PEAKS and per_segment[7] >= A.DEFAULT_MIN_PEAKS
    assert psana_audit(fraction=1.0).counter(segments) == sum(per_segment)


def test_table_columns_give_back_the_audits_own_counts_errors_included(tmp_path):
    """``audit_counts`` of a table (the merge under MPI) equals the counts the audit kept while recording it.

    The h5py table (LCLS-I, or no smalldata); a counter that fails on some frames makes audit errors,
    undecided events are neither counted nor audited, and rescued rows are in the hit list.
    """
    from sfx_cnn_veto.core.pipeline import Decision
    from sfx_cnn_veto_psana import VetoTable, audit_counts, read_hits, read_table

    def counter(frame):  # the frame is its peak count here; negative: peakfinder8 fails
        if frame < 0:
            raise RuntimeError("peakfinder8 failed")
        return frame

    audit = A.Audit(counter, fraction=0.7, target_sensitivity=0.9)
    table = VetoTable(None, tmp_path / "t.h5", hits=tmp_path / "h.npy", timestamp=lambda evt: evt)
    rescued = set()
    for stamp in range(1000, 1200):
        decision = Decision(float("nan"), True, "no frame") if stamp % 17 == 0 else Decision(0.3, stamp % 3 == 0)
        result = audit(stamp, [-1, 0, 4, 30][stamp % 4], decision)
        table.record(stamp, decision, result)
        if result.rescued:
            rescued.add(stamp)
    table.done()
    got = audit_counts(tmp_path / "t.h5", fraction=0.7, target_sensitivity=0.9)
    assert got.counts() == audit.counts.counts()
    assert got.audit_errors > 0 and got.audited_vetoed_pf8_hits == len(rescued) > 0
    assert got.estimate() == audit.counts.estimate()
    rows = read_table(tmp_path / "t.h5")
    assert set(rows["timestamp"][rows["rescued"]].tolist()) == rescued
    assert set(read_hits(tmp_path / "h.npy").tolist()) == set(rows["timestamp"][rows["is_hit"]].tolist()) | rescued
