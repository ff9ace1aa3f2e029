"""CrystFEL geometries (io/geometry.py) and the crop maps built from them (core/crop.py)."""

from pathlib import Path

import numpy as np
import pytest

from sfx_cnn_veto.core.crop import CropMapper, geometry_map, rectangle_map
from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.geometry import format_geometry, parse_geometry, parse_vector, read_geometry, single_panel_geometry
from sfx_cnn_veto.simulate.panels import assembled_good, eight_panel_geometry, to_slab

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "geometry"


def test_real_cxi_cspad_geometry_has_64_tilted_panels_in_a_1480x1552_slab():
    geom = read_geometry(str(REAL / "jungfrau4M.geom"))
    assert len(geom.panels) == 64
    assert geom.frame_shape == (1480, 1552)
    assert {p.shape for p in geom.panels} == {(185, 194)}
    assert any(0 < min(abs(p.fs[0]), abs(p.fs[1])) < 0.01 for p in geom.panels), "near-axis vectors were rounded"
    assert geom.reference_res == pytest.approx(9097.52)
    assert geom.beam_center() is None  # many panels: no single beam centre in the slab


def test_real_epix10k2m_geometry_has_turned_panels_and_no_index_keys():
    geom = read_geometry(str(REAL / "epix10k2M.geom"))
    assert len(geom.panels) == 64 and geom.frame_shape == (5632, 384)
    first = geom.panel("p0a0")
    assert first.fs == pytest.approx((-0.003266, -0.999993)) and first.ss == pytest.approx((0.999994, -0.003263))
    assert not any(p.no_index for p in geom.panels)  # every panel says no_index = 0


def test_real_pilatus_geometry_beam_centre_follows_the_pixel_convention():
    geom = read_geometry(str(REAL / "pilatus.geom"))
    assert geom.frame_shape == (2527, 2463)
    assert geom.beam_center() == (1240.0, 1257.0)  # -corner: pixel i spans [i, i + 1)


@pytest.mark.parametrize("text, vector", [("+1.0x", (1.0, 0.0)), ("-y", (0.0, -1.0)), ("x", (1.0, 0.0)),
                                          ("-0.003266x -0.999993y", (-0.003266, -0.999993)),
                                          ("+0.0031x +1.0000y +0.0z", (0.0031, 1.0))])
def test_direction_vectors_parse_in_every_form_crystfel_writes(text, vector):
    assert parse_vector(text) == pytest.approx(vector)


def test_unreadable_geometry_lines_are_errors_naming_the_panel():
    with pytest.raises(ConfigError, match="panel p0.*missing max_ss"):
        parse_geometry("p0/min_fs = 0\np0/max_fs = 9\np0/min_ss = 0\n")
    with pytest.raises(ConfigError, match="cannot read direction"):
        parse_geometry("p0/min_fs = 0\np0/max_fs = 9\np0/min_ss = 0\np0/max_ss = 9\np0/fs = +1.0q\n")
    with pytest.raises(ConfigError, match="no panels"):
        parse_geometry("clen = 0.1\n")


def test_crop_map_of_the_real_cspad_points_each_crop_pixel_at_the_raw_pixel_covering_it():
    geom = read_geometry(str(REAL / "jungfrau4M.geom"))
    cmap = geometry_map(geom, geom.frame_shape, (350, 350))
    x, y = geom.pixel_maps()
    crop_x = cmap(x)
    crop_y = cmap(y)
    ii, jj = np.mgrid[0:350, 0:350]
    want_x, want_y = jj + 0.5 - 175, ii + 0.5 - 175
    covered = cmap.good
    distance = np.hypot(crop_x - want_x, crop_y - want_y)[covered]
    assert distance.max() <= np.sqrt(0.5) + 1e-6  # within the raw pixel's (slightly tilted) square
    assert 0.05 < cmap.bad_fraction < 0.4  # the real detector's gaps around the beam
    assert cmap.region is not None and cmap.index is not None


def test_eight_panel_slab_gives_the_assembled_crop_with_its_gaps_masked():
    geom = eight_panel_geometry((700, 700))
    assert sum(p.fs in ((0.0, 1.0), (0.0, -1.0)) for p in geom.panels) == 4  # four turned panels
    frame = np.random.default_rng(0).random((700, 700)).astype(np.float32)
    slab = to_slab(frame, geom)
    cmap = geometry_map(geom, slab.shape, (350, 350))
    gaps = ~assembled_good(geom, (700, 700))[175:525, 175:525]
    assert gaps.any() and np.array_equal(cmap.good, ~gaps)
    assert np.array_equal(cmap(slab)[~gaps], rectangle_map((700, 700))(frame)[~gaps])


def test_a_single_panel_geometry_is_the_rectangle_around_its_beam():
    frame = np.arange(400 * 500, dtype=np.float32).reshape(400, 500)
    for center in [(200.0, 250.0), (180.0, 300.0), (180.5, 300.5)]:
        by_geometry = geometry_map(single_panel_geometry(frame.shape, center), frame.shape, (100, 120))
        rectangle = rectangle_map(frame.shape, (100, 120), center)
        assert by_geometry.good is None
        assert np.array_equal(by_geometry(frame), rectangle(frame)), center


def test_geometry_text_written_reads_back_the_same_panels():
    geom = eight_panel_geometry((700, 700), res=5000.0)
    again = parse_geometry(format_geometry(geom, header={"clen": 0.1, "dim0": "%", "dim1": "ss", "dim2": "fs"}))
    assert again.panels == geom.panels and again.globals["clen"] == "0.1"


def test_bad_regions_no_index_panels_and_mask_bits_make_bad_crop_pixels(tmp_path):
    import h5py

    mask = np.zeros((100, 200), dtype=np.uint16)
    mask[10:20, 10:20] = 4  # bit 2 set: bad
    with h5py.File(tmp_path / "mask.h5", "w") as f:
        f["/m"] = mask
    text = (f"mask_file = {tmp_path / 'mask.h5'}\nmask = /m\nmask_bad = 0x4\n"
            "a/min_fs = 0\na/max_fs = 99\na/min_ss = 0\na/max_ss = 99\na/corner_x = -100\na/corner_y = -50\n"
            "b/min_fs = 100\nb/max_fs = 199\nb/min_ss = 0\nb/max_ss = 99\nb/corner_x = 0\nb/corner_y = -50\n"
            "b/no_index = 1\n"
            "bad_beamstop/min_x = -5\nbad_beamstop/max_x = 5\nbad_beamstop/min_y = -5\nbad_beamstop/max_y = 5\n")
    geom = parse_geometry(text)
    good = geom.good_pixels((100, 200))
    assert not good[:, 100:].any()                       # the no_index panel
    assert not good[10:20, 10:20].any()                  # mask bit
    assert not good[45:55, 95:100].any()                 # the beam stop, lab |x|, |y| <= 5
    assert good[60:, :90].all()
    cmap = CropMapper((40, 40), geometry=geom)((100, 200))
    assert not cmap.good[:, 20:].any() and cmap.good[:, :14].all()


def test_a_geometry_too_big_for_the_frames_is_refused_naming_both_shapes():
    geom = eight_panel_geometry((700, 700))
    with pytest.raises(ConfigError, match=r"\(600, 694\).*\(694, 694\)"):
        geometry_map(geom, (600, 694), (350, 350))


def test_beam_centre_and_geometry_together_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        CropMapper((350, 350), geometry=eight_panel_geometry(), center=(1.0, 2.0))
