"""filter-lst: accounting, list formats to the character, keep-fraction, atomic outputs, SIGKILL + resume, MPI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import _crystfel_data as data
from sfx_cnn_veto.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """CXI files (good, corrupt, truncated, too small, NaN), a list with every odd line, and a tiny model."""
    d = tmp_path_factory.mktemp("crystfel")
    a = data.frames(40, 1)
    data.write_cxi(str(d / "run_a.cxi"), a)
    data.write_cxi(str(d / "run_b.cxi"), data.frames(30, 2))
    os.makedirs(d / "dir with space")
    data.write_cxi(str(d / "dir with space" / "run c.cxi"), data.frames(20, 3))
    (d / "corrupt.cxi").write_bytes(os.urandom(4096))
    full = data.write_cxi(str(d / "truncated.cxi"), data.frames(10, 4))
    size = os.path.getsize(full)
    with open(full, "r+b") as handle:
        handle.truncate(size // 2)
    data.write_cxi(str(d / "small.cxi"), data.frames(2, 5, shape=(32, 32)))
    nan = data.frames(2, 6)
    nan[0] = np.nan
    data.write_cxi(str(d / "nan.cxi"), nan)
    model = data.make_model(str(d), a)
    lines = [f"run_a.cxi //{i}\n" for i in range(40)] + [
        "dir with space/run c.cxi //3\n",
        "dir with space/run c.cxi //00004\n",
        "run_b.cxi\n",                 # bare file name: all 30 events
        "missing.cxi //1\n",
        "corrupt.cxi //0\n",
        "truncated.cxi //2\n",
        "truncated.cxi\n",             # cannot even be listed: one error event
        "small.cxi //0\n",
        "nan.cxi //0\n",
        "nan.cxi //1\n",
        "run_a.cxi //999\n",
        "run_a.cxi // 00005\n",        # OM's form: indexamajig reads a file name
        "run_a.cxi //6 \n",            # trailing space: same
        "run_a.cxi\t//7\n",            # tab: same
        "# a comment\n",               # not a comment to indexamajig
        "\n",                          # skipped, as indexamajig does
        "run_a.cxi //8\r\n",           # CRLF: accepted
    ]
    (d / "in.lst").write_bytes("".join(lines).encode())
    expected = (
        [f"run_a.cxi //{i}" for i in range(40)]
        + ["dir with space/run c.cxi //3", "dir with space/run c.cxi //4"]
        + [f"run_b.cxi //{i}" for i in range(30)]
        + ["missing.cxi //1", "corrupt.cxi //0", "truncated.cxi //2", "truncated.cxi", "small.cxi //0",
           "nan.cxi //0", "nan.cxi //1", "run_a.cxi //999", "run_a.cxi // 00005", "run_a.cxi //6 ",
           "run_a.cxi\t//7", "# a comment", "run_a.cxi //8"]
    )
    errors = {"missing.cxi //1", "corrupt.cxi //0", "truncated.cxi //2", "truncated.cxi", "small.cxi //0",
              "nan.cxi //0", "run_a.cxi //999", "run_a.cxi // 00005", "run_a.cxi //6 ", "run_a.cxi\t//7",
              "# a comment"}
    return {"dir": d, "model": model, "expected": expected, "errors": errors}


def run_filter(world, out, *extra, inputs=None):
    out.mkdir(exist_ok=True)
    return data.in_dir(world["dir"], ["filter-lst", *(inputs or ["in.lst"]), "-m", world["model"],
                                      "-o", out / "hits.lst", "--misses", out / "misses.lst",
                                      "--errors", out / "errors.lst", "--scores", out / "scores.csv",
                                      "--batch-size", "8", *extra])


def test_every_event_is_accounted_for_once(world, tmp_path, capsys):
    code = run_filter(world, tmp_path)
    assert code == 2  # some events errored
    err = capsys.readouterr().err
    rows = data.read_csv(tmp_path / "scores.csv")
    lines = [r["file"] + (" " + r["event"] if r["event"] else "") for r in rows]
    # in = hits + misses + errors, in input order, each once
    assert len(rows) == len(world["expected"]) == 85
    labels = {r["decision"] for r in rows}
    assert labels == {"hit", "miss", "error"}
    hits = [l for l, r in zip(lines, rows) if r["decision"] == "hit"]
    misses = [l for l, r in zip(lines, rows) if r["decision"] == "miss"]
    errors = [l for l, r in zip(lines, rows) if r["decision"] == "error"]
    assert len(hits) + len(misses) + len(errors) == len(rows)
    assert set(errors) == world["errors"]
    assert data.read_lines(tmp_path / "misses.lst") == misses
    assert data.read_lines(tmp_path / "errors.lst") == errors
    # hits.lst: hits and (fail open) errors, in input order, as indexamajig reads them
    hits_lst = data.read_lines(tmp_path / "hits.lst")
    assert hits_lst == [l for l in world["expected"] if l in set(hits) | world["errors"]]
    assert sorted(hits + misses + errors) == sorted(world["expected"])
    assert "dir with space/run c.cxi //4" in hits + misses  # '//00004' written canonically
    assert "run_a.cxi //8" in hits + misses                # CRLF line read
    good = [l for l in hits + misses if l not in world["errors"]]
    assert all(l.count(" //") == 1 and not l.endswith(" ") and "\t" not in l for l in good)
    assert 10 < len(hits) < 70  # the tiny model's threshold is the median score
    # each error carries its reason, naming the file
    reason = {l: r["error"] for l, r in zip(lines, rows) if r["decision"] == "error"}
    assert "file not found" in reason["missing.cxi //1"]
    assert "corrupt.cxi" in reason["corrupt.cxi //0"] and "HDF5" in reason["corrupt.cxi //0"]
    assert "truncated.cxi" in reason["truncated.cxi"]
    assert "does not fit" in reason["small.cxi //0"]
    assert "NaN" in reason["nan.cxi //0"]
    assert "out of range" in reason["run_a.cxi //999"]
    assert "// 00005" in reason["run_a.cxi // 00005"] and "indexamajig wants" in reason["run_a.cxi // 00005"]
    assert "trailing whitespace" in reason["run_a.cxi //6 "]
    assert "tab" in reason["run_a.cxi\t//7"]
    assert "not comments" in reason["# a comment"]
    assert all(r["score"] == "" and r["is_hit"] == "1" for r in rows if r["decision"] == "error")
    assert all(r["score"] != "" for r in rows if r["decision"] != "error")
    assert "85 events in" in err and f"{len(errors)} errors" in err and "frames/s" in err
    assert not os.path.exists(str(tmp_path / "hits.lst.journal"))
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


def test_errors_as_misses_and_threshold(world, tmp_path):
    assert run_filter(world, tmp_path, "--errors-as-misses", "--threshold", "0") == 2
    hits = data.read_lines(tmp_path / "hits.lst")
    assert hits == [l for l in world["expected"] if l not in world["errors"]]  # threshold 0: every scored frame
    assert set(data.read_lines(tmp_path / "errors.lst")) == world["errors"]
    assert data.read_lines(tmp_path / "misses.lst") == []


def test_keep_misses_fraction_is_reproducible_and_order_independent(world, tmp_path):
    assert run_filter(world, tmp_path / "one", "--keep-misses-fraction", "0.5") == 2
    rows = data.read_csv(tmp_path / "one" / "scores.csv")
    kept = {(r["file"], r["event"]) for r in rows if r["decision"] == "miss" and r["in_hits_lst"] == "1"}
    misses = [r for r in rows if r["decision"] == "miss"]
    assert 0.2 * len(misses) < len(kept) < 0.8 * len(misses)
    listed = data.read_lines(tmp_path / "one" / "hits.lst")
    assert all(f"{f} {e}" in listed for f, e in kept)
    assert len(data.read_lines(tmp_path / "one" / "misses.lst")) == len(misses)  # kept misses are still misses
    # the same draw with the list reversed (another order, other batches): the same misses kept
    lines = (world["dir"] / "in.lst").read_text().splitlines(keepends=True)
    (world["dir"] / "reversed.lst").write_text("".join(reversed([l for l in lines if l.startswith("run_a.cxi //")])))
    assert run_filter(world, tmp_path / "two", "--keep-misses-fraction", "0.5", inputs=["reversed.lst"]) in (0, 2)
    rows2 = data.read_csv(tmp_path / "two" / "scores.csv")
    kept2 = {(r["file"], r["event"]) for r in rows2 if r["decision"] == "miss" and r["in_hits_lst"] == "1"}
    assert kept2 == {k for k in kept if k[0] == "run_a.cxi"}
    assert kept2  # (the draw kept some of run_a's misses)


def test_resume_refuses_a_journal_of_other_settings(world, tmp_path, capsys):
    from sfx_cnn_veto_crystfel.journal import Journal

    Journal(str(tmp_path / "hits.lst")).create({"model_sha256": "another model"})
    assert run_filter(world, tmp_path, "--resume") == 1
    assert "cannot resume" in capsys.readouterr().err
    assert not (tmp_path / "hits.lst").exists()


def test_old_outputs_survive_a_failed_run(world, tmp_path):
    (tmp_path / "hits.lst").write_text("old\n")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    code = main(["filter-lst", str(world["dir"] / "in.lst"), "-m", str(bad), "-o", str(tmp_path / "hits.lst")])
    assert code == 1
    assert (tmp_path / "hits.lst").read_text() == "old\n"


# ---------------------------------------------------------------------------
# Crash safety: SIGKILL real runs at several points, resume, compare bytes.

@pytest.fixture(scope="module")
def big(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    for r in range(3):
        data.write_cxi(str(d / f"r{r}.cxi"), data.frames(300, 10 + r, shape=(64, 64)))
    lines = [f"r{r}.cxi //{i}\n" for r in range(3) for i in range(300)] + ["gone.cxi //0\n", "r0.cxi //5\n"]
    (d / "big.lst").write_text("".join(lines))
    return d


def run_mpi(cmd, *, cwd=None, timeout=360) -> tuple[int, str]:
    """Run mpirun in its own process group; on a timeout kill the whole group (no orphan ranks)."""
    proc = subprocess.Popen(cmd, env=data.env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        ps = subprocess.run(["ps", "-o", "pid,stat,etime,time,pcpu,args", "-g", str(proc.pid)],
                            capture_output=True, text=True).stdout
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpirun did not finish in {timeout} s; its processes were:\n{ps}\noutput:\n{out[-3000:]}")
    return proc.returncode, out




OUTS = ["hits.lst", "misses.lst", "errors.lst", "scores.csv", "audit.json"]


def big_args(world, big, out, *extra):
    return ["filter-lst", str(big / "big.lst"), "-m", world["model"], "-o", str(out / "hits.lst"),
            "--misses", str(out / "misses.lst"), "--errors", str(out / "errors.lst"),
            "--scores", str(out / "scores.csv"), "--batch-size", "4", "--keep-misses-fraction", "0.1",
            "--audit-fraction", "0.2", *extra]


@pytest.fixture(scope="module")
def big_ref(world, big, tmp_path_factory):
    """The uninterrupted serial run over the big list."""
    ref = tmp_path_factory.mktemp("big_ref")
    assert main(big_args(world, big, ref)) == 2
    return ref


def kill_at(cmd, journal, point):
    """Start ``cmd``, SIGKILL it once the journal holds ``point`` blocks."""
    proc = subprocess.Popen(cmd, env=data.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while data.journal_blocks(journal) < point and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert data.journal_blocks(journal) >= point


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_bytes(world, big, big_ref, tmp_path):
    n_blocks = (902 + 3) // 4
    work = tmp_path / "work"
    work.mkdir()
    journal = str(work / "hits.lst") + ".journal"
    for i, point in enumerate([2, n_blocks // 3, (2 * n_blocks) // 3]):
        cmd = [sys.executable, "-m", "sfx_cnn_veto.cli", *big_args(world, big, work, *(["--resume"] if i else []))]
        kill_at(cmd, journal, point)
        assert not (work / "hits.lst").exists(), "a killed run left a hits.lst"
    done_before = data.journal_blocks(journal)
    final = data.cli(*big_args(world, big, work, "--resume"))
    assert final.returncode == 2, final.stderr
    assert "replayed from the journal" in final.stderr
    scored = int(final.stderr.split("scored ")[1].split()[0])
    assert scored <= 902 - 4 * (done_before - 1)  # finished blocks were not scored again
    for name in OUTS:  # audit.json included (tests/test_audit.py resumes a run whose frames are audited)
        assert (work / name).read_bytes() == (big_ref / name).read_bytes(), name
    assert not os.path.exists(journal)


# ---------------------------------------------------------------------------
# MPI: mpirun -n 3 gives the serial run's bytes.

@pytest.mark.slow
@pytest.mark.mpi
def test_mpirun_three_ranks_identical_to_serial(world, tmp_path):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun is not installed (Debian: openmpi-bin)")
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install mpi4py)")
    serial = tmp_path / "serial"
    assert run_filter(world, serial, "--keep-misses-fraction", "0.3", "--audit-fraction", "0.5") == 2
    par = tmp_path / "mpi"
    par.mkdir()
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "3", sys.executable, "-m", "sfx_cnn_veto.cli",
           "filter-lst", "in.lst", "-m", world["model"], "-o", str(par / "hits.lst"),
           "--misses", str(par / "misses.lst"), "--errors", str(par / "errors.lst"),
           "--scores", str(par / "scores.csv"), "--batch-size", "8", "--keep-misses-fraction", "0.3",
           "--audit-fraction", "0.5"]
    code, out = run_mpi(cmd, cwd=world["dir"])
    assert code == 2, out
    assert "on 3 ranks" in out
    for name in ("hits.lst", "misses.lst", "errors.lst", "scores.csv", "audit.json"):
        assert (par / name).read_bytes() == (serial / name).read_bytes(), name
    assert json.loads((par / "audit.json").read_text())["audited_kept"] > 0  # the same events audited


def test_non_utf8_file_names_pass_through_byte_for_byte(world, tmp_path):
    lst = tmp_path / "odd.lst"
    lst.write_bytes(b"caf\xe9.cxi //0\nrun_a.cxi //1\n")
    assert run_filter(world, tmp_path / "out", "--threshold", "0", inputs=[str(lst)]) == 2
    out = tmp_path / "out"
    assert (out / "errors.lst").read_bytes() == b"caf\xe9.cxi //0\n"
    assert (out / "hits.lst").read_bytes() == b"caf\xe9.cxi //0\nrun_a.cxi //1\n"
    assert b"caf\xe9.cxi,//0,,1," in (out / "scores.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.mpi
def test_serial_run_killed_then_resumed_under_mpirun(world, big, big_ref, tmp_path):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun is not installed (Debian: openmpi-bin)")
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install mpi4py)")
    journal = str(tmp_path / "hits.lst") + ".journal"
    kill_at([sys.executable, "-m", "sfx_cnn_veto.cli", *big_args(world, big, tmp_path)], journal, 100)
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", sys.executable, "-m", "sfx_cnn_veto.cli",
           *big_args(world, big, tmp_path, "--resume")]
    code, out = run_mpi(cmd)
    assert code == 2, out
    assert "on 2 ranks" in out and "replayed from the journal" in out
    for name in OUTS:
        assert (tmp_path / name).read_bytes() == (big_ref / name).read_bytes(), name
