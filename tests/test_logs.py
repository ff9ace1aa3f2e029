"""Logs that read well: status lines in non-terminal logs, collapsed errors, set-up mistakes, no TensorFlow for --help."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from sfx_cnn_veto.cli import main
from sfx_cnn_veto.progress import Progress
from sfx_cnn_veto.testing import spot_frames, write_cxi
from sfx_cnn_veto.training.labels import LabelRow, write_labels
from train_helpers import write_run

STATUS = r"(\d+) frames?, (\d+) hits? \((\d+\.\d)%\), [\d.]+ frames/s"


@pytest.fixture
def log_not_terminal(monkeypatch):
    """Standard error is a log (pytest captures it: not a TTY); status lines every update."""
    monkeypatch.delenv("SFX_CNN_VETO_PROGRESS", raising=False)
    monkeypatch.setenv("SFX_CNN_VETO_STATUS_SECONDS", "0")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Six 700x700 frames the shipped model takes, and five 300x300 ones it cannot crop."""
    root = tmp_path_factory.mktemp("logs")
    good, _ = spot_frames(6, (700, 700), hits=[True, False] * 3, seed=4)
    small, _ = spot_frames(5, (300, 300), seed=5)
    write_cxi(root / "good.cxi", good)
    write_cxi(root / "small.cxi", small)
    (root / "good.lst").write_text("".join(f"good.cxi //{i}\n" for i in range(6)))
    return root


def _status_lines(err: str, desc: str) -> list[re.Match]:
    return [m for line in err.splitlines() if (m := re.match(rf"{re.escape(desc)}: {STATUS}", line))]


def test_score_prints_status_lines_with_hits_and_rate_in_a_log(runs, tmp_path, capsys, log_not_terminal):
    assert main(["score", str(runs / "good.cxi"), "-o", str(tmp_path / "s.csv")]) == 0
    lines = _status_lines(capsys.readouterr().err, "score")
    assert [int(m.group(1)) for m in lines] == [1, 2, 3, 4, 5, 6]
    hits, n = int(lines[-1].group(2)), int(lines[-1].group(1))
    assert float(lines[-1].group(3)) == pytest.approx(100 * hits / n, abs=0.05)


def test_filter_lst_prints_status_lines_in_a_log(runs, tmp_path, capsys, log_not_terminal, monkeypatch):
    monkeypatch.chdir(runs)
    assert main(["filter-lst", "good.lst", "-o", str(tmp_path / "hits.lst")]) == 0
    assert len(_status_lines(capsys.readouterr().err, "filter-lst")) == 6


def test_label_prints_status_lines_with_the_time_left(runs, tmp_path, capsys, log_not_terminal, monkeypatch):
    monkeypatch.chdir(runs)
    assert main(["label", "good.lst", "-o", str(tmp_path / "labels.csv")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("label good: ")]
    assert len(lines) == 6 and "1 of 6" in lines[0] and "left" in lines[0]


def test_no_status_lines_when_progress_is_off(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SFX_CNN_VETO_PROGRESS", "0")
    monkeypatch.setenv("SFX_CNN_VETO_STATUS_SECONDS", "0")
    assert main(["score", str(runs / "good.cxi"), "-o", str(tmp_path / "s.csv")]) == 0
    assert not _status_lines(capsys.readouterr().err, "score")


def test_train_prints_each_epoch_with_loss_and_validation_in_a_log(tmp_path, capsys, log_not_terminal):
    rows = []
    for i, run in enumerate(("ta", "tb")):
        _lst, truth = write_run(str(tmp_path), run, 30, seed=20 + i)
        rows += [LabelRow(str(tmp_path / f"{run}.cxi"), f"//{j}", run, 20 if hit else 0, int(hit))
                 for j, hit in enumerate(truth)]
    write_labels(str(tmp_path / "labels.csv"), rows)
    main(["train", "--labels", str(tmp_path / "labels.csv"), "--train-runs", "ta", "--val-runs", "tb",
          "--crop", "64x64", "--epochs", "2", "--batch-size", "20", "--margin", "4", "--augment", "none",
          "-o", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    epochs = re.findall(r"epoch (\d)/2: loss [\d.]+, accuracy [\d.]+, validation loss [\d.]+, "
                        r"validation accuracy [\d.]+", err)
    assert epochs == ["1", "2"], err[-3000:]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_shows_total_time_left_and_hits(monkeypatch):
    monkeypatch.delenv("SFX_CNN_VETO_PROGRESS", raising=False)
    out = _Terminal()
    with Progress(total=4, desc="score", stream=out) as bar:
        for hit in (True, False, True):
            bar.update(1, hits=hit)
    text = out.getvalue()
    assert "3/4" in text and "<" in text and "2 hits (66.7%)" in text  # tqdm's [elapsed<left]
    assert not re.search(rf"score: {STATUS}", text)  # no plain lines on a terminal


def test_repeated_event_errors_are_collapsed_naming_file_and_event_once(runs, tmp_path, capsys):
    assert main(["score", str(runs / "good.cxi"), str(runs / "small.cxi"), "-o", str(tmp_path / "s.csv")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "small.cxi" in line]
    assert len(err) == 2, err
    assert err[0].count("small.cxi") == 1 and "//0" in err[0] and "(300, 300)" in err[0]
    assert err[1].endswith("small.cxi: 4 more events of this file: same reason")


def test_a_dataset_in_no_file_is_one_line_and_rc_1(runs, tmp_path, capsys):
    argv = ["score", str(runs / "good.cxi"), str(runs / "small.cxi"), "--dataset", "/entry_1/nope",
            "-o", str(tmp_path / "s.csv")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/entry_1/nope" in err[0] and "--dataset" in err[0], err


def test_every_frame_of_the_wrong_shape_is_one_line_and_rc_1(runs, tmp_path, capsys):
    assert main(["score", str(runs / "small.cxi"), "-o", str(tmp_path / "s.csv")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(300, 300)" in err[0] and "all 5" in err[0], err


def test_filter_lst_dataset_in_no_file_is_one_line_rc_1_and_leaves_no_journal(runs, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.chdir(runs)
    out = tmp_path / "hits.lst"
    assert main(["filter-lst", "good.lst", "--dataset", "/nope", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nope" in err[0], err
    assert not out.exists() and not any(p.name.endswith(".journal") for p in tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["models"], ["inspect"], ["score", "--help"], ["train", "--help"]])
def test_help_plugins_and_models_do_not_import_tensorflow(argv):
    code = ("import sys\nfrom sfx_cnn_veto.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    env = dict(os.environ, SFX_CNN_VETO_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
