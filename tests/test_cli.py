"""The console script: --version, plugins, models, score; one-line errors."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from sfx_cnn_veto import __version__
from sfx_cnn_veto.cli import main
from sfx_cnn_veto.testing import spot_frames, write_cxi

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sfx_cnn_veto.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"sfx-cnn-veto {__version__}"


def test_models_lists_the_paper_network(capsys):
    assert main(["models", "--parameters"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["paper", "350x350x1", "11,098"] for line in lines)


@pytest.fixture
def mixed_inputs(tmp_path):
    import fabio

    frames, _ = spot_frames(4, (600, 600), seed=7)
    cxi = write_cxi(tmp_path / "run1.cxi", frames)
    fabio.cbfimage.CbfImage(data=frames[0].astype(np.int32)).write(str(tmp_path / "single.cbf"))
    (tmp_path / "in.lst").write_text("run1.cxi //2\nsingle.cbf\nrun1.cxi\nlost.cxi //0\n")
    return tmp_path, cxi


def test_score_lst_of_cxi_and_cbf_end_to_end(mixed_inputs, paper_model_file):
    tmp, _ = mixed_inputs
    result = run_cli("score", "in.lst", "--model", paper_model_file, "-o", "scores.csv", cwd=tmp)
    assert result.returncode == 2, result.stderr  # one event could not be read
    assert "lost.cxi //0" in result.stderr and "file not found" in result.stderr
    assert "Traceback" not in result.stderr
    rows = list(csv.DictReader(open(tmp / "scores.csv")))
    assert list(rows[0])[:4] == ["file", "event", "score", "is_hit"]
    assert [(r["file"], r["event"]) for r in rows] == [
        ("run1.cxi", "//2"), ("single.cbf", ""), ("run1.cxi", "//0"), ("run1.cxi", "//1"),
        ("run1.cxi", "//2"), ("run1.cxi", "//3"), ("lost.cxi", "//0"),
    ]
    assert rows[0]["score"] == rows[4]["score"] != ""  # same event, same score
    assert rows[-1]["is_hit"] == "1" and rows[-1]["score"] == ""  # fail open
    assert all(0 <= float(r["score"]) <= 1 for r in rows[:-1])
    assert not (tmp / "scores.csv.part").exists()


def test_user_errors_are_one_line_without_traceback(tmp_path):
    result = run_cli("score", "x.lst", "--model", str(tmp_path / "missing.keras"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"sfx-cnn-veto: error: {tmp_path / 'missing.keras'}: model file not found"]
    verbose = run_cli("score", "x.lst", "--model", str(tmp_path / "missing.keras"), "--verbose")
    assert "Traceback" in verbose.stderr


def test_bad_arguments_exit_1():
    result = run_cli("score")
    assert result.returncode == 1 and "error:" in result.stderr


def test_config_file_feeds_the_model_options(tmp_path, paper_model_file, mixed_inputs):
    """model.path, decision.threshold and model.backend come from --config when the command line is silent."""
    tmp, cxi = mixed_inputs
    assert main(["score", cxi, "-m", paper_model_file, "-o", str(tmp / "ref.csv")]) == 0
    ref = [float(r["score"]) for r in csv.DictReader(open(tmp / "ref.csv"))]
    low, high = sorted(set(ref))[0], sorted(set(ref))[-1]
    assert low < high  # the frames score differently: a threshold between them splits them
    threshold = (low + high) / 2
    (tmp / "veto.yaml").write_text(f"model:\n  path: {paper_model_file}\n  backend: keras\n"
                                   f"decision:\n  threshold: {threshold!r}\n")
    assert main(["score", cxi, "--config", str(tmp / "veto.yaml"), "-o", str(tmp / "s.csv")]) == 0
    rows = list(csv.DictReader(open(tmp / "s.csv")))
    assert [float(r["score"]) for r in rows] == pytest.approx(ref, abs=1e-5)  # the config's model
    assert [r["is_hit"] for r in rows] == ["1" if s >= threshold else "0" for s in ref]  # the config's threshold
    assert {r["is_hit"] for r in rows} == {"0", "1"}
    (tmp / "nope.yaml").write_text(f"model:\n  path: {paper_model_file}\n  backend: nope\n")
    assert main(["score", cxi, "--config", str(tmp / "nope.yaml")]) == 1  # the config's backend is read
    (tmp / "bad.yaml").write_text("model:\n  pth: x\n")
    assert main(["score", cxi, "--config", str(tmp / "bad.yaml")]) == 1


def test_importing_the_package_does_not_import_tensorflow():
    code = ("import sys, sfx_cnn_veto, sfx_cnn_veto.manager, sfx_cnn_veto.io.store, sfx_cnn_veto.core.pipeline;"
            "sfx_cnn_veto.manager.get_plugin_manager();"
            "heavy = [m for m in ('tensorflow', 'keras', 'psana', 'om') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sinks_write_hit_and_miss_lists(mixed_inputs, paper_model_file, capsys):
    tmp, cxi = mixed_inputs
    code = main(["score", cxi, "-m", paper_model_file, "--threshold", "0.5", "-o", str(tmp / "s.csv"),
                 "--sink", f"hits-lst:{tmp / 'hits.lst'}", "--sink", f"misses-lst:{tmp / 'misses.lst'}"])
    assert code == 0
    rows = list(csv.DictReader(open(tmp / "s.csv")))
    hits = [f"{cxi} {r['event']}" for r in rows if r["is_hit"] == "1"]
    misses = [f"{cxi} {r['event']}" for r in rows if r["is_hit"] == "0"]
    assert open(tmp / "hits.lst").read().splitlines() == hits
    assert open(tmp / "misses.lst").read().splitlines() == misses
    assert main(["score", cxi, "-m", paper_model_file, "--sink", "nope:x"]) == 1
    assert "no sink 'nope'" in capsys.readouterr().err
