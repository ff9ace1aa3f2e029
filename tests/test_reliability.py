"""Reliability (issue 9): what test_faults.py and the CrystFEL tests do not already cover.

* ``filter-lst`` through the whole fault matrix (bad files, growing files, odd frames inside CXI
  files, non-UTF-8 list bytes): in = hits + misses + errors, a one-line reason naming the file and
  event, no traceback, exit code 2;
* exit codes of ``filter-lst``, ``score`` and ``tag-stream`` (0 / 1 / 2 / 3, as ``sfx_cnn_veto.cli`` says);
* model files a colleague might hand over: corrupt, no metadata, Lambda, another crop size;
* the Python API's ``Veto.stream_events`` over the same faults;
* numerical safety: non-finite network outputs are errors (fail open) on every backend, never misses;
* load: 50,000 events through ``filter-lst`` and ``score`` with flat peak memory (figures printed).

Frames here are 72x72 with a 64x64 crop (as in the CrystFEL tests) so every run is cheap.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import _crystfel_data as data
from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS, EXIT_INTERNAL, EXIT_OK, EXIT_USER_ERROR, main

CROP = data.CROP


def exit_code(argv):
    """``main(argv)``, or the code argparse exits with (it raises SystemExit on bad arguments)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def cli(cwd, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "sfx_cnn_veto.cli", *args], cwd=cwd, env=data.env(),
                          capture_output=True, timeout=timeout)


def tiny_model(path, *, fill=None, scale=None, normalize="standardize", first="conv", crop=CROP,
               threshold=0.5):
    """A small Keras network with sfx-cnn-veto metadata.

    ``first="conv"``: Conv2D(2, 3, relu) -> GlobalMaxPooling -> Dense(2, softmax);
    ``first="pool"``: GlobalMaxPooling -> Dense(2, softmax) (nearly free: for the load test).
    ``fill`` sets every weight to one value (NaN: a broken model), ``scale`` multiplies them.
    """
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    inputs = keras.Input((crop, crop, 1))
    x = inputs
    if first == "conv":
        x = keras.layers.Conv2D(2, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    weights = [np.random.default_rng(3).normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    if fill is not None:
        weights = [np.full_like(w, fill) for w in weights]
    if scale is not None:
        weights = [w * scale for w in weights]
    model.set_weights(weights)
    meta = ModelMetadata(architecture="tiny-test", input_shape=(crop, crop, 1), crop_shape=(crop, crop),
                         normalize=normalize, threshold=threshold)
    return VetoModel(model, meta).save(path)


# ---------------------------------------------------------------------------
# filter-lst through the fault matrix

ODD_FRAMES = {  # frames inside a CXI file that must still get a finite score
    "zero": np.zeros((data.FRAME, data.FRAME), np.float32),
    "saturated": np.full((data.FRAME, data.FRAME), 65535, np.uint16),
    "negative": -np.abs(np.random.default_rng(1).normal(50, 5, (data.FRAME, data.FRAME))).astype(np.float32),
    "uint16": np.random.default_rng(2).poisson(10, (data.FRAME, data.FRAME)).astype(np.uint16),
    "int32": np.random.default_rng(3).poisson(10, (data.FRAME, data.FRAME)).astype(np.int32),
    "float64": np.random.default_rng(4).normal(10, 2, (data.FRAME, data.FRAME)),
    "partnan": np.where(np.arange(data.FRAME ** 2).reshape(data.FRAME, data.FRAME) % 5 == 0, np.nan,
                        3.0).astype(np.float32),
    "partinf": np.where(np.arange(data.FRAME ** 2).reshape(data.FRAME, data.FRAME) % 9 == 0, np.inf,
                        3.0).astype(np.float32),
}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """A list that hits every fault between good events, and the reason fragment each error must carry."""
    d = tmp_path_factory.mktemp("matrix")
    good = data.frames(4, 21)
    data.write_cxi(str(d / "good.cxi"), good)
    full = data.write_cxi(str(d / "truncated.cxi"), data.frames(4, 22))
    with open(full, "r+b") as handle:
        handle.truncate(os.path.getsize(full) // 2)
    (d / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(3000))
    (d / "garbage.cbf").write_bytes(b"###CBF: not really\n" + os.urandom(500))
    with h5py.File(d / "nodata.h5", "w") as f:
        f["/entry_1/other"] = np.zeros(3)
    with h5py.File(d / "rank4.h5", "w") as f:
        f["/entry_1/data_1/data"] = np.zeros((2, 2, 40, 40), np.float32)
    with h5py.File(d / "small.cxi", "w") as f:
        f["/entry_1/data_1/data"] = np.zeros((2, 32, 32), np.float32)
    # a run still being written: 3 frames so far in a resizable data set, the list already names 5
    with h5py.File(d / "growing.cxi", "w") as f:
        f.create_dataset("/entry_1/data_1/data", data=data.frames(3, 23), maxshape=(None, data.FRAME, data.FRAME),
                         chunks=(1, data.FRAME, data.FRAME))
    with h5py.File(d / "empty.cxi", "w") as f:  # created, nothing written yet
        f.create_dataset("/entry_1/data_1/data", shape=(0, data.FRAME, data.FRAME), dtype="f4",
                         maxshape=(None, data.FRAME, data.FRAME), chunks=(1, data.FRAME, data.FRAME))
    (d / "zero.cxi").write_bytes(b"")
    (d / "adir").mkdir()
    with h5py.File(d / "complex.cxi", "w") as f:
        f["/entry_1/data_1/data"] = np.zeros((2, data.FRAME, data.FRAME), np.complex64)
    # odd frames (one data set per dtype: HDF5 stacks have one dtype)
    for name, frame in ODD_FRAMES.items():
        data.write_cxi(str(d / f"odd_{name}.cxi"), np.stack([frame, frame]))
    nan = data.frames(3, 24)
    nan[1] = np.nan
    data.write_cxi(str(d / "nan.cxi"), nan)
    entries = [  # (list line as bytes, canonical line in the outputs, reason fragment or None)
        (b"good.cxi //0", "good.cxi //0", None),
        (b"missing.cxi //0", "missing.cxi //0", "file not found"),
        (b"truncated.cxi //1", "truncated.cxi //1", "truncated.cxi"),
        (b"corrupt.h5 //0", "corrupt.h5 //0", "HDF5"),
        (b"garbage.cbf", "garbage.cbf", "garbage.cbf"),
        (b"nodata.h5 //0", "nodata.h5 //0", "no data set"),
        (b"rank4.h5 //0", "rank4.h5 //0", "3-D per event"),  # (panels, ss, fs) frames need a geometry
        (b"good.cxi //9", "good.cxi //9", "out of range"),
        (b"small.cxi //1", "small.cxi //1", "does not fit"),
        (b"growing.cxi //2", "growing.cxi //2", None),
        (b"growing.cxi //3", "growing.cxi //3", "out of range"),
        (b"growing.cxi //4", "growing.cxi //4", "out of range"),
        (b"nan.cxi //0", "nan.cxi //0", None),
        (b"nan.cxi //1", "nan.cxi //1", "NaN or infinite"),
        (b"nan.cxi //2", "nan.cxi //2", None),
        (b"caf\xe9.cxi //0", "caf\udce9.cxi //0", "file not found"),  # non-UTF-8 bytes: passed through
        (b"good.cxi //1\r", "good.cxi //1", None),                    # CRLF
        (b"good.cxi\t//2", "good.cxi\t//2", "tab"),
        (b"empty.cxi", "empty.cxi", "the file holds no frames"),  # a bare name expands to nothing: one row
        (b"zero.cxi //0", "zero.cxi //0", "not a readable HDF5 file"),
        (b"adir //0", "adir //0", "Is a directory"),
        (b"complex.cxi //1", "complex.cxi //1", "expected a numeric frame"),
        (b"good.cxi //-1", "good.cxi //-1", "expected '//N'"),
        (b"good.cxi //3", "good.cxi //3", None),
    ] + [(f"odd_{n}.cxi //1".encode(), f"odd_{n}.cxi //1", None) for n in ODD_FRAMES]
    (d / "faults.lst").write_bytes(b"".join(line + b"\n" for line, _, _ in entries))
    model = data.make_model(str(d), good)
    return {"dir": d, "entries": entries, "model": model}


def read_scores(path):
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        return list(csv.DictReader(handle))


def row_line(row):
    return row["file"] + (" " + row["event"] if row["event"] else "")


@pytest.fixture(scope="module")
def matrix_run(matrix):
    d = matrix["dir"]
    result = cli(d, "filter-lst", "faults.lst", "-m", matrix["model"], "-o", "hits.lst", "--misses", "misses.lst",
                 "--errors", "errors.lst", "--scores", "scores.csv", "--batch-size", "4")
    return result, read_scores(d / "scores.csv")


def test_filter_lst_accounts_for_every_faulty_event(matrix, matrix_run):
    result, rows = matrix_run
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == EXIT_EVENT_ERRORS, stderr
    assert "Traceback" not in stderr
    entries = matrix["entries"]
    # in = hits + misses + errors, in input order, once each
    assert [row_line(r) for r in rows] == [canon for _, canon, _ in entries]
    d = matrix["dir"]
    hits = (d / "hits.lst").read_bytes().splitlines()
    misses = (d / "misses.lst").read_bytes().splitlines()
    errors = (d / "errors.lst").read_bytes().splitlines()
    assert len(hits) + len(misses) == len(entries)  # errors are in hits.lst too (fail open)
    assert len(errors) == sum(1 for *_, reason in entries if reason)
    for (raw, canon, reason), row in zip(entries, rows):
        if reason is None:
            assert row["decision"] in ("hit", "miss") and 0.0 <= float(row["score"]) <= 1.0, (canon, row)
        else:
            assert row["decision"] == "error" and row["is_hit"] == "1" and row["score"] == "", (canon, row)
            assert reason in row["error"] and "\n" not in row["error"], (canon, row["error"])
            assert raw.rstrip(b"\r") in errors and raw.rstrip(b"\r") in hits
            # one stderr line per failed event, naming the file and the event
            # (Python writes undecodable bytes to stderr as backslash escapes)
            shown = canon.encode("utf-8", "backslashreplace").decode()
            assert any(shown in line for line in stderr.splitlines()), (shown, stderr)


def test_filter_lst_scores_odd_but_valid_frames(matrix_run):
    _result, rows = matrix_run
    odd = {r["file"]: r for r in rows if r["file"].startswith("odd_")}
    assert len(odd) == len(ODD_FRAMES)
    assert all(r["error"] == "" and r["score"] != "" for r in odd.values()), odd


def test_filter_lst_reads_frames_appended_after_it_opened_the_file(matrix, tmp_path):
    """An HDF5 writer appends frames (SWMR) to a file filter-lst already has open: it reads them all.

    The list comes on standard input: events 0-1 first; once the journal shows
    both scored (the file is open in the reader), frames 2-5 are appended and
    only then listed, so the reader must see frames added after its open.
    """
    import time

    d = tmp_path
    path = d / "live.cxi"
    with h5py.File(path, "w", libver="latest") as f:
        dset = f.create_dataset("/entry_1/data_1/data", data=data.frames(2, 30),
                                maxshape=(None, data.FRAME, data.FRAME), chunks=(1, data.FRAME, data.FRAME))
        f.swmr_mode = True
        proc = subprocess.Popen([sys.executable, "-m", "sfx_cnn_veto.cli", "filter-lst", "-", "-m",
                                 matrix["model"], "-o", "hits.lst", "--scores", "scores.csv", "--batch-size", "1"],
                                cwd=d, env=data.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            proc.stdin.write(b"live.cxi //0\nlive.cxi //1\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 240
            while data.journal_blocks(d / "hits.lst.journal") < 2:
                assert proc.poll() is None and time.monotonic() < deadline, "filter-lst never scored events 0-1"
                time.sleep(0.05)
            for i in range(2, 6):  # appended while the reader holds the file open
                dset.resize(i + 1, axis=0)
                dset[i] = data.frames(1, 31 + i)[0]
                dset.flush()
            rest = b"".join(f"live.cxi //{i}\n".encode() for i in range(2, 6))
            out, err = proc.communicate(input=rest, timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = err.decode()
    assert proc.returncode == EXIT_OK, err
    rows = read_scores(d / "scores.csv")
    assert [row_line(r) for r in rows] == [f"live.cxi //{i}" for i in range(6)]
    assert all(r["error"] == "" and r["score"] != "" for r in rows), rows


# ---------------------------------------------------------------------------
# Model files a colleague might hand over, through filter-lst

@pytest.fixture(scope="module")
def bad_models(matrix, tmp_path_factory):
    import zipfile

    from sfx_cnn_veto.core.model import METADATA_NAME

    d = tmp_path_factory.mktemp("bad_models")
    (d / "junk.keras").write_bytes(b"not a zip at all")
    good = open(matrix["model"], "rb").read()
    (d / "cut.keras").write_bytes(good[: len(good) // 3])
    with zipfile.ZipFile(matrix["model"]) as src, zipfile.ZipFile(d / "bare.keras", "w") as dst:
        for item in src.infolist():
            if item.filename != METADATA_NAME:
                dst.writestr(item, src.read(item.filename))
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    marker = d / "lambda-ran"
    text = str(marker)
    inputs = keras.Input((CROP, CROP, 1))
    x = keras.layers.Lambda(lambda t: (open(text, "w").close(), t)[1])(inputs)
    x = keras.layers.GlobalMaxPooling2D()(x)
    evil = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    VetoModel(evil, ModelMetadata(architecture="evil", input_shape=(CROP, CROP, 1),
                                  crop_shape=(CROP, CROP))).save(d / "lambda.keras")
    marker.unlink()
    return d, marker


@pytest.mark.parametrize("name,fragment", [
    ("junk.keras", "not a zip"), ("cut.keras", "cut.keras"), ("bare.keras", "without sfx-cnn-veto metadata"),
    ("lambda.keras", "Lambda"), ("absent.keras", "model file not found"),
])
def test_filter_lst_refuses_bad_model_files_in_one_line(matrix, bad_models, name, fragment, tmp_path):
    d, marker = bad_models
    (tmp_path / "hits.lst").write_text("old\n")
    result = cli(matrix["dir"], "filter-lst", "faults.lst", "-m", str(d / name), "-o", str(tmp_path / "hits.lst"),
                 "--scores", str(tmp_path / "s.csv"))
    err = result.stderr.decode()
    assert result.returncode == EXIT_USER_ERROR, err
    assert "Traceback" not in err and fragment in err
    assert len([l for l in err.splitlines() if "error" in l]) == 1, err
    assert (tmp_path / "hits.lst").read_text() == "old\n" and not (tmp_path / "s.csv").exists()
    assert not os.path.exists(str(tmp_path / "hits.lst") + ".journal")
    assert not marker.exists()  # the Lambda never ran


def test_model_for_a_bigger_crop_than_every_frame_is_a_one_line_setup_error(matrix, tmp_path, capsys):
    """A colleague's 350x350 model on 72x72 frames: no frame fits, a set-up mistake: one line, rc 1 (issue 16)."""
    model = tiny_model(tmp_path / "big.keras", crop=350, first="pool")
    lst = tmp_path / "in.lst"
    lst.write_text("".join(f"{matrix['dir'] / 'good.cxi'} //{i}\n" for i in range(4)))
    capsys.readouterr()
    code = main(["filter-lst", str(lst), "-m", model, "-o", str(tmp_path / "hits.lst"),
                 "--scores", str(tmp_path / "s.csv")])  # in process (main prints no traceback without -v)
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit this model's 350x350 crop" in err[0] and "all 4" in err[0], err
    assert not (tmp_path / "hits.lst").exists() and not (tmp_path / "hits.lst.journal").exists()


# ---------------------------------------------------------------------------
# Exit codes (sfx_cnn_veto/cli.py): 0 ok, 1 user error (one line), 2 events errored, 3 internal error

def test_exit_codes_of_filter_lst(matrix, tmp_path, capsys, monkeypatch):
    d = matrix["dir"]
    ok = tmp_path / "ok.lst"
    ok.write_text("".join(f"{d / 'good.cxi'} //{i}\n" for i in range(4)))
    out = str(tmp_path / "hits.lst")
    assert main(["filter-lst", str(ok), "-m", matrix["model"], "-o", out, "--threshold", "0"]) == EXIT_OK
    assert len(open(out).read().splitlines()) == 4
    user_errors = [
        ["filter-lst", str(tmp_path / "none.lst"), "-m", matrix["model"], "-o", out],
        ["filter-lst", str(ok), "-m", matrix["model"], "-o", out, "--threshold", "1.5"],
        ["filter-lst", str(ok), "-m", matrix["model"], "-o", out, "--keep-misses-fraction", "2"],
        ["filter-lst", str(ok), "-m", matrix["model"], "-o", out, "--scores", out],
        ["filter-lst", str(ok), "-m", matrix["model"], "-o", str(ok)],
        ["filter-lst", str(ok), "-m", matrix["model"], "-o", out, "--backend", "nope"],
        ["filter-lst", str(ok), "-m", matrix["model"]],  # no -o
    ]
    capsys.readouterr()
    for argv in user_errors:
        assert exit_code(argv) == EXIT_USER_ERROR, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and "error" in err, (argv, err)
    # an unexpected failure inside the run: exit 3, one line, the journal kept for --resume
    import sfx_cnn_veto.core.pipeline as pipeline

    def explode(self, *args, **kwargs):
        raise RuntimeError("a bug")
        yield  # pragma: no cover

    monkeypatch.setattr(pipeline.Veto, "stream_events", explode)
    assert main(["filter-lst", str(ok), "-m", matrix["model"], "-o", str(tmp_path / "h3.lst")]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: a bug" in err and "Traceback" not in err
    assert not (tmp_path / "h3.lst").exists()
    assert not os.path.exists(str(tmp_path / "h3.lst") + ".journal")  # nothing was done: no journal left


def test_exit_codes_of_score(matrix, tmp_path, capsys, monkeypatch):
    d = matrix["dir"]
    ok = tmp_path / "ok.lst"
    ok.write_text("".join(f"{d / 'good.cxi'} //{i}\n" for i in range(4)))
    assert main(["score", str(ok), "-m", matrix["model"], "-o", str(tmp_path / "s.csv")]) == EXIT_OK
    bad = tmp_path / "bad.lst"
    bad.write_text(f"{d / 'good.cxi'} //0\n{d / 'missing.cxi'} //0\n")
    assert main(["score", str(bad), "-m", matrix["model"], "-o", str(tmp_path / "s.csv")]) == EXIT_EVENT_ERRORS
    capsys.readouterr()
    assert main(["score", str(ok), "-m", str(tmp_path / "absent.keras")]) == EXIT_USER_ERROR
    assert main(["score", str(ok), "-m", matrix["model"], "--threshold", "-1"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2, err

    import sfx_cnn_veto.core.pipeline as pipeline

    def explode(self, *args, **kwargs):
        raise RuntimeError("a bug")
        yield  # pragma: no cover

    monkeypatch.setattr(pipeline.Veto, "stream_events", explode)
    assert main(["score", str(ok), "-m", matrix["model"], "-o", str(tmp_path / "s3.csv")]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# The Python API: Veto.stream_events over the fault matrix

def test_stream_events_accounts_for_every_faulty_event(matrix):
    from sfx_cnn_veto import Veto
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    veto = Veto.load(matrix["model"], batch_size=4)
    d = matrix["dir"]
    cwd = os.getcwd()
    os.chdir(d)
    try:
        with FrameStore() as store:
            out = list(veto.stream_events(iter_events(["faults.lst"], store), store))
    finally:
        os.chdir(cwd)
    entries = matrix["entries"]
    assert len(out) == len(entries)
    for (ref, decision), (_raw, canon, reason) in zip(out, entries):
        if reason in (None, "tab"):  # the API reads "good.cxi\t//2" as indexamajig would not; filter-lst says so
            if reason is None:
                assert decision.ok and 0.0 <= decision.score <= 1.0, (canon, decision)
            continue
        assert decision.error and decision.is_hit and np.isnan(decision.score), (canon, decision)
        assert "\n" not in decision.error


# ---------------------------------------------------------------------------
# Numerical safety: a non-finite network output is an error (fail open), never a miss

@pytest.fixture(scope="module")
def numeric_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("numeric")
    return {
        "nan": tiny_model(d / "nan.keras", fill=np.nan),
        "inf": tiny_model(d / "inf.keras", fill=np.inf),
        # finite weights, but frames of huge values overflow float32 (normalize "none" passes them through)
        "overflow": tiny_model(d / "overflow.keras", normalize="none", fill=1.0, scale=10.0, threshold=0.0),
    }


def _frames():
    frames = np.random.default_rng(0).normal(5, 1, (4, data.FRAME, data.FRAME)).astype(np.float32)
    frames[2] = 3e38
    return frames


@pytest.mark.parametrize("backend", ["keras", "numba", "auto"])
def test_nan_weights_never_give_a_miss(numeric_models, backend):
    """NaN/Inf weights: every frame is an error kept as a hit; the numba backend refuses such a network
    at load with a clear reason (its fast-math kernels do not carry NaN reliably), and ``auto`` then
    runs it on keras."""
    pytest.importorskip("numba") if backend == "numba" else None
    from sfx_cnn_veto import Veto
    from sfx_cnn_veto.errors import ConfigError

    for kind in ("nan", "inf"):
        if backend == "numba":
            with pytest.raises(ConfigError, match="NaN or infinite .*numba backend refuses it"):
                Veto.load(numeric_models[kind], backend="numba")
            continue
        veto = Veto.load(numeric_models[kind], backend=backend)
        assert veto.backend_name == "keras"
        decisions = veto.decide(_frames())
        assert all(d.error and "non-finite" in d.error and d.is_hit and np.isnan(d.score) for d in decisions)


@pytest.mark.parametrize("backend", ["keras", "numba", "auto"])
def test_overflowing_output_is_an_error_on_every_backend(numeric_models, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    from sfx_cnn_veto import Veto

    veto = Veto.load(numeric_models["overflow"], backend=backend)
    decisions = veto.decide(_frames())
    bad = decisions[2]
    assert bad.error and "non-finite" in bad.error and bad.is_hit and np.isnan(bad.score)
    assert all(d.ok and np.isfinite(d.score) for i, d in enumerate(decisions) if i != 2)


@pytest.mark.parametrize("backend", ["keras", "auto"])
def test_filter_lst_with_a_nan_model_keeps_every_event(matrix, numeric_models, tmp_path, backend):
    d = matrix["dir"]
    lst = tmp_path / "in.lst"
    lst.write_text("".join(f"{d / 'good.cxi'} //{i}\n" for i in range(4)))
    code = main(["filter-lst", str(lst), "-m", numeric_models["nan"], "-o", str(tmp_path / "hits.lst"),
                 "--misses", str(tmp_path / "misses.lst"), "--scores", str(tmp_path / "s.csv"), "--backend", backend])
    assert code == EXIT_EVENT_ERRORS
    rows = read_scores(tmp_path / "s.csv")
    assert len(rows) == 4 and all(r["decision"] == "error" and "non-finite" in r["error"] for r in rows)
    assert len((tmp_path / "hits.lst").read_text().splitlines()) == 4
    assert (tmp_path / "misses.lst").read_text() == ""


def test_filter_lst_refuses_a_nan_model_on_the_numba_backend(matrix, numeric_models, tmp_path, capsys):
    pytest.importorskip("numba")
    lst = tmp_path / "in.lst"
    lst.write_text(f"{matrix['dir'] / 'good.cxi'} //0\n")
    code = main(["filter-lst", str(lst), "-m", numeric_models["nan"], "-o", str(tmp_path / "hits.lst"),
                 "--backend", "numba"])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "NaN or infinite" in err and not (tmp_path / "hits.lst").exists()


# ---------------------------------------------------------------------------
# Load: 50,000 events through filter-lst and score, memory flat

LOAD_FILES, LOAD_FRAMES = 4, 250
#: Allowed growth of peak RSS from 5,000 to 50,000 events. Anything kept per event (a row, a line,
#: a decision) would cost at least ~100 bytes x 45,000 = 4.5 MB; measured growth is ~1 MB (noise).
RSS_MARGIN_MB = 4.0

#: Runs the CLI in a child; prints its peak RSS (ru_maxrss), the highest RSS sampled (every 5 ms) while
#: events stream (the reader thread of Veto.stream_events is alive: not masked by the model-loading peak)
#: and the RSS when the run returns.
_MEASURE = """
import resource, sys, threading, time

def rss_kb():
    with open('/proc/self/status') as f:
        return int([l for l in f if l.startswith('VmRSS')][0].split()[1])

streaming = [0]
done = threading.Event()

def sample():
    while not done.is_set():
        if any(t.name == 'sfx-cnn-veto-reader' for t in threading.enumerate()):
            streaming[0] = max(streaming[0], rss_kb())
        time.sleep(0.005)

threading.Thread(target=sample, daemon=True).start()
from sfx_cnn_veto.cli import main
code = main(sys.argv[1:])
done.set()
print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, streaming[0], rss_kb(), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def load_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("load")
    for k in range(LOAD_FILES):
        data.write_cxi(str(d / f"r{k}.cxi"), data.frames(LOAD_FRAMES, 40 + k))
    for n in (5_000, 50_000):
        with open(d / f"l{n}.lst", "w") as handle:
            for j in range(n):
                handle.write(f"r{j % LOAD_FILES}.cxi //{(j // LOAD_FILES) % LOAD_FRAMES}\n")
    model = tiny_model(d / "cheap.keras", first="pool", threshold=0.5)
    return d, model


def _rss_mb(cwd, *argv) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """``(peak RSS, peak RSS while streaming, RSS at the end, result)`` of ``sfx-cnn-veto *argv`` in a child."""
    result = subprocess.run([sys.executable, "-c", _MEASURE, *argv], cwd=cwd, env=data.env(),
                            capture_output=True, text=True, timeout=600)
    line = [l for l in result.stderr.splitlines() if l.startswith("PEAK_RSS_KB")]
    assert line, result.stderr[-3000:]
    _, peak, streaming, end = line[0].split()
    assert int(streaming) > 0, "no RSS sample was taken while events streamed"
    return int(peak) / 1024.0, int(streaming) / 1024.0, int(end) / 1024.0, result


@pytest.mark.parametrize("command", ["filter-lst", "score"])
def test_50k_events_stream_with_flat_memory(load_world, command):
    d, model = load_world
    peaks, streams, ends = {}, {}, {}
    for n in (5_000, 50_000):
        out = d / f"{command}-{n}"
        out.mkdir()
        if command == "filter-lst":
            argv = ["filter-lst", f"l{n}.lst", "-m", model, "-o", str(out / "hits.lst"),
                    "--misses", str(out / "misses.lst"), "--scores", str(out / "scores.csv"), "--batch-size", "64"]
        else:
            argv = ["score", f"l{n}.lst", "-m", model, "-o", str(out / "scores.csv"), "--batch-size", "64"]
        peaks[n], streams[n], ends[n], result = _rss_mb(d, *argv)
        assert result.returncode == EXIT_OK, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        with open(out / "scores.csv") as handle:
            rows = sum(1 for _ in handle) - 1
        assert rows == n  # every event is in the outputs
        if command == "filter-lst":
            listed = sum(1 for _ in open(out / "hits.lst")) + sum(1 for _ in open(out / "misses.lst"))
            assert listed == n
    for what, mb in (("peak RSS", peaks), ("peak RSS while streaming", streams), ("RSS at the end", ends)):
        print(f"\n[load] {command}: {what} {mb[5_000]:.1f} MB at 5,000 events, {mb[50_000]:.1f} MB at 50,000 "
              f"(growth {mb[50_000] - mb[5_000]:+.1f} MB)", end="")
        assert mb[50_000] <= mb[5_000] + RSS_MARGIN_MB, (what, mb)
    print()


# ---------------------------------------------------------------------------
# Crash safety at random points, the output-writing phase included
# (test_crystfel_filter_lst.py kills at three fixed journal points, never while the outputs are written)



@pytest.mark.slow
def test_sigkill_at_random_points_and_while_writing_outputs(load_world, tmp_path):
    import random
    import signal
    import time

    d, model = load_world
    names = ["hits.lst", "misses.lst", "errors.lst", "scores.csv"]

    def argv(out, *extra):
        return ["filter-lst", "l50000.lst", "-m", model, "-o", str(out / "hits.lst"), "--misses",
                str(out / "misses.lst"), "--errors", str(out / "errors.lst"), "--scores", str(out / "scores.csv"),
                "--batch-size", "64", "--keep-misses-fraction", "0.2", *extra]

    ref = tmp_path / "ref"
    ref.mkdir()
    result = cli(d, *argv(ref))
    assert result.returncode == EXIT_OK, result.stderr.decode()[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    journal = str(work / "hits.lst") + ".journal"
    n_blocks = (50_000 + 63) // 64
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    points = sorted(rng.randint(1, n_blocks - 1) for _ in range(3))
    print(f"\n[kill] seed {seed}: SIGKILL at journal blocks {points} of {n_blocks}, then while writing outputs")

    def never_half_written():
        for name in names:
            if (work / name).exists():  # an output is either absent or complete
                assert (work / name).read_bytes() == (ref / name).read_bytes(), name

    def start(i):
        return subprocess.Popen([sys.executable, "-m", "sfx_cnn_veto.cli", *argv(work, *(["--resume"] if i else []))],
                                cwd=d, env=data.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    for i, point in enumerate(points):
        proc = start(i)
        deadline = time.monotonic() + 120
        while data.journal_blocks(journal) < point and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, f"the run ended before block {point}: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        never_half_written()
    # a resumed run killed while it writes the outputs (.part files exist, nothing renamed yet)
    proc = start(1)
    parts = [str(work / n) + ".part" for n in names]
    deadline = time.monotonic() + 120
    while not any(os.path.exists(p) for p in parts) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    caught = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    never_half_written()
    if caught:
        assert not (work / "hits.lst").exists() or (work / "hits.lst").read_bytes() == (ref / "hits.lst").read_bytes()
    final = cli(d, *argv(work, "--resume"))
    assert final.returncode == EXIT_OK, final.stderr.decode()[-2000:]
    for name in names:
        assert (work / name).read_bytes() == (ref / name).read_bytes(), name
    assert not any(os.path.exists(p) for p in parts) and not os.path.exists(journal)
    print(f"[kill] killed while writing outputs: {caught}")
    assert caught, "the kill while writing the outputs came too late (the run had finished)"


# ---------------------------------------------------------------------------
# psana adapter: a detector read that raises, NaN, wrong rank, None: every event out once, failing open.
# StandinPsana2 is a stand-in (named so): only the attributes PsanaVeto reads (xtc_version, evt.timestamp,
# det.raw.calib(evt)); the real psana2 runs in test_psana_adapter.py.

class StandinPsana2:
    xtc_version = 2


def test_psana_adapter_fails_open_on_bad_reads(matrix):
    import types

    from sfx_cnn_veto import Veto
    from sfx_cnn_veto_psana import PsanaVeto

    good = data.frames(3, 50)
    nan = np.full((data.FRAME, data.FRAME), np.nan, np.float32)

    def calib(evt):
        kind = evt.kind
        if kind == "raises":
            raise OSError("xtc2 chunk unreadable")
        return {"good0": good[0], "good1": good[1], "good2": good[2], "nan": nan, "none": None,
                "rank3": np.zeros((2, 72, 72), np.float32), "small": np.zeros((10, 10), np.float32)}[kind]

    kinds = ["good0", "raises", "nan", "good1", "none", "rank3", "small", "good2"]
    events = [types.SimpleNamespace(timestamp=1000 + i, kind=k) for i, k in enumerate(kinds)]
    run = types.SimpleNamespace(events=lambda: iter(events))
    detector = types.SimpleNamespace(raw=types.SimpleNamespace(calib=calib))
    pv = PsanaVeto(Veto.load(matrix["model"], batch_size=3), detector=detector, source="calib", psana=StandinPsana2)
    out = list(pv.events(run))
    assert [evt.kind for evt, _ in out] == kinds  # every event once, in order
    reasons = {"raises": "xtc2 chunk unreadable", "nan": "NaN or infinite", "none": "returned None",
               "rank3": "no geometry", "small": "smaller than the 64x64 crop"}
    for evt, decision in out:
        if evt.kind.startswith("good"):
            assert decision.ok
        else:
            assert decision.is_hit and np.isnan(decision.score) and reasons[evt.kind] in decision.error, decision
    assert len(list(pv.hits(run))) == sum(d.is_hit for _, d in out)


def test_exit_codes_of_tag_stream(matrix, tmp_path, capsys):
    """0 on a clean (empty) stream; 1, one line, for a missing stream or model (2 on a cut stream:
    test_crystfel_tags.py::test_tag_stream_copies_a_cut_chunk_unchanged)."""
    empty = tmp_path / "empty.stream"
    empty.write_text("CrystFEL stream format 2.3\n")
    assert main(["tag-stream", str(empty), "-o", str(tmp_path / "o.stream"), "-m", matrix["model"]]) == EXIT_OK
    capsys.readouterr()
    assert main(["tag-stream", str(tmp_path / "none.stream"), "-o", str(tmp_path / "o2.stream"),
                 "-m", matrix["model"]]) == EXIT_USER_ERROR
    assert main(["tag-stream", str(empty), "-o", str(tmp_path / "o3.stream"), "-m",
                 str(tmp_path / "absent.keras")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err, err
    assert "stream not found" in err and "model file not found" in err
    assert not (tmp_path / "o2.stream").exists() and not (tmp_path / "o3.stream").exists()


# ---------------------------------------------------------------------------
# label and evaluate over the fault matrix: unreadable events kept, not dropped

#: events peakfinder8 can still count although the veto cannot score them (no crop needed)
_COUNTABLE = {"small.cxi //1"}


def test_label_keeps_every_faulty_event(matrix, tmp_path):
    pytest.importorskip("om", reason="the peakfinder8 labeler needs ondamonitor (OM)")
    d = matrix["dir"]
    out = tmp_path / "labels.csv"
    result = cli(d, "label", "faults.lst", "-o", str(out))
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == EXIT_EVENT_ERRORS, err
    assert "Traceback" not in err
    rows = read_scores(out)
    entries = matrix["entries"]
    assert len(rows) == len(entries)  # every event a row, in order
    for (_raw, canon, reason), row in zip(entries, rows):
        if reason != "tab":
            assert row["file"].endswith(canon.split(" //")[0]), (canon, row)
        if reason is None or canon in _COUNTABLE:
            assert row["num_peaks"] != "", (canon, row)
        elif reason != "tab":  # (label reads "good.cxi\t//2" as a file name: also no count)
            assert row["num_peaks"] == "" and row["label"] == "", (canon, row)  # no count, no label
            shown = canon.encode("utf-8", "backslashreplace").decode()
            assert any(shown in line and "no count" in line for line in err.splitlines()), shown
    # an all-NaN frame is not "0 peaks, a miss": it has no count
    nan = next(r for r in rows if r["file"].endswith("nan.cxi") and r["event"] == "//1")
    assert nan["num_peaks"] == "" and nan["label"] == ""
    # non-UTF-8 bytes of a file name pass through
    assert b"caf\xe9.cxi" in out.read_bytes()


def test_evaluate_counts_unreadable_events_as_predicted_hits(matrix, tmp_path):
    """Labelled events that cannot be scored stay in the evaluation, as predicted hits; exit 2."""
    from sfx_cnn_veto.training.labels import LabelRow, write_labels

    d = matrix["dir"]
    readable = [(str(d / "good.cxi"), f"//{i}") for i in range(4)]
    unreadable = [(str(d / "missing.cxi"), "//0"), (str(d / "nan.cxi"), "//1"), (str(d / "good.cxi"), "//9"),
                  (str(d / "corrupt.h5"), "//0"), (str(d / "caf\udce9.cxi"), "//0")]
    rows = [LabelRow(f, e, "r1", 5, i % 2) for i, (f, e) in enumerate(readable + unreadable)]
    write_labels(str(tmp_path / "labels.csv"), rows)
    result = cli(tmp_path, "evaluate", "-m", matrix["model"], "--labels", "labels.csv", "--report", "rep")
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == EXIT_EVENT_ERRORS, err
    assert "Traceback" not in err and "5 event(s) could not be scored" in err
    scored = read_scores(tmp_path / "rep" / "scores.csv")
    assert len(scored) == len(rows)
    for row, (f, e) in zip(scored, readable + unreadable):
        assert (row["file"], row["event"]) == (f, e)
        if (f, e) in unreadable:
            assert row["error"] and row["predicted"] == "1" and row["score"] == "", row
        else:
            assert not row["error"] and row["score"] != ""
    assert "missing.cxi" in (tmp_path / "rep" / "report.md").read_text()


# ---------------------------------------------------------------------------
# YAML with Python tags, wherever a command reads YAML: refused in one line (exit 1), never run
# (the --config file of score/filter-lst: test_config.py::test_python_tags_are_refused)

@pytest.mark.parametrize("argv", [["om-config", "{yaml}"], ["simulate", "{out}", "--config", "{yaml}"],
                                  ["score", "{lst}", "--config", "{yaml}"]])
def test_yaml_python_tags_are_refused_by_every_command(tmp_path, capsys, argv):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"om: !!python/object/apply:os.system ['touch {marker}']\n"
                    f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    (tmp_path / "in.lst").write_text("a.cxi //0\n")
    argv = [a.format(yaml=evil, out=tmp_path / "sim", lst=tmp_path / "in.lst") for a in argv]
    assert exit_code(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "YAML" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_outputs_that_cannot_be_written_are_user_errors(matrix, tmp_path, capsys):
    """Checked before any work where the directory is missing (exit 1, one line); a write that fails
    later (here /proc refuses new files) is exit 1 too, not an internal error, and leaves no .part file."""
    ok = tmp_path / "ok.lst"
    ok.write_text(f"{matrix['dir'] / 'good.cxi'} //0\n")
    nodir = str(tmp_path / "no" / "such" / "dir")
    runs = [
        ["score", str(ok), "-m", matrix["model"], "-o", nodir + "/s.csv"],
        ["score", str(ok), "-m", matrix["model"], "--sink", f"hits-lst:{nodir}/h.lst"],
        ["filter-lst", str(ok), "-m", matrix["model"], "-o", str(tmp_path / "a.lst"), "--scores", nodir + "/s.csv"],
        ["label", str(ok), "-o", nodir + "/l.csv"],
    ]
    if os.path.isdir("/proc/self"):
        runs += [["score", str(ok), "-m", matrix["model"], "-o", "/proc/sfxveto-test.csv"],
                 ["filter-lst", str(ok), "-m", matrix["model"], "-o", str(tmp_path / "b.lst"),
                  "--scores", "/proc/sfxveto-test.csv"]]
    capsys.readouterr()
    for argv in runs:
        assert exit_code(argv) == EXIT_USER_ERROR, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and "internal error" not in err, (argv, err)
        assert len([l for l in err.splitlines() if "error" in l]) == 1, (argv, err)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")], os.listdir(tmp_path)
    assert not os.path.exists(tmp_path / "a.lst.journal")
