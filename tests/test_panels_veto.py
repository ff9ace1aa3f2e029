"""The veto on multi-panel raw slabs: the same decisions as on the assembled frames, or a clear refusal."""

import csv

import numpy as np
import pytest

from sfx_cnn_veto import Veto
from sfx_cnn_veto.cli import main
from sfx_cnn_veto.core.model import default_model_path
from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.geometry import write_geometry
from sfx_cnn_veto.simulate.panels import assembled_good, eight_panel_geometry, to_slab
from sfx_cnn_veto.testing import spot_frames, write_cxi

GEOM_HEADER = {"data": "/entry_1/data_1/data", "dim0": "%", "dim1": "ss", "dim2": "fs", "clen": 0.08, "res": 10000}


@pytest.fixture(scope="module")
def slab_run(tmp_path_factory):
    """16 frames as a 700x700 assembled run (gaps in its CXI mask) and as an eight-panel raw slab."""
    import h5py

    tmp = tmp_path_factory.mktemp("slab")
    frames, hits = spot_frames(16, (700, 700), seed=3)
    geom = eight_panel_geometry((700, 700))
    write_cxi(tmp / "assembled.cxi", frames)
    with h5py.File(tmp / "assembled.cxi", "a") as f:
        f["/entry_1/data_1/mask"] = (~assembled_good(geom, (700, 700))).astype(np.uint16)  # CXI: nonzero = bad
    write_cxi(tmp / "slab.cxi", np.stack([to_slab(f, geom) for f in frames]))
    write_geometry(str(tmp / "slab.geom"), geom, header=GEOM_HEADER)
    for name in ("assembled", "slab"):
        (tmp / f"{name}.lst").write_text("".join(f"{tmp / name}.cxi //{i}\n" for i in range(len(frames))))
    return tmp, frames, hits


def _scores(path):
    with open(path) as handle:
        return {row["event"]: row for row in csv.DictReader(handle)}


def test_score_on_a_raw_slab_with_its_geometry_matches_the_assembled_frames(slab_run):
    tmp, frames, hits = slab_run
    assert main(["score", str(tmp / "assembled.lst"), "-o", str(tmp / "a.csv")]) == 0
    assert main(["score", str(tmp / "slab.lst"), "--geometry", str(tmp / "slab.geom"), "-o", str(tmp / "s.csv")]) == 0
    assembled, slab = _scores(tmp / "a.csv"), _scores(tmp / "s.csv")
    assert len(assembled) == len(slab) == len(frames)
    for event, row in assembled.items():
        assert abs(float(row["score"]) - float(slab[event]["score"])) < 1e-4, event
        assert row["is_hit"] == slab[event]["is_hit"]
    assert len({row["is_hit"] for row in slab.values()}) == 2  # some hits and some misses: not a trivial agreement


def test_list_geom_beside_the_list_is_used_by_default(slab_run, tmp_path):
    tmp, frames, _ = slab_run
    lst = tmp_path / "run.lst"
    lst.write_text((tmp / "slab.lst").read_text())
    (tmp_path / "run.geom").write_text((tmp / "slab.geom").read_text())
    assert main(["score", str(lst), "-o", str(tmp_path / "d.csv")]) == 0
    assert main(["score", str(tmp / "slab.lst"), "-g", str(tmp / "slab.geom"), "-o", str(tmp_path / "g.csv")]) == 0
    by_default, by_option = _scores(tmp_path / "d.csv"), _scores(tmp_path / "g.csv")
    assert by_default.keys() == by_option.keys()
    for event, row in by_default.items():  # (the auto backend may differ in the 6th decimal)
        assert abs(float(row["score"]) - float(by_option[event]["score"])) < 1e-5
    lone = tmp_path / "alone" / "run.lst"
    lone.parent.mkdir()
    lone.write_text((tmp / "slab.lst").read_text())  # no run.geom beside it: refused, so the default did matter
    assert main(["score", str(lone), "-o", str(tmp_path / "n.csv")]) != 0


def test_a_raw_slab_without_its_geometry_is_refused_naming_the_fix(slab_run, tmp_path, capsys):
    tmp, _, _ = slab_run
    lst = tmp_path / "no_geometry_beside.lst"
    lst.write_text((tmp / "slab.lst").read_text())
    rc = main(["score", str(lst), "-o", str(tmp_path / "none.csv")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "(694, 694)" in err and "--geometry" in err and "(700, 700)" in err
    rows = list(csv.DictReader(open(tmp_path / "none.csv")))
    assert len(rows) == 16 and all(r["is_hit"] == "1" for r in rows)  # every frame kept (failing open), none scored


def test_a_3d_frame_without_a_geometry_is_refused_naming_the_fix():
    veto = Veto.load(default_model_path(), backend="keras")
    [decision] = veto.decide([np.zeros((8, 512, 1024), dtype=np.float32)])
    assert decision.is_hit and "3-D per event" in decision.error and "--geometry" in decision.error


def test_a_known_raw_slab_shape_is_refused_even_with_a_model_of_unknown_provenance():
    veto = Veto.load(default_model_path(), backend="keras", center=(740.0, 776.0))
    [decision] = veto.decide([np.zeros((1480, 1552), dtype=np.float32)])
    assert decision.is_hit and "CSPAD" in decision.error and "--geometry" in decision.error


def test_panel_planes_per_event_are_read_through_the_geometry(slab_run, tmp_path):
    """A (panels, ss, fs) frame per event (psana's calib layout) gives the same scores as the 2-D slab."""
    from dataclasses import replace

    from sfx_cnn_veto.io.geometry import Geometry

    tmp, frames, _ = slab_run
    geom = eight_panel_geometry((700, 700))
    nss, nfs = geom.panels[0].shape
    planes = Geometry(tuple(replace(p, min_ss=0, max_ss=nss - 1, min_fs=0, max_fs=nfs - 1, plane=(i,))
                            for i, p in enumerate(geom.panels)), source="planes")
    stacked = np.stack([np.stack([to_slab(f, geom)[p.min_ss:p.max_ss + 1, p.min_fs:p.max_fs + 1]
                                  for p in geom.panels]) for f in frames[:4]])
    assert stacked.shape == (4, 8, nss, nfs)
    write_cxi(tmp_path / "planes.cxi", stacked)
    write_geometry(str(tmp_path / "planes.geom"), planes)
    (tmp_path / "planes.lst").write_text("".join(f"{tmp_path}/planes.cxi //{i}\n" for i in range(4)))
    assert main(["score", str(tmp_path / "planes.lst"), "-o", str(tmp_path / "p.csv")]) == 0
    by_planes = _scores(tmp_path / "p.csv")
    main(["score", str(tmp / "slab.lst"), "-g", str(tmp / "slab.geom"), "-o", str(tmp_path / "s.csv")])
    by_slab = _scores(tmp_path / "s.csv")
    for i in range(4):
        assert abs(float(by_planes[f"//{i}"]["score"]) - float(by_slab[f"//{i}"]["score"])) < 1e-6
    # the Python API: one (panels, ss, fs) frame is one frame, a stack of them a stack
    veto = Veto.load(default_model_path(), geometry=planes, backend="keras")
    one = veto.score(stacked[1])
    assert isinstance(one, float) and abs(one - float(by_slab["//1"]["score"])) < 1e-5
    assert veto.score(stacked).shape == (4,)


@pytest.mark.parametrize("dtype, gap", [(np.uint32, 0xFFFFFFFF), (np.uint16, 0xFFFF), (np.int32, -1), (np.int32, -2)])
def test_integer_gap_and_bad_pixel_values_read_as_masked_pixels(dtype, gap):
    frames, _ = spot_frames(2, (700, 700), seed=5, hits=[True, False])
    frames = np.round(frames).astype(dtype)
    holes = np.zeros((700, 700), dtype=bool)
    holes[340:360, :] = True  # a gap row band through the crop, as between PILATUS/Eiger modules
    holes[200:210, 200:300] = True
    with_values = frames.copy()
    with_values[:, holes] = gap
    veto = Veto.load(default_model_path(), backend="keras", file_masks=False)
    masked = Veto.load(default_model_path(), backend="keras", mask=~holes)
    got = veto.score(with_values)
    want = masked.score(frames)
    assert np.allclose(got, want, atol=1e-6), (got, want)
    assert not np.allclose(veto.score(frames), got, atol=1e-3)  # the holes matter, so the test can fail


def test_a_cbf_frames_beam_xy_is_the_default_crop_centre(tmp_path):
    """A PILATUS CBF of another size than the model's frames: its header's Beam_xy places the crop."""
    fabio = pytest.importorskip("fabio")
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    frames, _ = spot_frames(1, (700, 700), seed=8, hits=[True])
    big = np.full((1000, 900), 10, dtype=np.int32)
    big[200:900, 150:850] = np.round(frames[0]).astype(np.int32)  # the beam at (550, 500)
    big[:, 480:487] = -1  # a PILATUS module gap through the crop
    image = fabio.cbfimage.CbfImage(data=big)
    image.header["_array_data.header_convention"] = "PILATUS_1.2"
    image.header["_array_data.header_contents"] = "# Beam_xy (500.00, 550.00) pixels\r\n# Wavelength 1.0 A\r\n"
    image.write(str(tmp_path / "f.cbf"))
    veto = Veto.load(default_model_path(), backend="keras")
    with FrameStore() as store:
        [(ref, decision)] = list(veto.stream_events(iter_events([str(tmp_path / "f.cbf")], store), store))
    gap = np.zeros((700, 700), dtype=bool)
    gap[:, 480 - 150:487 - 150] = True
    want = Veto.load(default_model_path(), backend="keras", mask=~gap).score(np.round(frames).astype(np.int32))
    assert decision.ok and abs(decision.score - want[0]) < 1e-5
    with FrameStore() as store:  # the same frame cropped at the frame centre scores otherwise
        off = Veto.load(default_model_path(), backend="keras", center=(500.0, 450.0))
        [(_, other)] = list(off.stream_events(iter_events([str(tmp_path / "f.cbf")], store), store))
    assert abs(other.score - decision.score) > 1e-3


def test_a_model_trained_on_raw_slabs_is_refused_without_the_geometry():
    from dataclasses import replace

    from sfx_cnn_veto.core.model import VetoModel

    shipped = VetoModel.load(default_model_path())
    training = dict(shipped.metadata.training, detector={"frame_shapes": [[694, 694]], "geometry": "slab.geom",
                                                         "panels": 8})
    slab_model = VetoModel(shipped.keras_model, replace(shipped.metadata, training=training))
    with pytest.raises(ConfigError, match="8-panel detector.*slab.geom.*--geometry"):
        Veto(slab_model, backend="keras")
    Veto(slab_model, backend="keras", geometry=eight_panel_geometry((700, 700)))  # with it: fine


def test_frames_in_memory_with_a_geometry_whose_mask_lives_in_each_data_file_are_decided(tmp_path):
    """CrystFEL's 'mask = /entry_1/data_1/mask' with no mask_file: in memory, the caller's mask stands in."""
    geom = eight_panel_geometry((700, 700))
    write_geometry(str(tmp_path / "g.geom"), geom, header={"mask": "/entry_1/data_1/mask", "mask_bad": "0x1"})
    frames, _ = spot_frames(2, (700, 700), seed=4, hits=[True, False])
    slabs = np.stack([to_slab(f, geom) for f in frames])
    veto = Veto.load(default_model_path(), backend="keras", geometry=str(tmp_path / "g.geom"))
    with pytest.warns(UserWarning, match="read from each data file"):
        decisions = veto.decide(slabs)
    assert all(d.ok for d in decisions)
