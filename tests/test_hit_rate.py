"""filter-lst and tag-stream report the hit rate per file or per N events, and draw it with --plot."""

from __future__ import annotations

import collections
import csv
import re

import pytest

from sfx_cnn_veto.cli import main
from sfx_cnn_veto.hitrate import HitRate
from sfx_cnn_veto.io.stream import format_chunk, format_preamble
from sfx_cnn_veto.testing import spot_frames, write_cxi

from test_crystfel_formats import GEOM

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LINE = r"  (.+): (\d+) events, (\d+) hits \((\d+\.\d)%\)"


def test_hit_rate_counts_per_file_and_per_block_errors_apart():
    rates = HitRate(every=3)
    for file, decision in [("a", "hit"), ("a", "miss"), ("a", "error"), ("a", "hit"), ("b", "miss"), ("b", "hit")]:
        rates.add(file, decision)
    assert [(c.name, c.events, c.hits, c.errors) for c in rates.files] == [("a", 4, 2, 1), ("b", 2, 1, 0)]
    assert [(c.first, c.events, c.hits) for c in rates.blocks] == [(0, 3, 1), (3, 3, 2)]
    assert rates.files[0].rate == pytest.approx(2 / 3)  # an error is neither hit nor miss
    text = rates.report()
    assert text.splitlines()[0] == "hit rate per file:"
    assert "  a: 4 events, 2 hits (66.7%), 1 errors" in text


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rates")
    for name, hits in (("r1.cxi", [True, True, False, True]), ("r2.cxi", [False, False, True, False, False, False])):
        frames, _ = spot_frames(len(hits), (700, 700), hits=hits, seed=len(hits))
        write_cxi(root / name, frames)
    lines = [f"r1.cxi //{i}" for i in range(4)] + [f"r2.cxi //{i}" for i in range(6)]
    (root / "in.lst").write_text("".join(line + "\n" for line in lines))
    (root / "r2.lst").write_text("".join(line + "\n" for line in lines[4:]))
    return root


def _report(err: str, head: str) -> dict[str, tuple[int, int]]:
    lines = err.splitlines()
    start = lines.index(head)
    rows = {}
    for line in lines[start + 1:]:
        m = re.match(LINE, line)
        if not m:
            break
        rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return rows


def _hits_per_file(scores_csv) -> dict[str, tuple[int, int]]:
    counts = collections.defaultdict(lambda: [0, 0])
    for row in csv.DictReader(open(scores_csv)):
        counts[row["file"]][0] += 1
        counts[row["file"]][1] += row["decision"] == "hit"
    return {k: tuple(v) for k, v in counts.items()}


def test_filter_lst_reports_hit_rate_per_file_and_plots_it(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(two_runs)
    png = tmp_path / "rate.png"
    assert main(["filter-lst", "in.lst", "-o", str(tmp_path / "hits.lst"), "--scores", str(tmp_path / "s.csv"),
                 "--plot", str(png)]) == 0
    err = capsys.readouterr().err
    assert _report(err, "hit rate per file:") == _hits_per_file(tmp_path / "s.csv")
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_filter_lst_reports_hit_rate_per_n_events_of_one_file(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(two_runs)
    assert main(["filter-lst", "r2.lst", "-o", str(tmp_path / "hits.lst"), "--scores", str(tmp_path / "s.csv"),
                 "--hit-rate-every", "2"]) == 0
    rows = _report(capsys.readouterr().err, "hit rate per 2 events:")
    decisions = [r["decision"] for r in csv.DictReader(open(tmp_path / "s.csv"))]
    assert rows == {f"events {i + 1}-{i + 2}": (2, decisions[i:i + 2].count("hit")) for i in (0, 2, 4)}


def test_tag_stream_reports_hit_rate_per_file_and_plots_it(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(two_runs)
    assert main(["filter-lst", "in.lst", "-o", str(tmp_path / "hits.lst"), "--scores", str(tmp_path / "s.csv")]) == 0
    text = format_preamble(GEOM)
    lines = (two_runs / "in.lst").read_text().splitlines()
    for serial, line in enumerate(lines, start=1):
        file, event = line.split()
        text += format_chunk(file, event, serial, peaks=[], crystals=[], indexed_by="none")
    (tmp_path / "in.stream").write_text(text)
    capsys.readouterr()
    png = tmp_path / "tag.png"
    assert main(["tag-stream", str(tmp_path / "in.stream"), "-o", str(tmp_path / "out.stream"),
                 "--scores", str(tmp_path / "s.csv"), "--plot", str(png)]) == 0
    assert _report(capsys.readouterr().err, "hit rate per file:") == _hits_per_file(tmp_path / "s.csv")
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_a_hit_rate_block_below_one_event_is_a_user_error(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(two_runs)
    assert main(["filter-lst", "in.lst", "-o", str(tmp_path / "h.lst"), "--hit-rate-every", "0"]) == 1
    assert "--hit-rate-every" in capsys.readouterr().err
