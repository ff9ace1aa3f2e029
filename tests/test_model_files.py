"""Model files: .keras with metadata inside; safe loading; clear refusals."""

import json
import zipfile

import numpy as np
import pytest

from sfx_cnn_veto import FrameReadError, ModelFormatError
from sfx_cnn_veto.core.model import METADATA_NAME, ModelMetadata, VetoModel, attach_metadata


def test_round_trip_restores_preprocessing(tmp_path, paper_model_file):
    meta = VetoModel.read_metadata(paper_model_file)
    assert meta.architecture == "paper"
    assert meta.crop_shape == (350, 350) and meta.normalize == "standardize"
    assert meta.class_order == ("miss", "hit") and meta.created
    loaded = VetoModel.load(paper_model_file)
    assert loaded.metadata == meta
    assert loaded.keras_model.count_params() > 11098


def test_lambda_layers_are_refused_never_run(tmp_path):
    import keras

    marker = tmp_path / "ran"
    inputs = keras.Input((350, 350, 1))
    path_text = str(marker)
    x = keras.layers.Lambda(lambda t: (open(path_text, "w").close(), t * 2)[1])(inputs)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    meta = ModelMetadata(architecture="evil", input_shape=(350, 350, 1), crop_shape=(350, 350))
    path = VetoModel(model, meta).save(tmp_path / "evil.keras")
    marker.unlink()  # building the model ran it once; loading must not
    with pytest.raises(ModelFormatError, match="Lambda"):
        VetoModel.load(path)
    assert not marker.exists()


def test_corrupt_and_foreign_files(tmp_path, paper_model_file):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFormatError, match="not a zip"):
        VetoModel.load(junk)
    with pytest.raises(ModelFormatError, match="model file not found"):
        VetoModel.load(tmp_path / "none.keras")
    # a Keras file without our metadata
    bare = tmp_path / "bare.keras"
    with zipfile.ZipFile(paper_model_file) as src, zipfile.ZipFile(bare, "w") as dst:
        for item in src.infolist():
            if item.filename != METADATA_NAME:
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(ModelFormatError, match="without sfx-cnn-veto metadata"):
        VetoModel.load(bare)
    # truncated weights
    cut = tmp_path / "cut.keras"
    cut.write_bytes(open(paper_model_file, "rb").read()[:5000])
    with pytest.raises(ModelFormatError):
        VetoModel.load(cut)


def test_metadata_that_does_not_match_the_network(tmp_path, paper_model_file):
    path = tmp_path / "m.keras"
    path.write_bytes(open(paper_model_file, "rb").read())
    attach_metadata(path, ModelMetadata(architecture="paper", input_shape=(200, 200, 1), crop_shape=(200, 200)))
    with pytest.raises(ModelFormatError, match=r"input \(200, 200, 1\), the network takes \(350, 350, 1\)"):
        VetoModel.load(path)
    with pytest.raises(ModelFormatError, match="does not match the network input"):
        ModelMetadata.from_dict({"architecture": "x", "input_shape": [350, 350, 1], "crop_shape": [300, 300]})
    with pytest.raises(ModelFormatError, match="unknown metadata keys"):
        ModelMetadata.from_dict({"architecture": "x", "input_shape": [350, 350, 1], "crop_shape": [350, 350],
                                 "surprise": 1})


def test_frame_smaller_than_model_crop_is_a_clear_error(paper_model_file):
    meta = VetoModel.read_metadata(paper_model_file)
    with pytest.raises(FrameReadError, match=r"frame of shape \(300, 300\) does not fit this model's 350x350 crop"):
        meta.check_frame_shape((300, 300), source="a.cxi //0")


def test_metadata_is_plain_json_inside_the_archive(paper_model_file):
    with zipfile.ZipFile(paper_model_file) as archive:
        data = json.loads(archive.read(METADATA_NAME))
    assert data["input_shape"] == [350, 350, 1]
    assert data["threshold"] == 0.5


def test_saved_and_retagged_models_follow_the_umask_not_0600(tmp_path):
    import os
    import stat

    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalMaxPooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    meta = ModelMetadata(architecture="tiny", input_shape=(8, 8, 1), crop_shape=(8, 8))
    old = os.umask(0o022)
    try:
        path = VetoModel(model, meta).save(tmp_path / "tiny.keras")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        os.umask(0o027)
        attach_metadata(path, meta)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    finally:
        os.umask(old)
