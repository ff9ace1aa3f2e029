"""Frames of another detector than the model's training frames: scored with a warning, never silently.

Without a geometry or a beam centre such a frame is refused (test_panels_veto); with one, it is
cropped where that says and scored, and the veto warns once per frame shape; a geometry whose pixel
size or camera length differs from the training geometry's warns too.
"""

from __future__ import annotations

import warnings

import fabio.cbfimage
import numpy as np
import pytest

from sfx_cnn_veto import Veto
from sfx_cnn_veto.cli import main
from sfx_cnn_veto.core.model import ModelMetadata, VetoModel, default_model_path
from sfx_cnn_veto.core.pipeline import Preprocessor
from sfx_cnn_veto.io.geometry import parse_geometry

TRAINED_ON = "but this model was trained on (700, 700) frames"


def _other_detector_warnings(record) -> list[str]:
    return [str(w.message) for w in record if TRAINED_ON in str(w.message)]


def test_shipped_model_records_its_training_frames():
    detector = VetoModel.read_metadata(default_model_path()).training["detector"]
    assert detector["frame_shapes"] == [[700, 700]]


def test_a_noise_frame_of_another_shape_with_a_centre_is_scored_with_one_warning():
    rng = np.random.default_rng(0)
    frames = rng.poisson(3.0, (2, 1200, 1000)).astype(np.float32)
    veto = Veto.load(default_model_path(), center=(600, 500), backend="keras")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        scores = veto.score(frames)
        veto.score(frames[0])
    assert np.isfinite(scores).all()
    said = _other_detector_warnings(record)
    assert len(said) == 1 and "frames of shape (1200, 1000)" in said[0]
    # the training detector's shape with a centre: nothing to say
    same = Veto.load(default_model_path(), center=(360, 340), backend="keras")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        same.score(rng.poisson(3.0, (700, 700)).astype(np.float32))
    assert _other_detector_warnings(record) == []


def _cbf(path, shape, beam_xy):
    """A PILATUS miniCBF whose header states the beam (``Beam_xy``, x fast, y slow)."""
    frame = np.random.default_rng(1).poisson(2.0, shape).astype(np.int32)
    contents = f"# Detector: PILATUS 300K\n# Beam_xy ({beam_xy[0]:.2f}, {beam_xy[1]:.2f}) pixels\n"
    fabio.cbfimage.CbfImage(data=frame, header={"_array_data.header_convention": "PILATUS_1.2",
                                                "_array_data.header_contents": contents}).write(str(path))
    return path


def test_cbfs_of_another_detector_with_beam_xy_are_scored_with_one_warning_naming_a_file(tmp_path):
    files = [_cbf(tmp_path / f"pil_{i}.cbf", (619, 487), (243.5, 309.5)) for i in range(2)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(["score", *map(str, files), "-o", str(tmp_path / "s.csv"), "--backend", "keras"]) == 0
    said = _other_detector_warnings(record)
    assert len(said) == 1 and said[0].startswith(str(files[0])) and "(619, 487)" in said[0]


def _meta(**detector) -> ModelMetadata:
    return ModelMetadata(architecture="veto", input_shape=(350, 350, 1), crop_shape=(350, 350), normalize="despeckle",
                         training={"detector": {"frame_shapes": [[700, 700]], "panels": 1, **detector}})


def _geometry(res: float, clen: float):
    return parse_geometry(f"clen = {clen}\nres = {res}\np0/min_fs = 0\np0/max_fs = 699\np0/min_ss = 0\n"
                          "p0/max_ss = 699\np0/corner_x = -350\np0/corner_y = -350\np0/fs = +x\np0/ss = +y\n",
                          source="run.geom")


@pytest.mark.parametrize("res, clen, said", [(10000, 0.08, None), (10200, 0.081, None),
                                             (5000, 0.08, "pixel size"), (10000, 0.16, "camera length")])
def test_a_geometry_with_another_pixel_size_or_distance_than_the_training_one_warns(res, clen, said):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        Preprocessor(_meta(res=10000.0, clen=0.08), geometry=_geometry(res, clen))
    messages = [str(w.message) for w in record if "but this model was trained with" in str(w.message)]
    if said is None:
        assert messages == []
    else:
        assert len(messages) == 1 and said in messages[0] and "run.geom" in messages[0]


def test_training_records_the_geometrys_pixel_size_and_distance(tmp_path):
    from sfx_cnn_veto.training.train import _detector_provenance

    path = tmp_path / "run.geom"
    path.write_text("clen = 0.08\nres = 9090.91\np0/min_fs = 0\np0/max_fs = 99\np0/min_ss = 0\np0/max_ss = 99\n"
                    "p0/corner_x = -50\np0/corner_y = -50\np0/fs = +x\np0/ss = +y\n")
    from sfx_cnn_veto.io.geometry import read_geometry

    record = _detector_provenance([(100, 100)], read_geometry(str(path)), str(path))
    assert record["res"] == pytest.approx(9090.91) and record["clen"] == pytest.approx(0.08)
    assert _detector_provenance([(100, 100)], None, None)["res"] is None


def test_a_raw_slab_with_its_geometry_is_compared_by_its_assembled_size():
    """The eight-panel slab of the 700x700 detector is that detector (no warning); the real CSPAD is not."""
    from _real import REAL
    from sfx_cnn_veto.io.geometry import read_geometry
    from sfx_cnn_veto.simulate.panels import eight_panel_geometry

    meta = VetoModel.read_metadata(default_model_path())
    eight = eight_panel_geometry((700, 700))
    cspad = read_geometry(str(REAL / "geometry" / "jungfrau4M.geom"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        Preprocessor(meta, geometry=eight).crop_map(eight.frame_shape)
    assert _other_detector_warnings(record) == []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        Preprocessor(meta, geometry=cspad).crop_map(cspad.frame_shape, data_file="cspad.cxi")
    said = _other_detector_warnings(record)
    assert len(said) == 1 and said[0].startswith("cspad.cxi: a detector of ") and "jungfrau4M.geom" in said[0]
