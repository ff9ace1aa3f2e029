"""tag-stream (CrystFEL 2.3 streams, chunks out of list order), tag-cxi sidecars and in-place tags, convert."""

from __future__ import annotations

import hashlib
import os
import random
import shutil

import numpy as np
import pytest

import _crystfel_data as data
from sfx_cnn_veto.cli import main
from sfx_cnn_veto.io.stream import format_chunk, format_preamble, iter_chunks

from test_crystfel_formats import CRYSTAL, GEOM


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two CXI files, a list, a filter-lst run with scores, and a stream whose chunks are shuffled."""
    d = tmp_path_factory.mktemp("tags")
    a = data.frames(12, 21)
    data.write_cxi(str(d / "run_1.cxi"), a)
    data.write_cxi(str(d / "run 2.cxi"), data.frames(8, 22))
    model = data.make_model(str(d), a)
    events = [("run_1.cxi", f"//{i}") for i in range(12)] + [("run 2.cxi", f"//{i}") for i in range(0, 8, 2)]
    events.append(("gone.cxi", "//0"))
    (d / "in.lst").write_text("".join(f"{f} {e}\n" for f, e in events))
    cwd = os.getcwd()
    os.chdir(d)
    try:
        code = main(["filter-lst", "in.lst", "-m", model, "-o", "hits.lst", "--scores", "scores.csv"])
        assert code == 2
        rng = random.Random(5)
        order = list(range(len(events)))
        rng.shuffle(order)  # indexamajig -j 4 writes chunks out of list order
        text = format_preamble(GEOM) + "----- Begin unit cell -----\nlattice_type = tetragonal\n" \
            "----- End unit cell -----\n"
        for serial, i in enumerate(order, start=1):
            f, e = events[i]
            peaks = [(10.0 + k, 20.0 + k, 1.0 + k / 10, 100.0 * k, "p0") for k in range(i % 5)]
            text += format_chunk(f, e, serial, peaks=peaks, crystals=[CRYSTAL] if i % 3 == 0 else [],
                                 indexed_by="mosflm-latt-nolatt-nocell" if i % 3 == 0 else "none")
        (d / "in.stream").write_text(text)
    finally:
        os.chdir(cwd)
    scores = {(r["file"], r["event"]): r for r in data.read_csv(d / "scores.csv")}
    return {"dir": d, "model": model, "events": events, "scores": scores}


def test_tag_stream_adds_only_the_tag_lines(run, tmp_path):
    d = run["dir"]
    out = tmp_path / "out.stream"
    assert data.in_dir(d, ["tag-stream", "in.stream", "-o", str(out), "--scores", "scores.csv"]) == 2  # gone.cxi
    original = (d / "in.stream").read_bytes()
    tagged = out.read_bytes()
    stripped = b"".join(l for l in tagged.splitlines(keepends=True) if not l.startswith(b"cnn_hit"))
    assert stripped == original
    chunks = list(iter_chunks(out))
    assert len(chunks) == len(run["events"])
    for chunk in chunks:
        row = run["scores"][chunk.key]
        assert chunk.header["cnn_hit_score"] == (row["score"] or "nan")
        assert chunk.header["cnn_hit"] == row["is_hit"]
        lines = [l.rstrip("\n") for l in chunk.lines]
        at = lines.index(f"hit = {chunk.hit}")
        assert lines[at + 1] == f"cnn_hit_score = {row['score'] or 'nan'}"
        assert lines[at + 2] == f"cnn_hit = {row['is_hit']}"
    gone = [c for c in chunks if c.filename == "gone.cxi"][0]
    assert "file not found" in gone.header["cnn_hit_error"]


def test_tag_stream_scores_frames_and_splits(run, tmp_path):
    d = run["dir"]
    hits, misses, out = tmp_path / "hits.stream", tmp_path / "misses.stream", tmp_path / "all.stream"
    code = data.in_dir(d, ["tag-stream", "in.stream", "-o", str(out), "--hits", str(hits), "--misses", str(misses),
                      "-m", run["model"]])
    assert code == 2
    preamble = (d / "in.stream").read_text().split("----- Begin chunk -----")[0]
    for part in (hits, misses):
        assert part.read_text().startswith(preamble)
    tagged = {c.key: c for c in iter_chunks(out)}
    for key, chunk in tagged.items():
        row = run["scores"][key]
        if row["score"]:
            assert abs(float(chunk.header["cnn_hit_score"]) - float(row["score"])) < 1e-5
    hit_keys = [c.key for c in iter_chunks(hits)]
    miss_keys = [c.key for c in iter_chunks(misses)]
    assert sorted(hit_keys + miss_keys, key=str) == sorted(tagged, key=str)
    assert all(tagged[k].header["cnn_hit"] == "1" for k in hit_keys)
    assert all(tagged[k].header["cnn_hit"] == "0" for k in miss_keys)
    assert ("gone.cxi", "//0") in hit_keys  # fail open
    # split parts keep the stream order
    order = [c.key for c in iter_chunks(d / "in.stream")]
    assert hit_keys == [k for k in order if k in set(hit_keys)]


def test_tag_stream_copies_a_cut_chunk_unchanged(run, tmp_path):
    text = (run["dir"] / "in.stream").read_text()
    cut = text[: text.rindex("End of peak list")]
    (tmp_path / "cut.stream").write_text(cut)
    out = tmp_path / "out.stream"
    assert main(["tag-stream", str(tmp_path / "cut.stream"), "-o", str(out),
                 "--scores", str(run["dir"] / "scores.csv")]) == 2
    tagged = out.read_text()
    last = cut[cut.rindex("----- Begin chunk -----"):]
    assert tagged.endswith(last)
    assert "".join(l for l in tagged.splitlines(keepends=True) if not l.startswith("cnn_hit")) == cut


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_sidecars_mirror_cxi(run, tmp_path):
    import h5py

    d = run["dir"]
    before = _sha(d / "run_1.cxi")
    assert data.in_dir(d, ["tag-cxi", "in.lst", "--scores", "scores.csv", "--output-dir", str(tmp_path)]) == 2
    assert _sha(d / "run_1.cxi") == before  # the user's file is not touched
    with h5py.File(tmp_path / "run 2.cnn.h5", "r") as f:
        score = f["/entry_1/result_1/cnnHitScore"][()]
        hit = f["/entry_1/result_1/cnnHit"][()]
        err = f["/entry_1/result_1/cnnError"][()]
        assert score.dtype == np.float32 and hit.dtype == np.int8 and len(score) == 8
        for i in range(8):
            row = run["scores"].get(("run 2.cxi", f"//{i}"))
            if row is None:  # odd events were not in the list
                assert np.isnan(score[i]) and hit[i] == -1 and err[i] == 0
            else:
                assert score[i] == pytest.approx(float(row["score"]), abs=1e-6)
                assert hit[i] == int(row["is_hit"]) and err[i] == 0
        # the sidecar links to the frames, so it can stand in for the CXI file
        assert f["/entry_1/data_1/data"].shape == (8, data.FRAME, data.FRAME)
        assert f["/entry_1/result_1"].attrs["source_file"] == str(d / "run 2.cxi")
    assert not (tmp_path / "gone.cnn.h5").exists()


def test_tag_cxi_scores_and_in_place(run, tmp_path):
    import h5py

    shutil.copy(run["dir"] / "run_1.cxi", tmp_path / "mine.cxi")
    with h5py.File(tmp_path / "mine.cxi", "r") as f:
        frames = f["/entry_1/data_1/data"][()]
    assert main(["tag-cxi", str(tmp_path / "mine.cxi"), "-m", run["model"]]) == 0
    with h5py.File(tmp_path / "mine.cnn.h5", "r") as f:
        side = f["/entry_1/result_1/cnnHitScore"][()]
    assert main(["tag-cxi", str(tmp_path / "mine.cxi"), "-m", run["model"], "--in-place"]) == 0
    with h5py.File(tmp_path / "mine.cxi", "r") as f:
        np.testing.assert_array_equal(f["/entry_1/data_1/data"][()], frames)
        np.testing.assert_allclose(f["/entry_1/result_1/cnnHitScore"][()], side, atol=1e-6)
        for i in range(12):
            row = run["scores"][("run_1.cxi", f"//{i}")]
            assert f["/entry_1/result_1/cnnHitScore"][i] == pytest.approx(float(row["score"]), abs=1e-5)


def test_convert_lst_to_scores(run, tmp_path):
    d = run["dir"]
    out = tmp_path / "hits.csv"
    assert data.in_dir(d, ["convert", "lst-scores", "hits.lst", "--scores", "scores.csv", "-o", str(out)]) == 2
    rows = data.read_csv(out)
    hits = data.read_lines(d / "hits.lst")
    assert [r["file"] + " " + r["event"] for r in rows] == hits
    for r in rows:
        assert r["score"] == run["scores"][(r["file"], r["event"])]["score"]


def test_sidecar_sink_through_score(run, tmp_path):
    import h5py

    from sfx_cnn_veto import manager

    assert "cxi-sidecar" in manager.sinks()
    d = run["dir"]
    (tmp_path / "two.lst").write_text(f"{d / 'run 2.cxi'} //0\n{d / 'run 2.cxi'} //2\n")
    assert main(["score", str(tmp_path / "two.lst"), "-m", run["model"], "-o", str(tmp_path / "s.csv"),
                 "--sink", f"cxi-sidecar:{tmp_path}"]) == 0
    rows = data.read_csv(tmp_path / "s.csv")
    with h5py.File(tmp_path / "run 2.cnn.h5", "r") as f:
        hit = f["/entry_1/result_1/cnnHit"][()]
        score = f["/entry_1/result_1/cnnHitScore"][()]
    assert list(hit[:4]) == [int(rows[0]["is_hit"]), -1, int(rows[1]["is_hit"]), -1]
    assert score[2] == pytest.approx(float(rows[1]["score"]), abs=1e-6)
