"""CrystFEL stream (format 2.3) and hit-list readers/writers: byte-exact round trips, every odd case."""

from __future__ import annotations

import logging

import pytest

from sfx_cnn_veto.io import hitlists, stream
from sfx_cnn_veto.io.stream import Chunk, canonical_event, format_chunk, format_preamble, iter_chunks, iter_stream

GEOM = "\n".join([
    "photon_energy = 9500", "clen = 0.1", "res = 13333.3", "adu_per_photon = 1",
    "data = /entry_1/data_1/data", "dim0 = %", "dim1 = ss", "dim2 = fs",
    "p0/min_fs = 0", "p0/max_fs = 71", "p0/min_ss = 0", "p0/max_ss = 71",
    "p0/corner_x = -36", "p0/corner_y = -36", "p0/fs = +1.0x", "p0/ss = +1.0y",
])
CRYSTAL = "\n".join([
    "Cell parameters 7.90000 7.90000 3.80000 nm, 90.00000 90.00000 90.00000 deg",
    "astar = +0.1265823 +0.0000000 +0.0000000 nm^-1",
    "lattice_type = tetragonal", "centering = P", "unique_axis = c",
    "diffraction_resolution_limit = 2.50 nm^-1 or 4.00 A",
    "num_reflections = 2", "num_saturated_reflections = 0", "num_implausible_reflections = 0",
    "Reflections measured after indexing",
    "   h    k    l          I   sigma(I)       peak background  fs/px  ss/px panel",
    "   1    0    0      12.30       3.40      50.00      10.00   40.1   36.2 p0",
    "   0    1    0      22.30       4.40      60.00      11.00   36.0   44.9 p0",
    "End of reflections",
])


def sample_stream(newline: str = "\n") -> str:
    text = format_preamble(GEOM)
    text += format_chunk("data/run 1.cxi", "//3", 1, peaks=[(10.5, 20.25, 1.5, 300.0, "p0"), (30, 40, 2.0, 55.5, "p0")],
                         indexed_by="mosflm-latt-nolatt-nocell", crystals=[CRYSTAL])
    text += format_chunk("data/run 1.cxi", "//0", 2)
    text += format_chunk("single.h5", None, 3, peaks=[(1, 2, 0.5, 10, "p0")])
    return text.replace("\n", newline)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_stream_round_trips_byte_for_byte(tmp_path, newline):
    path = tmp_path / "a.stream"
    path.write_bytes(sample_stream(newline).encode() + b"\xff\xfe odd bytes after the chunks" + newline.encode())
    pieces = list(iter_stream(path))
    joined = "".join(p if isinstance(p, str) else p.text for p in pieces)
    assert joined.encode("utf-8", "surrogateescape") == path.read_bytes()
    chunks = [p for p in pieces if isinstance(p, Chunk)]
    assert [c.key for c in chunks] == [("data/run 1.cxi", "//3"), ("data/run 1.cxi", "//0"), ("single.h5", None)]
    first = chunks[0]
    assert first.serial == 1 and first.hit == 1 and first.num_peaks == 2 and first.peak_rows == 2
    assert first.num_crystals == 1 and first.complete
    assert first.header["indexed_by"] == "mosflm-latt-nolatt-nocell"
    assert chunks[1].num_peaks == 0 and chunks[1].hit == 0
    assert stream.stream_version(stream.read_preamble(path)) == "2.3"


def test_num_peaks_from_table_when_header_lacks_it(tmp_path):
    text = format_chunk("f.h5", "//1", 1, peaks=[(1, 2, 0.5, 10, "p0")] * 4).replace("num_peaks = 4\n", "")
    (tmp_path / "s.stream").write_text(text)
    (chunk,) = iter_chunks(tmp_path / "s.stream")
    assert chunk.num_peaks == 4


def test_cut_stream_is_reported_not_raised(tmp_path, caplog):
    text = sample_stream()
    cut = text[: text.rindex("Peaks from peak search") + 10]  # inside the last chunk
    (tmp_path / "cut.stream").write_text(cut)
    with caplog.at_level(logging.WARNING):
        chunks = list(iter_chunks(tmp_path / "cut.stream"))
    assert [c.complete for c in chunks] == [True, True, False]
    assert "cut stream" in caplog.text
    assert [c.key for c in iter_chunks(tmp_path / "cut.stream", incomplete=False)] == [
        ("data/run 1.cxi", "//3"), ("data/run 1.cxi", "//0")]
    assert list(stream.peak_counts(tmp_path / "cut.stream")) == [("data/run 1.cxi", "//3", 2), ("data/run 1.cxi", "//0", 0)]
    # a Begin line inside an unfinished chunk (a crashed writer, then a new one appended)
    spliced = text[: text.index("End of peak list")] + text[text.index("----- Begin chunk -----"):]
    (tmp_path / "spliced.stream").write_text(spliced)
    complete = [c.complete for c in iter_chunks(tmp_path / "spliced.stream")]
    assert complete == [False, True, True, True]


def test_header_items_go_after_hit_line_and_replace_old_ones(tmp_path):
    (tmp_path / "s.stream").write_text(sample_stream("\r\n"))
    chunk = next(iter_chunks(tmp_path / "s.stream"))
    lines = chunk.with_header_items([("cnn_hit_score", "0.970000"), ("cnn_hit", "1")])
    hit_at = lines.index("hit = 1\r\n")
    assert lines[hit_at + 1: hit_at + 3] == ["cnn_hit_score = 0.970000\r\n", "cnn_hit = 1\r\n"]
    assert [l for l in lines if not l.startswith("cnn_")] == chunk.lines
    # tagging a tagged chunk again keeps one copy of each key
    retagged = Chunk(lines, 1)
    stream._finish(retagged)
    again = retagged.with_header_items([("cnn_hit_score", "0.100000"), ("cnn_hit", "0")])
    assert [l for l in again if l.startswith("cnn_")] == ["cnn_hit_score = 0.100000\r\n", "cnn_hit = 0\r\n"]
    # no hit line: at the end of the header part, before the peak list
    no_hit = Chunk([l for l in chunk.lines if not l.startswith("hit = ")], 1)
    stream._finish(no_hit)
    added = no_hit.with_header_items([("cnn_hit", "1")])
    at = added.index("cnn_hit = 1\r\n")
    assert added[at + 1].startswith("Peaks from peak search")


@pytest.mark.parametrize("event,canonical", [("//3", "//3"), ("//00003", "//3"), ("", None), (None, None),
                                             ("run_1//4", "run_1//4")])
def test_canonical_event(event, canonical):
    assert canonical_event(event) == canonical


def test_om_hit_list(tmp_path):
    path = tmp_path / "om.lst"
    path.write_bytes(b"/abs/run 1.h5 // 0005\r\n/abs/run.h5 // 0012 33\n\n/abs/run.h5 //7\n")
    entries = list(hitlists.iter_hitlist(path))
    assert [tuple(e) for e in entries] == [("/abs/run 1.h5", "//5", None), ("/abs/run.h5", "//12", 33),
                                          ("/abs/run.h5", "//7", None)]
    assert [e.lst_line() for e in entries] == ["/abs/run 1.h5 //5", "/abs/run.h5 //12", "/abs/run.h5 //7"]


def test_cheetah_lists_with_and_without_header(tmp_path):
    cleaned = tmp_path / "cleaned.txt"
    cleaned.write_text("# Filename, cxi_stackSlice, frameNumber, nPeaks, nPixels\n"
                       "r0042-class1.cxi, 3, 17, 25, 1000\n r0042-class1.cxi , 4, 18, 9, 120\n")
    assert list(hitlists.peak_counts(cleaned)) == [("r0042-class1.cxi", "//3", 25), ("r0042-class1.cxi", "//4", 9)]
    bare = tmp_path / "frames.txt"
    bare.write_text("a.cxi, 0, 12\na.cxi, 1, 0\n")
    assert list(hitlists.peak_counts(bare)) == [("a.cxi", "//0", 12), ("a.cxi", "//1", 0)]
    lst = tmp_path / "x.lst"
    lst.write_text("b.cxi //00002\nc.h5\n")
    assert list(hitlists.peak_counts(lst)) == [("b.cxi", "//2", None), ("c.h5", None, None)]


def test_convert_hitlist_cli(tmp_path):
    from sfx_cnn_veto.cli import main

    om = tmp_path / "om.txt"
    om.write_text("/abs/run.h5 // 0005 40\n/abs/run.h5 // 0006 3\n/abs/my run.h5 // 0010 20\n")
    out = tmp_path / "hits.lst"
    assert main(["convert", "hitlist", str(om), "-o", str(out), "--min-peaks", "10"]) == 0
    assert out.read_bytes() == b"/abs/run.h5 //5\n/abs/my run.h5 //10\n"
    assert not (tmp_path / "hits.lst.part").exists()


def test_convert_hitlist_of_a_scores_csv_keeps_its_hits_and_refuses_a_header_without_files(tmp_path, capsys):
    """`score`'s CSV (file,event,score,is_hit,error): the header is no event, the misses are no hits."""
    from sfx_cnn_veto.cli import main
    from sfx_cnn_veto.core.pipeline import Decision
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.sinks import CsvSink

    scores = tmp_path / "scores.csv"
    sink = CsvSink(str(scores))
    for event, decision in (("//0", Decision(0.9, True)), ("//1", Decision(0.1, False)),
                            ("//2", Decision(float("nan"), True, "unreadable"))):
        sink.write(EventRef("/d/run 1.cxi", event, "/d/run 1.cxi"), decision)
    sink.close()
    out = tmp_path / "hits.lst"
    assert main(["convert", "hitlist", str(scores), "-o", str(out)]) == 0
    assert out.read_text().splitlines() == ["/d/run 1.cxi //0", "/d/run 1.cxi //2"]   # the undecided kept
    assert "3 entries read, 1 misses left out" in capsys.readouterr().err
    odd = tmp_path / "odd.csv"
    odd.write_text("event,num_peaks\n3,20\n")
    assert main(["convert", "hitlist", str(odd), "-o", str(out)]) == 1
    assert "no file-name column in header" in capsys.readouterr().err


def test_mpi_is_detected_from_the_launcher_without_importing_mpi4py(monkeypatch):
    import subprocess
    import sys

    import _crystfel_data as data
    from sfx_cnn_veto_crystfel import mpi

    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK",
                 "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert not mpi.under_mpi_launcher()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert not mpi.under_mpi_launcher()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert mpi.under_mpi_launcher()
    assert isinstance(mpi.world("off"), mpi.SerialComm)
    code = ("import sys; from sfx_cnn_veto_crystfel.mpi import world, SerialComm; "
            "assert isinstance(world(), SerialComm); assert 'mpi4py' not in sys.modules")
    env = {k: v for k, v in data.env().items() if not k.startswith(("OMPI_", "PMI", "PMIX_"))}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
