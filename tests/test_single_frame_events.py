"""Single-frame files (a CBF, a 2-D HDF5 data set) in CrystFEL lists and streams.

indexamajig 0.12 writes ``Event: //`` for such a file's chunk, 0.9 writes no
``Event:`` line (the real 0.9 stream in ``../shared/real/crystfel``); a list
line ``file.cbf //`` names the same frame. None of these is an error, and the
stream's file names match as indexamajig wrote them (its ``-x`` prefix, the
directory it ran in).
"""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import pytest

import _crystfel_data as data
from _real import REAL
from sfx_cnn_veto.io.stream import format_chunk, format_preamble, iter_chunks

from test_crystfel_formats import CRYSTAL, GEOM

REAL_STREAM = REAL / "crystfel" / "test.stream"


def _with_empty_events(text: str) -> str:
    """A 0.9 stream as indexamajig 0.12 writes it for single-frame files: ``Event: //`` after the file name."""
    return re.sub(r"^(Image filename: .*\n)", r"\1Event: //\n", text, flags=re.M)


# ---------------------------------------------------------------------------
# label --stream with the real 0.9 stream (70 chunks, no Event lines)

@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """Where indexamajig ran: the stream's 70 image files (as 2-D HDF5 frames) and its files.lst."""
    d = tmp_path_factory.mktemp("real_run")
    chunks = list(iter_chunks(REAL_STREAM))
    assert len(chunks) == 70 and all(c.event is None for c in chunks)
    for chunk in chunks:
        path = d / chunk.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as handle:
            handle["/data/data"] = np.zeros((8, 8), np.float32)
    (d / "files.lst").write_text("".join(f"{c.filename}\n" for c in chunks))
    (d / "test.stream").write_bytes(REAL_STREAM.read_bytes())
    (d / "test-0.12.stream").write_text(_with_empty_events(REAL_STREAM.read_text()))
    return d, {os.path.normpath(str(d / c.filename)): c.num_peaks for c in chunks}


@pytest.mark.parametrize("stream", ["test.stream", "test-0.12.stream"])
def test_label_matches_every_chunk_of_the_real_stream(real_run, tmp_path, stream):
    d, peaks = real_run
    out = tmp_path / "labels.csv"
    assert data.in_dir(d, ["label", "files.lst", "--stream", stream, "-o", str(out)]) == 0
    rows = data.read_csv(out)
    assert len(rows) == 70
    assert {os.path.normpath(r["file"]): int(r["num_peaks"]) for r in rows} == peaks
    assert all(r["label"] == "1" for r in rows)  # 11 to 98 peaks: hits by the paper's rule


def test_label_matches_stream_names_with_the_prefix_and_from_another_directory(tmp_path):
    """indexamajig ran in RUN with ``-x data/``: the stream says ``data/a/x.h5``. Two files share a base name."""
    run = tmp_path / "RUN"
    for sub in ("a", "b"):
        (run / "data" / sub).mkdir(parents=True)
        with h5py.File(run / "data" / sub / "x.h5", "w") as handle:
            handle["/data/data"] = np.zeros((8, 8), np.float32)
    (run / "in.lst").write_text("a/x.h5\nb/x.h5\n")
    text = format_preamble(GEOM) + format_chunk("data/a/x.h5", "//", 1, peaks=[(1.0, 2.0, 1.0, 10.0, "p0")] * 3) \
        + format_chunk("data/b/x.h5", None, 2, peaks=[(1.0, 2.0, 1.0, 10.0, "p0")] * 15)
    (run / "out.stream").write_text(text)
    out = tmp_path / "labels.csv"
    # in RUN, with the same -x: the list line plus the prefix is the stream's name
    assert data.in_dir(run, ["label", "in.lst", "-x", "data/", "--stream", "out.stream", "-o", str(out)]) == 0
    assert [(r["num_peaks"], r["label"]) for r in data.read_csv(out)] == [("3", ""), ("15", "1")]
    # elsewhere, with absolute paths: the stream's names are relative to the stream's directory
    (tmp_path / "abs.lst").write_text(f"{run}/data/a/x.h5\n{run}/data/b/x.h5\n")
    assert data.in_dir(tmp_path, ["label", "abs.lst", "--stream", str(run / "out.stream"), "-o", str(out)]) == 0
    assert [r["num_peaks"] for r in data.read_csv(out)] == ["3", "15"]


# ---------------------------------------------------------------------------
# tag-stream and lists with CBF and 2-D HDF5 files

@pytest.fixture(scope="module")
def single_frames(tmp_path_factory):
    """Three CBFs and three 2-D HDF5 files, a tiny model, and streams of them as 0.12 and 0.9 write them."""
    import fabio.cbfimage

    d = tmp_path_factory.mktemp("single")
    frames = data.frames(6, 31)
    names = []
    for i in range(3):
        fabio.cbfimage.CbfImage(data=frames[i].astype(np.int32)).write(str(d / f"img_{i}.cbf"))
        with h5py.File(d / f"img_{i}.h5", "w") as handle:
            handle["/entry_1/data_1/data"] = frames[3 + i]
        names += [f"img_{i}.cbf", f"img_{i}.h5"]
    model = data.make_model(str(d), frames)
    for version, event in (("0.12", "//"), ("0.9", None)):
        text = format_preamble(GEOM)
        for serial, name in enumerate(names, start=1):
            indexed = serial % 2 == 1
            text += format_chunk(name, event, serial, peaks=[(10.0, 20.0, 1.0, 100.0, "p0")] * (12 + serial),
                                 crystals=[CRYSTAL] if indexed else [],
                                 indexed_by="xgandalf-nolatt-cell" if indexed else "none")
        (d / f"run-{version}.stream").write_text(text)
    (d / "files.lst").write_text("".join(f"{n}\n" for n in names))
    (d / "files-0.12.lst").write_text("".join(f"{n} //\n" for n in names))  # as indexamajig 0.12 accepts
    assert data.in_dir(d, ["score", "files.lst", "-m", model, "-o", "scores.csv"]) == 0
    scores = {r["file"]: r for r in data.read_csv(d / "scores.csv")}
    assert len(scores) == 6 and {r["is_hit"] for r in scores.values()} == {"0", "1"}
    return d, model, scores


@pytest.mark.parametrize("version", ["0.12", "0.9"])
def test_tag_stream_scores_single_frame_chunks_as_their_files(single_frames, tmp_path, capsys, version):
    d, model, scores = single_frames
    out = tmp_path / "tagged.stream"
    # run from elsewhere: the stream's names are relative to the directory indexamajig ran in (the stream's)
    assert data.in_dir(tmp_path, ["tag-stream", str(d / f"run-{version}.stream"), "-m", model, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    chunks = list(iter_chunks(out))
    assert len(chunks) == 6 and not any("cnn_hit_error" in c.header for c in chunks)
    for chunk in chunks:
        row = scores[chunk.filename]
        assert float(chunk.header["cnn_hit_score"]) == pytest.approx(float(row["score"]), abs=1e-5)
        assert chunk.header["cnn_hit"] == row["is_hit"]
    # the indexed chunks the veto calls misses: the indexable hits it would lose
    indexed_misses = sum(1 for c in chunks if c.num_crystals and c.header["cnn_hit"] == "0")
    assert f"tag-stream: 3 chunks indexed; {indexed_misses} of them called misses" in err


def test_filter_lst_takes_empty_event_lines_and_tag_stream_matches_their_scores(single_frames, tmp_path, capsys):
    """``file.cbf //`` list lines are decided (kept as written) and their scores CSV tags the 0.12 stream."""
    d, model, scores = single_frames
    hits, misses = tmp_path / "hits.lst", tmp_path / "misses.lst"
    assert data.in_dir(d, ["filter-lst", "files-0.12.lst", "-m", model, "-o", str(hits), "--misses", str(misses),
                      "--scores", str(tmp_path / "scores.csv")]) == 0
    written = hits.read_text().splitlines() + misses.read_text().splitlines()
    assert sorted(written) == sorted((d / "files-0.12.lst").read_text().splitlines())
    assert {line.split(" ")[0] for line in hits.read_text().splitlines()} == \
        {name for name, row in scores.items() if row["is_hit"] == "1"}
    for stream in ("run-0.12.stream", "run-0.9.stream"):
        out = tmp_path / f"tagged-{stream}"
        assert data.in_dir(d, ["tag-stream", stream, "--scores", str(tmp_path / "scores.csv"), "-o", str(out)]) == 0
        assert [c.header["cnn_hit"] for c in iter_chunks(out)] == [scores[c.filename]["is_hit"]
                                                                  for c in iter_chunks(d / stream)]


def test_event_refs_and_readers_take_the_single_frame_event():
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.stream import canonical_event

    ref = EventRef("img.cbf", "//")
    assert ref.index is None and ref.lst_line() == "img.cbf //"
    assert canonical_event("//") is None and canonical_event("//7") == "//7"


def test_a_one_frame_stack_reads_with_no_event_or_the_empty_one(tmp_path):
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.store import FrameStore

    stack = tmp_path / "one.cxi"
    data.write_cxi(str(stack), data.frames(1, 3))
    with FrameStore() as store:
        for event in (None, "//", "//0"):
            assert store.read(EventRef(str(stack), event)).shape == (data.FRAME, data.FRAME)
    two = tmp_path / "two.cxi"
    data.write_cxi(str(two), data.frames(2, 3))
    from sfx_cnn_veto.errors import FrameReadError

    with FrameStore() as store, pytest.raises(FrameReadError, match="holds 2 frames; name one"):
        store.read(EventRef(str(two), "//"))
