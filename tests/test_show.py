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


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    assert rows.size, "no such pixels in the PNG"
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


@pytest.mark.parametrize("center", [(100.0, 300.0), (300.0, 120.0)])
def test_render_frame_outlines_the_crop_where_it_is(tmp_path, center):
    """The cyan outline in the left panel sits on the crop's rows and columns of the frame."""
    import matplotlib.image

    from sfx_cnn_veto.show import render_frame

    height, width, crop = 400, 400, (100, 120)
    path = render_frame(np.zeros((height, width), np.float32), str(tmp_path / "x.png"), crop_shape=crop,
                        crop_center=center, dpi=80)
    assert open(path, "rb").read(8) == PNG_MAGIC
    rgb = np.round(matplotlib.image.imread(path)[..., :3] * 255).astype(int)
    left = rgb[:, : rgb.shape[1] // 2]
    # the frame's image: magma's darkest colour (0, 0, 3 or 4), which no text or axis pixel has (grey: R=G=B)
    image = (left[..., 0] == 0) & (left[..., 1] == 0) & (left[..., 2] >= 2) & (left[..., 2] <= 6)
    cyan = (left[..., 0] < 100) & (left[..., 1] > 150) & (left[..., 2] > 150)
    top, bottom, first, last = _box(image)
    scale_r, scale_c = (bottom - top + 1) / height, (last - first + 1) / width
    r0, r1 = center[0] - crop[0] / 2, center[0] + crop[0] / 2
    c0, c1 = center[1] - crop[1] / 2, center[1] + crop[1] / 2
    want = (top + r0 * scale_r, top + r1 * scale_r, first + c0 * scale_c, first + c1 * scale_c)
    got = _box(cyan)
    assert np.allclose(got, want, atol=3), (got, want)


def test_max_bin_keeps_the_brightest_pixel_of_each_block():
    from sfx_cnn_veto.show import _max_bin

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


@pytest.fixture(scope="module")
def shifted_run(tmp_path_factory):
    """The demo's run96: beam 20 pixels off the frame centre (its RUN.geom says so), hot pixels in the file's mask."""
    out = tmp_path_factory.mktemp("shifted")
    assert main(["simulate", str(out), "--runs", "96", "--frames", "6", "--seed", "5"]) == 0
    return out


def _show_says(capsys, *argv) -> tuple[str, float]:
    assert main(["show", *argv]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    decision, score = line.split(": ", 1)[1].split(" (score ")
    return decision, float(score.split(")")[0])


@pytest.mark.slow
@pytest.mark.parametrize("source", ["run96.lst", "run96.cxi"])
def test_show_decides_each_frame_as_score_does_with_the_files_mask_and_geometry(shifted_run, tmp_path, capsys,
                                                                                  source):
    """`score LIST` crops around the list's RUN.geom beam and masks the file's hot pixels; `show` must too."""
    import csv

    from sfx_cnn_veto.core.model import VetoModel, default_model_path

    assert VetoModel.read_metadata(default_model_path()).use_mask   # the file's own mask matters
    scores = tmp_path / "scores.csv"
    assert main(["score", str(shifted_run / source), "-o", str(scores)]) == 0
    rows = list(csv.DictReader(open(scores)))
    assert len(rows) == 6
    capsys.readouterr()
    for row in rows:
        decision, score = _show_says(capsys, str(shifted_run / source), row["event"], "-m", default_model(),
                                     "--png", str(tmp_path / "x.png"))
        assert (decision, score) == (("hit" if row["is_hit"] == "1" else "miss"),
                                     pytest.approx(float(row["score"]), abs=1e-3)), row["event"]


def test_show_event_draws_the_network_input_not_the_raw_crop(shifted_run, tmp_path, monkeypatch):
    """The right panel is the masked, normalized crop the network gets (a hot pixel in the mask is gone)."""
    import sfx_cnn_veto.show as show
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.store import FrameStore

    drawn = {}
    real = show.render_frame
    monkeypatch.setattr(show, "render_frame", lambda frame, path, **kw: drawn.update(kw) or real(frame, path, **kw))
    veto = Veto.load(default_model(), backend="keras", geometry=str(shifted_run / "run96.geom"))
    path = str(shifted_run / "run96.cxi")
    with FrameStore() as store:
        ref = EventRef(path, "//1", path)
        decision = show.show_event(veto, store, ref, str(tmp_path / "x.png"))
        seen, _ = show.network_input(veto, store, ref)
        raw = veto.event_crop_map(store, ref)(store.read(ref))
    assert (tmp_path / "x.png").read_bytes().startswith(PNG_MAGIC)
    np.testing.assert_array_equal(drawn["network_input"], seen)
    assert not np.allclose(seen, raw)                       # normalized: not the raw ADU
    (score,) = veto.predict_batch(seen[None])
    assert score == pytest.approx(decision.score, abs=1e-5)  # exactly what was scored


def default_model() -> str:
    from sfx_cnn_veto.core.model import default_model_path

    return default_model_path()
