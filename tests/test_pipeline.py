"""The public API: Veto.load, score, decide, stream, stream_events; failing open."""

import numpy as np
import pytest

from sfx_cnn_veto import Decision, Veto
from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.store import FrameStore, iter_events
from sfx_cnn_veto.testing import spot_frames, write_cxi


@pytest.fixture(scope="module")
def veto(paper_model_file):
    return Veto.load(paper_model_file, batch_size=4)


def test_score_matches_direct_keras_call(veto):
    frames, _ = spot_frames(6, (500, 500))
    scores = veto.score(frames)
    crops = np.stack([veto.preprocess(f) for f in frames])[..., None]
    direct = veto.model.keras_model(crops, training=False).numpy()[:, 1]
    np.testing.assert_allclose(scores, direct, atol=1e-5)
    assert scores.shape == (6,)


def test_one_2d_frame_is_one_frame_not_a_stack_of_rows(veto):
    """``veto.score(frame)`` used to score each of a 500x500 frame's rows as a frame (500 NaNs)."""
    frames, _ = spot_frames(3, (500, 500), seed=4, hits=[True, False, True])
    one = veto.score(frames[0])
    assert isinstance(one, float) and one == pytest.approx(veto.score(frames)[0], abs=1e-6)
    decision = veto.decide(frames[2])
    assert isinstance(decision, Decision) and decision.ok
    crop = veto.preprocess(frames[1])
    assert veto.score(crop, cropped=True) == pytest.approx(veto.score(frames)[1], abs=1e-6)
    assert veto.score(list(frames)).shape == veto.score(frames).shape == (3,)   # a stack stays a stack


def test_an_array_that_is_no_frame_is_refused_in_one_line(veto):
    from sfx_cnn_veto.errors import FrameReadError

    with pytest.raises(FrameReadError, match=r"expected one frame \(2-D\) or a stack of them, got .*\(500,\)"):
        veto.score(np.zeros(500, np.float32))
    with pytest.raises(FrameReadError, match="got an array of shape"):
        veto.score(np.zeros((2, 3, 400, 400), np.float32))


def test_decide_uses_the_threshold(veto, paper_model_file):
    frames, _ = spot_frames(5, (400, 400), seed=3)
    scores = veto.score(frames)
    low = Veto.load(paper_model_file, threshold=0.0).decide(frames)
    high = Veto.load(paper_model_file, threshold=1.0).decide(frames)
    assert all(d.is_hit for d in low)
    assert not any(d.is_hit for d in high if d.score < 1.0)
    assert [d.score for d in low] == pytest.approx(list(scores), abs=1e-6)


def test_stream_batches_and_keeps_order_and_every_frame(veto):
    frames, _ = spot_frames(11, (400, 400), seed=4)
    items = [(f"k{i}", f) for i, f in enumerate(frames)]
    items.insert(3, ("bad-shape", np.zeros((10, 10))))
    items.insert(7, ("nan", np.full((400, 400), np.nan)))
    items.insert(9, ("upstream", OSError("disk gone")))
    out = list(veto.stream(items))
    assert [k for k, _ in out] == [k for k, _ in items]
    by_key = dict(out)
    for key in ("bad-shape", "nan", "upstream"):
        d = by_key[key]
        assert d.error and d.is_hit and np.isnan(d.score)  # fail open
    assert "smaller than the 350x350 crop" in by_key["bad-shape"].error
    assert "disk gone" in by_key["upstream"].error
    assert all(d.ok for k, d in out if k.startswith("k"))


def test_non_finite_network_output_is_an_error_not_a_miss(veto):
    d = veto.make_decision(float("nan"))
    assert d == Decision(d.score, True, d.error) and "non-finite" in d.error
    assert veto.make_decision(0.01).is_hit is False


def test_backend_crash_fails_open(paper_model_file):
    veto = Veto.load(paper_model_file)

    class Broken:
        def predict(self, batch):
            raise RuntimeError("GPU fell off")

    veto.classifier = Broken()
    frames, _ = spot_frames(3, (400, 400))
    decisions = veto.decide(frames)
    assert all(d.is_hit and "GPU fell off" in d.error for d in decisions)


def test_stream_events_reads_only_the_crop_and_matches_in_memory(tmp_path, veto, monkeypatch):
    frames, _ = spot_frames(5, (700, 700), seed=5)
    path = write_cxi(tmp_path / "r.cxi", frames)
    (tmp_path / "in.lst").write_text(f"{path}\n{tmp_path / 'gone.cxi'} //0\n")
    regions = []
    from sfx_cnn_veto.io import hdf5

    original = hdf5.HDF5Source.read

    def spy(self, event, region=None):
        regions.append(region)
        return original(self, event, region)

    monkeypatch.setattr(hdf5.HDF5Source, "read", spy)
    with FrameStore() as store:
        out = list(veto.stream_events(iter_events([str(tmp_path / "in.lst")], store), store))
    assert [str(r) for r, _ in out][:5] == [f"{path} //{i}" for i in range(5)]
    assert out[5][1].error and "file not found" in out[5][1].error
    assert all(r == (slice(175, 525), slice(175, 525)) for r in regions)
    np.testing.assert_allclose([d.score for _, d in out[:5]], veto.score(frames), atol=1e-6)


def test_beam_centre_override(paper_model_file):
    veto = Veto.load(paper_model_file, center=(300, 310))
    assert veto.preprocess.region((700, 700)) == (slice(125, 475), slice(135, 485))


@pytest.fixture(scope="module")
def masked_and_raw(paper_model_file):
    """The same network twice: trained with masks (``use_mask``) and without."""
    from dataclasses import replace

    from sfx_cnn_veto.core.model import VetoModel

    base = VetoModel.load(paper_model_file)
    masked = VetoModel(base.keras_model, replace(base.metadata, normalize="despeckle", use_mask=True))
    raw = VetoModel(base.keras_model, replace(base.metadata, normalize="despeckle", use_mask=False))
    return masked, raw


def _hot_block(frames):
    """Frames with a bright 2x2 hot block in the crop (despeckle keeps it), and the mask that knows it."""
    hot = frames.copy()
    hot[:, 300:302, 400:402] = 5000.0
    good = np.ones(frames.shape[1:], dtype=np.uint8)
    good[300:302, 400:402] = 0
    return hot, good


def test_models_trained_with_masks_see_masked_pixels_as_background(masked_and_raw):
    masked, raw = masked_and_raw
    frames, _ = spot_frames(3, (700, 700), seed=7)
    hot, good = _hot_block(frames)
    veto = Veto(masked, mask=good, backend="keras")
    x_hot = veto.preprocess(hot[0], good=good)
    x_clean = veto.preprocess(frames[0], good=good)
    assert np.array_equal(x_hot, x_clean)  # the hot block is gone: masked either way
    assert np.all(x_hot[300 - 175:302 - 175, 400 - 175:402 - 175] == 0.0)
    before = hot.copy()
    np.testing.assert_array_equal(veto.score(hot), veto.score(frames))
    assert np.array_equal(hot, before)  # the caller's frames are never written into
    # a model trained on raw frames ignores the mask: the hot block reaches its network
    with pytest.warns(UserWarning, match="raw frames"):
        veto_raw = Veto(raw, mask=good, backend="keras")
    assert not np.array_equal(veto_raw.preprocess(hot[0]), veto_raw.preprocess(frames[0]))
    with pytest.raises(Exception, match="mask of shape"):
        veto.preprocess(hot[0], good=np.ones((10, 10), bool))


def test_stream_events_uses_each_cxi_files_own_mask(tmp_path, masked_and_raw):
    import h5py

    masked, _ = masked_and_raw
    frames, _ = spot_frames(3, (700, 700), seed=8)
    hot, good = _hot_block(frames)
    path = write_cxi(tmp_path / "m.cxi", hot)
    with h5py.File(path, "a") as handle:
        handle["/entry_1/data_1/mask"] = (good == 0).astype(np.uint16)  # CXI: nonzero = bad
    expected = Veto(masked, mask=good, backend="keras").score(hot)
    unmasked = Veto(masked, file_masks=False, backend="keras")
    for veto, want in ((Veto(masked, backend="keras"), expected), (unmasked, unmasked.score(hot))):
        with FrameStore() as store:
            out = list(veto.stream_events(iter_events([path], store), store))
        np.testing.assert_allclose([d.score for _, d in out], want, atol=1e-6)
    assert not np.allclose(expected, unmasked.score(hot), atol=1e-6)


def test_a_mask_marking_most_of_the_crop_bad_is_refused_naming_both_conventions(masked_and_raw):
    masked, _ = masked_and_raw
    frames, _ = spot_frames(2, (700, 700), seed=9)
    good = np.ones((700, 700), dtype=bool)
    good[175:525, 175:525] = False  # the whole crop: an inverted mask looks like this
    with pytest.raises(ConfigError, match=r"100% of the crop bad.*--mask takes nonzero = good.*nonzero = bad"):
        Veto(masked, mask=good, backend="keras").decide(frames)
    good[175:525, 175:525] = True
    good[175:315, 175:525] = False  # 40% bad: used, and the frames are decided
    decisions = Veto(masked, mask=good, backend="keras").decide(frames)
    assert all(d.ok for d in decisions)
