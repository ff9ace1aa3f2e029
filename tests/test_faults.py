"""Fault injection on the core paths (score and the Python API): bad files, bad frames, bad lists.

Each fault: a one-line reason naming the file and event, the event accounted for (an error row
in the scores CSV, kept as a hit), the other events still scored, no traceback.
"""

import csv
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from sfx_cnn_veto import Veto
from sfx_cnn_veto.testing import spot_frames, write_cxi

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture(scope="module")
def veto(paper_model_file):
    return Veto.load(paper_model_file, batch_size=8)


BAD_FRAMES = {
    "all zero": np.zeros((400, 400), np.float32),
    "saturated": np.full((400, 400), 65535, np.uint16),
    "negative": -np.abs(np.random.default_rng(0).normal(50, 5, (400, 400))),
    "uint16": np.random.default_rng(1).poisson(10, (400, 400)).astype(np.uint16),
    "int32": np.random.default_rng(2).poisson(10, (400, 400)).astype(np.int32),
    "float64": np.random.default_rng(3).normal(10, 2, (400, 400)),
    "part NaN/Inf": np.where(np.arange(160000).reshape(400, 400) % 7 == 0, np.nan, 5.0).astype(np.float32),
}
UNDECIDABLE = {
    "all NaN": (np.full((400, 400), np.nan, np.float32), "NaN or infinite"),
    "all Inf": (np.full((400, 400), np.inf, np.float32), "NaN or infinite"),
    "wrong rank": (np.zeros((2, 400, 400), np.float32), "expected a 2-D frame"),
    "1-D": (np.zeros(400 * 400, np.float32), "expected a 2-D frame"),
    "too small": (np.zeros((100, 500), np.float32), "100x500 is smaller than the 350x350 crop"),
    "strings": (np.array([["a"] * 400] * 400), "expected a numeric frame"),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_odd_but_scorable_frames_get_a_finite_score(veto, name):
    (decision,) = veto.decide([BAD_FRAMES[name]])
    assert decision.ok and 0 <= decision.score <= 1, decision


@pytest.mark.parametrize("name", sorted(UNDECIDABLE))
def test_undecidable_frames_fail_open_with_a_reason(veto, name):
    frame, reason = UNDECIDABLE[name]
    good, _ = spot_frames(2, (400, 400))
    decisions = veto.decide([good[0], frame, good[1]])
    assert decisions[0].ok and decisions[2].ok
    bad = decisions[1]
    assert bad.is_hit and np.isnan(bad.score) and reason in bad.error


@pytest.fixture
def faulty_run(tmp_path):
    """A list whose events hit every kind of file fault, between good events."""
    frames, _ = spot_frames(3, (500, 500), seed=9)
    good = write_cxi(tmp_path / "good.cxi", frames)
    # truncated: a valid file cut in half
    full = write_cxi(tmp_path / "full.cxi", frames)
    data = open(full, "rb").read()
    (tmp_path / "truncated.cxi").write_bytes(data[: len(data) // 2])
    os.unlink(full)
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    (tmp_path / "garbage.cbf").write_bytes(b"###CBF: not really\n" + os.urandom(500))
    with h5py.File(tmp_path / "nodata.h5", "w") as f:
        f["/entry_1/other"] = np.zeros(3)
    with h5py.File(tmp_path / "rank4.h5", "w") as f:
        f["/entry_1/data_1/data"] = np.zeros((2, 2, 40, 40), np.float32)
    with h5py.File(tmp_path / "small.cxi", "w") as f:
        f["/entry_1/data_1/data"] = np.zeros((2, 100, 100), np.float32)
    lines = [
        "good.cxi //0",
        "missing.cxi //0",
        "truncated.cxi //1",
        "corrupt.h5 //0",
        "garbage.cbf",
        "nodata.h5 //0",
        "rank4.h5 //0",
        "good.cxi //7",
        "small.cxi //1",
        "good.cxi // 00001",  # OM's form: the whole line is a (missing) file name
        "good.cxi //1 ",  # trailing space: likewise
        "good.cxi //2",
    ]
    (tmp_path / "faults.lst").write_text("\n".join(lines) + "\n")
    return tmp_path, lines


def test_score_accounts_for_every_faulty_event(faulty_run, paper_model_file):
    tmp, lines = faulty_run
    result = subprocess.run(
        [sys.executable, "-m", "sfx_cnn_veto.cli", "score", "faults.lst", "-m", paper_model_file, "-o", "s.csv"],
        cwd=tmp, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    rows = list(csv.DictReader(open(tmp / "s.csv")))
    # every line is one event (garbage.cbf cannot be listed, so it stays one error row)
    assert len(rows) == len(lines)
    errors = {(f"{r['file']} {r['event']}" if r["event"] else r["file"]): r["error"] for r in rows if r["error"]}
    expected = {
        "missing.cxi //0": "file not found",
        "truncated.cxi //1": "truncated.cxi",
        "corrupt.h5 //0": "not a readable HDF5 file",
        "garbage.cbf": "garbage.cbf",
        "nodata.h5 //0": "no data set",
        "rank4.h5 //0": "3-D per event",
        "good.cxi //7": "event out of range (the file holds 3 frames)",
        "small.cxi //1": "does not fit this model's 350x350 crop",
        "good.cxi // 00001": "file not found",
        "good.cxi //1 ": "file not found",
    }
    assert set(errors) == set(expected)
    for key, fragment in expected.items():
        assert fragment in errors[key], (key, errors[key])
        assert "\n" not in errors[key]
    ok = [r for r in rows if not r["error"]]
    assert [(r["file"], r["event"]) for r in ok] == [("good.cxi", "//0"), ("good.cxi", "//2")]
    assert all(r["is_hit"] == "1" for r in rows if r["error"])  # fail open
    # one line per failed event on stderr, naming file and event
    for key in expected:
        assert any(key.split(" //")[0] in line for line in result.stderr.splitlines())


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root and setpriv to drop to an unprivileged user")
def test_unreadable_permissions(paper_model_file):
    import tempfile

    tmp_path = __import__("pathlib").Path(tempfile.mkdtemp(prefix="sfxveto-perm-", dir="/tmp"))
    os.chmod(tmp_path, 0o777)  # pytest's own tmp dirs are root-only
    frames, _ = spot_frames(2, (400, 400))
    write_cxi(tmp_path / "secret.cxi", frames)
    os.chmod(tmp_path / "secret.cxi", 0o000)
    model = tmp_path / "m.keras"
    shutil.copy(paper_model_file, model)
    os.chmod(model, 0o644)
    (tmp_path / "in.lst").write_text("secret.cxi //0\n")
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-m", "sfx_cnn_veto.cli", "score", "in.lst", "-m", str(model), "-o", "s.csv"],
        cwd=tmp_path, env=dict(ENV, HOME=str(tmp_path)), capture_output=True, text=True, timeout=300,
    )
    if "Permission denied" in result.stderr and "s.csv" not in os.listdir(tmp_path) and result.returncode != 2:
        pytest.skip(f"the virtualenv is not readable by nobody: {result.stderr[-200:]}")
    assert result.returncode == 2, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert rows[0]["is_hit"] == "1" and "permission denied" in rows[0]["error"].lower()
    shutil.rmtree(tmp_path)


def test_an_output_that_is_a_fifo_is_written_in_place_never_renamed_over(tmp_path):
    """``--misses /dev/null`` as root once renamed a regular file over /dev/null; a FIFO stands in for it here."""
    import stat
    import threading

    from sfx_cnn_veto.io.files import writing

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    with writing([str(fifo), str(tmp_path / "plain.txt")]) as handles:
        handles[str(fifo)].write("through the pipe\n")
        handles[str(tmp_path / "plain.txt")].write("a file\n")
    reader.join(timeout=10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not a file renamed over it
    assert got == ["through the pipe\n"] and (tmp_path / "plain.txt").read_text() == "a file\n"
    assert not (tmp_path / "pipe.part").exists()
