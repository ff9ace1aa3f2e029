"""``sfx-cnn-veto inspect MODEL.keras``: the model file's own account of itself."""

from __future__ import annotations

import dataclasses
import json
import shutil
import types

from sfx_cnn_veto.cli import main
from sfx_cnn_veto.core.model import VetoModel, attach_metadata, default_model_path
from sfx_cnn_veto.inspect_model import describe


def test_inspect_names_threshold_crop_center_mask_runs_metrics_and_version(tmp_path, capsys):
    path = tmp_path / "m.keras"
    shutil.copy(default_model_path(), path)
    meta = VetoModel.read_metadata(path)
    meta = dataclasses.replace(meta, threshold=0.3125, crop_center=(401.5, 377.0), use_mask=True,
                               package_version="9.8.7")
    attach_metadata(path, meta)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "threshold: 0.3125" in out
    assert "crop: 350x350 around the beam center 401.5,377 (row,col)" in out
    assert "mask: bad pixels read as background" in out
    assert "training runs: " + ", ".join(meta.training["train_runs"]) in out
    overall = meta.metrics["validation"]["overall"]
    assert f"sensitivity {100 * overall['sensitivity']:.1f}%, specificity {100 * overall['specificity']:.1f}%" in out
    assert "package version: 9.8.7" in out
    assert "calibration: none recorded" in out


def test_inspect_json_is_the_whole_metadata(capsys):
    assert main(["inspect", "--json"]) == 0  # the shipped model by default
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(VetoModel.read_metadata(default_model_path()).to_json())


def test_inspect_shows_a_recorded_calibration():
    meta = VetoModel.read_metadata(default_model_path())
    with_calibration = types.SimpleNamespace(**dict(dataclasses.asdict(meta), calibration={"method": "isotonic", "events": 173}))
    text = describe(with_calibration, "m.keras")
    assert "calibration: events 173, method isotonic" in text


def test_inspect_of_a_file_that_is_not_a_model_is_one_line_rc_1(tmp_path, capsys):
    bad = tmp_path / "x.keras"
    bad.write_text("not a zip")
    assert main(["inspect", str(bad)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
