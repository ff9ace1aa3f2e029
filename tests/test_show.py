"""``sfx-cnn-veto simulate`` and ``show`` from the command line; show's PNG."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sfx_cnn_veto.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("simulated")
    assert main(["simulate", str(out), "--runs", "90", "--frames", "4", "--size", "400x400", "--seed", "3"]) == 0
    return out


def test_simulate_writes_the_run_files_and_the_config_echo(simulated, capsys):
    names = sorted(os.listdir(simulated))
    assert names == ["experiment.yaml", "run90.cxi", "run90.geom", "run90.lst", "run90.truth.csv"]
    with open(simulated / "run90.lst") as handle:
        assert handle.read().splitlines() == [f"{simulated / 'run90.cxi'} //{n}" for n in range(4)]


def test_show_writes_a_png_with_truth(simulated, tmp_path, capsys):
    png = tmp_path / "frame.png"
    assert main(["show", str(simulated / "run90.cxi"), "//2", "--png", str(png), "--no-score"]) == 0
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and 10_000 < len(data) < 600_000
    assert "run90.cxi //2" in capsys.readouterr().out
    # from a list, first event, default name in the working directory
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert main(["show", str(simulated / "run90.lst"), "--no-score"]) == 0
    finally:
        os.chdir(cwd)
    assert (tmp_path / "run90_0.png").read_bytes().startswith(PNG_MAGIC)


def test_show_refuses_a_bad_event(simulated, capsys):
    assert main(["show", str(simulated / "run90.cxi"), "3"]) == 1
    assert "expected //N" in capsys.readouterr().err
    assert main(["show", str(simulated / "run90.cxi"), "//99"]) == 1


def test_render_frame_outlines_the_crop(tmp_path):
    from sfx_cnn_veto.show import _max_bin, render_frame

    frame = np.random.default_rng(0).poisson(1.0, (700, 700)).astype(np.float32)
    path = render_frame(frame, str(tmp_path / "x.png"), title="t")
    assert open(path, "rb").read(8) == PNG_MAGIC
    binned = _max_bin(np.arange(25.0).reshape(5, 5), 2)
    assert binned.shape == (3, 3) and binned[0, 0] == 6.0 and binned[2, 2] == 24.0


@pytest.mark.slow
def test_show_with_a_model_prints_the_decision(simulated, tmp_path, capsys, paper_model_file):
    png = tmp_path / "scored.png"
    assert main(["show", str(simulated / "run90.cxi"), "//1", "--model", paper_model_file,
                 "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "score" in out and ("hit" in out or "miss" in out)
    assert png.read_bytes().startswith(PNG_MAGIC)
