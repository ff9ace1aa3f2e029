"""Reliability, part 2: hand-offs that always end, thread settings that take effect, a fixed ``auto``
rule, and a journal fingerprint that covers every file the scores depend on (issue 15)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import _crystfel_data as data


# ---------------------------------------------------------------------------
# 1. The prefetch thread's end marker reaches a slow consumer.

def test_prefetch_ends_for_a_consumer_slower_than_a_second_per_item():
    from sfx_cnn_veto.core.pipeline import _background

    got: list = []
    finished = threading.Event()

    def consume():
        for item in _background(iter([0, 1]), maxsize=1):
            got.append(item)
            if item == 0:
                time.sleep(1.5)  # the reader has put item 1 and waits to put its end marker
        finished.set()

    threading.Thread(target=consume, daemon=True).start()
    assert finished.wait(6.0), f"the generator never ended (items seen: {got})"
    assert got == [0, 1]


def test_prefetch_raises_the_readers_error_after_its_items():
    from sfx_cnn_veto.core.pipeline import _background

    def items():
        yield 1
        raise OSError("disk gone")

    out = []
    with pytest.raises(OSError, match="disk gone"):
        for item in _background(items(), maxsize=1):
            out.append(item)
            time.sleep(1.2)
    assert out == [1]


def test_prefetch_consumer_raises_when_the_reader_died_without_its_end_marker(monkeypatch):
    """A reader thread gone without a word (no item, no end, no error) is an error, not a hang."""
    from sfx_cnn_veto.core.pipeline import _background
    from sfx_cnn_veto.prefetch import Prefetcher

    monkeypatch.setattr(Prefetcher, "_produce", lambda self: None)
    outcome: list = []

    def consume():
        try:
            outcome.append(list(_background(iter([0, 1]), maxsize=1)))
        except RuntimeError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(5.0)
    assert outcome and isinstance(outcome[0], RuntimeError), f"the consumer hung or ended quietly: {outcome}"
    assert "without its end marker" in str(outcome[0])


def test_stream_events_ends_for_a_consumer_slower_than_a_second_per_decision(tiny, tmp_path):
    """The issue's reproduction: every decision came out, then the generator never returned."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    data.write_cxi(str(tmp_path / "run.cxi"), data.frames(4, 9))
    veto = Veto.load(tiny, batch_size=1, backend="keras")
    got: list = []
    finished = threading.Event()

    def consume():
        with FrameStore() as store:
            for ref, decision in veto.stream_events(iter_events([str(tmp_path / "run.cxi")], store), store):
                got.append(decision)
                if len(got) <= 2:
                    time.sleep(1.5)  # meanwhile the reader fills the queue and waits to put its end marker
        finished.set()

    threading.Thread(target=consume, daemon=True).start()
    assert finished.wait(20.0), f"stream_events never ended ({len(got)} decisions seen)"
    assert len(got) == 4 and not any(d.error for d in got)


# ---------------------------------------------------------------------------
# 2. TensorFlow runs with the threads asked for (a child process: TensorFlow fixes them once).

_THREADS_CHILD = r"""
import json, sys, warnings
from sfx_cnn_veto.core.pipeline import Veto
from sfx_cnn_veto.core.tf import import_tensorflow
veto = Veto.load(sys.argv[1], backend="keras", threads=int(sys.argv[2]))
veto.score(__import__("numpy").zeros((2, 72, 72), "float32"))
import tensorflow as tf
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import_tensorflow(int(sys.argv[2]) + 2)   # too late: must warn, not pass silently
    import_tensorflow(int(sys.argv[2]) + 2)   # (once)
print(json.dumps({"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                  "inter": tf.config.threading.get_inter_op_parallelism_threads(),
                  "warnings": [str(w.message) for w in caught]}))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return data.make_model(str(d), data.frames(8, 1))


@pytest.mark.parametrize("threads", [1, 3])
def test_tensorflow_runs_with_the_threads_asked_for(tiny, threads):
    env = data.env()
    for name in ("SFX_CNN_VETO_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env.pop(name, None)  # the explicit request must win on its own
    out = subprocess.run([sys.executable, "-c", _THREADS_CHILD, tiny, str(threads)], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["intra"] == threads
    assert report["inter"] == min(2, threads)
    assert len(report["warnings"]) == 1
    have = "1 thread;" if threads == 1 else f"{threads} threads;"
    assert f"already runs in this process with {have} {threads + 2} threads asked for" in report["warnings"][0]


# ---------------------------------------------------------------------------
# 3a. ``auto`` resolves by a fixed rule, not by a timing race.

def test_auto_takes_numba_even_when_it_times_slower(monkeypatch):
    from sfx_cnn_veto.core import fused
    from sfx_cnn_veto.core.architectures import build_paper_model
    from sfx_cnn_veto.core.backends import create_classifier

    model = build_paper_model((data.CROP, data.CROP, 1), seed=3)
    slow = fused.FusedClassifier.predict

    def predict(self, batch):
        time.sleep(0.2)  # far slower than keras: a timed choice would pick keras
        return slow(self, batch)

    monkeypatch.setattr(fused.FusedClassifier, "predict", predict)
    name, classifier = create_classifier(model, "auto", {"hit_index": 1})
    assert name == "numba"
    assert isinstance(classifier, fused.FusedClassifier)


# ---------------------------------------------------------------------------
# 3b. The journal refuses a resume whose scores would come from other settings.

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("fingerprint")
    frames = data.frames(12, 4)
    data.write_cxi(str(d / "run.cxi"), frames)
    (d / "in.lst").write_text("".join(f"run.cxi //{i}\n" for i in range(12)))
    model = data.make_model(str(d), frames)
    np.save(d / "mask_a.npy", np.ones((data.FRAME, data.FRAME), bool))
    mask_b = np.ones((data.FRAME, data.FRAME), bool)
    mask_b[:4] = False
    np.save(d / "mask_b.npy", mask_b)
    return {"dir": d, "model": model}


def _filter(world, out, *extra):
    return data.in_dir(world["dir"], ["filter-lst", "in.lst", "-m", world["model"], "-o", out / "hits.lst",
                                      "--batch-size", "4", *extra])


def _interrupted_journal(world, out, monkeypatch, *extra):
    """A finished run whose journal is kept, as an interrupted run's would be."""
    from sfx_cnn_veto_crystfel import journal

    with monkeypatch.context() as m:
        m.setattr(journal.Journal, "remove", lambda self: None)
        assert _filter(world, out, *extra) == 0
    meta = json.loads((out / "hits.lst.journal" / "meta.json").read_text())
    return meta


def test_journal_records_the_resolved_backend_and_file_contents(world, tmp_path, monkeypatch):
    config = tmp_path / "veto.yaml"
    config.write_text("crop:\n  center: [36, 36]\n")
    meta = _interrupted_journal(world, tmp_path, monkeypatch, "--config", str(config),
                                "--mask", str(world["dir"] / "mask_a.npy"))
    assert meta["backend"] in ("numba", "keras")  # resolved, never "auto"
    from sfx_cnn_veto.io.files import file_sha256

    assert meta["config"]["sha256"] == file_sha256(str(config))
    assert meta["mask"]["sha256"] == file_sha256(str(world["dir"] / "mask_a.npy"))
    assert meta["file_masks"] is True
    assert meta["geometry"] is None


@pytest.mark.parametrize("change", ["config contents", "mask contents", "no file mask", "backend"])
def test_resume_refuses_changed_settings(world, tmp_path, monkeypatch, capsys, change):
    config = tmp_path / "veto.yaml"
    config.write_text("crop:\n  center: [36, 36]\n")
    mask = tmp_path / "mask.npy"
    mask.write_bytes((world["dir"] / "mask_a.npy").read_bytes())
    args = ["--config", str(config), "--mask", str(mask)]
    first = _interrupted_journal(world, tmp_path, monkeypatch, *args)
    if change == "config contents":
        config.write_text("crop:\n  center: [35, 37]\n")  # same path, other crop: other scores
    elif change == "mask contents":
        mask.write_bytes((world["dir"] / "mask_b.npy").read_bytes())
    elif change == "no file mask":
        args.append("--no-file-mask")
    else:
        args += ["--backend", "keras" if first["backend"] == "numba" else "numba"]
    capsys.readouterr()
    assert _filter(world, tmp_path, "--resume", *args) == 1
    err = capsys.readouterr().err
    assert "cannot resume" in err
    key = {"config contents": "config:", "mask contents": "mask:", "no file mask": "file_masks:",
           "backend": "backend:"}[change]
    assert key in err


def test_resume_with_the_same_settings_replays(world, tmp_path, monkeypatch, capsys):
    config = tmp_path / "veto.yaml"
    config.write_text("crop:\n  center: [36, 36]\n")
    _interrupted_journal(world, tmp_path, monkeypatch, "--config", str(config))
    capsys.readouterr()
    assert _filter(world, tmp_path, "--resume", "--config", str(config)) == 0
    assert "replayed from the journal" in capsys.readouterr().err


def test_fingerprint_hashes_the_geometry_file(tmp_path):
    from sfx_cnn_veto_crystfel.filter_lst import _fingerprint

    model = tmp_path / "m.keras"
    model.write_bytes(b"model")
    geom = tmp_path / "det.geom"
    geom.write_text("clen = 0.1\n")
    args = argparse.Namespace(inputs=["in.lst"], prefix="", dataset=None, batch_size=4, center=None,
                              config=None, mask=None, no_file_mask=False, geometry=str(geom),
                              audit_fraction=0.0, audit_geometry=None)
    one = _fingerprint(args, str(model), "keras")
    geom.write_text("clen = 0.2\n")
    two = _fingerprint(args, str(model), "keras")
    assert one["geometry"]["path"] == two["geometry"]["path"] == str(geom)
    assert one["geometry"]["sha256"] != two["geometry"]["sha256"]


# ---------------------------------------------------------------------------
# MPI: every rank hears rank 0's set-up verdict, whatever went wrong there.

class _RecordingComm:
    """A fake two-rank communicator (not MPI: mpi4py's point-to-point calls, recorded)."""

    def __init__(self):
        self.sent = []

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def isend(self, obj, dest, tag):
        self.sent.append((dest, tag, obj))
        return _Done()


class _Done:
    def test(self):
        return True, None


def test_rank_0_tells_the_others_of_an_unexpected_set_up_failure(world, tmp_path, monkeypatch):
    from sfx_cnn_veto_crystfel import filter_lst

    comm = _RecordingComm()
    monkeypatch.setattr(filter_lst, "world", lambda mode: comm)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the set-up")

    monkeypatch.setattr(filter_lst, "_fingerprint", broken)
    cwd = os.getcwd()
    os.chdir(world["dir"])
    try:
        parser = argparse.ArgumentParser()
        filter_lst.configure(parser)
        args = parser.parse_args(["in.lst", "-m", world["model"], "-o", str(tmp_path / "hits.lst"),
                                  "--batch-size", "4", "--threads", "1"])
        with pytest.raises(RuntimeError, match="a bug in the set-up"):
            filter_lst.run(args)
    finally:
        os.chdir(cwd)
    assert len(comm.sent) == 1  # the verdict went to rank 1 before rank 0 raised
    dest, _tag, (error, _session, _backend) = comm.sent[0]
    assert dest == 1 and "a bug in the set-up" in error
