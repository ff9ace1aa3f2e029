"""psana multi-panel detectors: ``calib``/``raw`` arrays ``(panels, ss, fs)`` cropped through the geometry.

Everything runs on the real psana2 4.3.4: xtc2 files written by
``psana.dgramedit`` and read by ``DataSource``; psana's own ``GeometryAccess``
and JUNGFRAU detector class (its default geometry, offline). The veto's
answers are checked against ``Veto(geometry=...)`` on the same slabs, against
the simulated assembled frames with the gaps masked, and (JUNGFRAU) against
a crop rasterized straight from psana's pixel centres and its wide-pixel sizes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_psana_adapter import _import_psana, needs_psana

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_FRAMES = 10
SCORE_TOL = 1e-4


@pytest.fixture(scope="module")
def ps():
    return _import_psana()


@pytest.fixture(scope="module")
def assembled():
    """Simulated assembled 700x700 frames (beam at the centre), hits and misses."""
    from sfx_cnn_veto.simulate import default_experiment, simulate_run

    exp = default_experiment()
    run = exp.run("run90")
    return [frame for frame, _ in simulate_run(run, exp.run_seed(run), N_FRAMES)]


@pytest.fixture(scope="module")
def veto(paper_model_file):
    from sfx_cnn_veto.core.pipeline import Veto

    return Veto.load(paper_model_file, batch_size=4, backend="keras")


def plane_geometry():
    """The simulator's eight-panel detector, each panel on its own plane: frames are (8, 169, 344)."""
    from dataclasses import replace

    from sfx_cnn_veto.io.geometry import Geometry
    from sfx_cnn_veto.simulate.panels import eight_panel_geometry

    flat = eight_panel_geometry((700, 700), res=1e6 / 75)
    shapes = {p.shape for p in flat.panels}
    assert len(shapes) == 1, shapes  # one plane shape, as psana's segments have
    panels = tuple(replace(p, min_fs=0, max_fs=p.shape[1] - 1, min_ss=0, max_ss=p.shape[0] - 1, plane=(k,))
                   for k, p in enumerate(flat.panels))
    return Geometry(panels, source="eight planes")


def split_threshold(veto, scores):
    """A threshold in the widest gap between the scores away from the extremes (some hits, some misses)."""
    ordered = np.sort(np.asarray(scores))
    gaps = np.diff(ordered)
    k = int(np.argmax(gaps[1:-1])) + 1
    return float((ordered[k] + ordered[k + 1]) / 2)


def assert_same(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.error is None and w.error is None, (i, g.error, w.error)
        assert abs(g.score - w.score) <= SCORE_TOL, (i, g.score, w.score)
        assert g.is_hit == w.is_hit, (i, g.score, w.score)


# ---------------------------------------------------------------------------
# a rank-3 Opal field and a CrystFEL geometry with one plane per panel

@pytest.fixture(scope="module")
def panel_run(ps, tmp_path_factory, assembled):
    """xtc2 of (8, 169, 344) float32 slabs (plus one event without data), and the .geom with dim1 planes."""
    from sfx_cnn_veto.io.geometry import write_geometry
    from sfx_cnn_veto.simulate.panels import to_slab
    from sfx_cnn_veto_psana.xtc import write_xtc2

    where = tmp_path_factory.mktemp("panels")
    geometry = plane_geometry()
    slabs = [to_slab(frame, geometry) for frame in assembled]
    assert slabs[0].shape == (8, 169, 344)
    geom = str(where / "eight.geom")
    write_geometry(geom, geometry, header={"dim0": "%", "dim2": "ss", "dim3": "fs", "clen": 0.1})
    xtc2 = str(where / "panels.xtc2")
    write_xtc2(xtc2, slabs[:4] + [None] + slabs[4:], detector_name="epixsim")
    return xtc2, geom, slabs


def _run(path, name):
    from psana import DataSource

    run = next(DataSource(files=[path], skip_calib_load="all").runs())
    return run, run.Detector(name)


@needs_psana
def test_psana_returns_the_rank3_slabs(panel_run):
    """What dgramedit wrote as a rank-3 field, psana's calib and raw return as (panels, ss, fs)."""
    xtc2, _, slabs = panel_run
    run, det = _run(xtc2, "epixsim")
    frames = [det.raw.calib(evt) for evt in run.events()]
    assert frames[4] is None
    for got, want in zip(frames[:4] + frames[5:], slabs):
        assert got.shape == (8, 169, 344)
        np.testing.assert_array_equal(got, want)


@needs_psana
@pytest.mark.parametrize("source", ["calib", "raw"])
def test_panels_with_crystfel_geometry_match_slabs_and_assembled(panel_run, assembled, veto, source):
    """PsanaVeto on (8, ss, fs) frames with a .geom decides as Veto(geometry) on the slabs and as the
    assembled frames with the gaps masked (scores within 1e-4); the event without data is kept as an error."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.simulate.panels import assembled_good
    from sfx_cnn_veto_psana import PsanaVeto

    xtc2, geom, slabs = panel_run
    by_geometry = Veto(veto.model, geometry=geom, backend="keras")
    on_slabs = by_geometry.decide(slabs)
    veto.threshold = by_geometry.threshold = split_threshold(veto, [d.score for d in on_slabs])
    on_slabs = by_geometry.decide(slabs)
    gaps = assembled_good(plane_geometry(), (700, 700))
    assert 0.01 < 1 - gaps.mean() < 0.2  # the gaps are really there
    on_assembled = [d for _, d in veto.stream((i, f, gaps) for i, f in enumerate(assembled))]
    assert_same(on_slabs, on_assembled)
    assert {d.is_hit for d in on_slabs} == {True, False}

    run, det = _run(xtc2, "epixsim")
    pv = PsanaVeto(veto, detector=det, source=source, geometry=geom)
    out = [d for _, d in pv.events(run, batch_size=3)]
    assert out[4].error and "None" in out[4].error and out[4].is_hit
    assert_same(out[:4] + out[5:], on_slabs)
    assert pv.geometry_origin == "user" and pv.center_origin == "geometry"
    assert veto.preprocess.geometry is None  # the veto itself was not changed


@needs_psana
def test_panels_without_geometry_are_error_events(panel_run, veto):
    """(panels, ss, fs) frames and no geometry anywhere (an Opal has none in psana): every event an error
    decision with a one-line reason naming both fixes, kept (fail open); nothing cropped silently."""
    from sfx_cnn_veto_psana import PsanaVeto

    xtc2, _, slabs = panel_run
    run, det = _run(xtc2, "epixsim")
    pv = PsanaVeto(veto, detector=det, source="calib")
    out = [d for _, d in pv.events(run)]
    assert len(out) == len(slabs) + 1
    for d in out:
        assert d.is_hit and d.error and np.isnan(d.score) and "\n" not in d.error
    reasons = {d.error for d in out} - {out[4].error}
    assert len(reasons) == 1
    reason = reasons.pop()
    assert "geometry=" in reason and "source='image'" in reason and "(segments, ss, fs)" in reason


@needs_psana
def test_centre_with_a_geometry_is_refused(panel_run, jungfrau_run, veto):
    """A (row, col) centre means nothing once a geometry places the beam: a set-up error, not a shifted
    crop; at once with geometry=, on the first frame with psana's own geometry."""
    from sfx_cnn_veto.errors import ConfigError
    from sfx_cnn_veto_psana import PsanaVeto

    xtc2, geom, _ = panel_run
    run, det = _run(xtc2, "epixsim")
    with pytest.raises(ConfigError, match="corner_x"):
        PsanaVeto(veto, detector=det, source="calib", geometry=geom, center=(300.0, 300.0))
    run, det = _run(jungfrau_run[0], "jungfrau")
    pv = PsanaVeto(veto, detector=det, source="raw", center=(300.0, 300.0))
    with pytest.raises(ConfigError, match="corner_x"):
        list(pv.events(run))


@needs_psana
def test_geometry_applies_to_2d_frames_too(ps, tmp_path, veto):
    """geometry= with 2-D frames is used, not ignored: a single panel with the beam off the frame centre
    decides as Veto(center=...) at that beam position, not as the frame-centre crop."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.io.geometry import single_panel_geometry, write_geometry
    from sfx_cnn_veto_psana import PsanaVeto
    from sfx_cnn_veto_psana.frames import toy_frames
    from sfx_cnn_veto_psana.xtc import write_xtc2

    frames, _ = toy_frames(6, shape=(400, 400), seed=5)
    xtc2, geom = str(tmp_path / "flat.xtc2"), str(tmp_path / "flat.geom")
    write_xtc2(xtc2, frames, detector_name="cam")
    write_geometry(geom, single_panel_geometry((400, 400), center=(180.0, 220.0)))
    at_beam = Veto(veto.model, center=(180.0, 220.0), backend="keras").decide(list(frames))
    at_centre = veto.decide(list(frames))
    assert max(abs(a.score - b.score) for a, b in zip(at_beam, at_centre)) > 10 * SCORE_TOL
    run, det = _run(xtc2, "cam")
    pv = PsanaVeto(veto, detector=det, source="calib", geometry=geom)
    out = [d for _, d in pv.events(run)]
    for got, want in zip(out, at_beam):
        assert got.error is None and abs(got.score - want.score) <= SCORE_TOL
    assert pv.geometry_origin == "user" and pv.center_origin == "geometry"


# ---------------------------------------------------------------------------
# a real psana JUNGFRAU (2 modules): psana's own default geometry, no geometry given

def jungfrau1m_coords():
    """psana's default JUNGFRAU 1M geometry file, read by psana's GeometryAccess: LAB-frame x, y (um)."""
    import psana.pscalib.geometry.GeometryAccess as ga

    path = os.path.join(os.path.dirname(ga.__file__), "data", "geometry-def-jungfrau1M.data")
    geo = ga.GeometryAccess(path)
    x, y, _ = geo.get_pixel_coords(cframe=1)
    return x, y, geo.get_pixel_scale_size()


#: psana 4.3.4 SegGeometryJungfrauV2.correct_wide_pixel_size: these columns and rows are 150 um wide
JF_WIDE_COLS = (255, 256, 511, 512, 767, 768)
JF_WIDE_ROWS = (255, 256)


def rasterized_crop_index(x, y, pixel, shape=(350, 350)):
    """Flat raw index of the pixel covering each crop pixel centre (-1: gap), painted pixel by pixel
    from psana's centres and JUNGFRAU's pixel sizes; independent of the tiles the adapter builds."""
    x, y = x / pixel, y / pixel
    wfs = np.ones(x.shape[-1])
    wfs[list(JF_WIDE_COLS)] = 2.0
    wss = np.ones(x.shape[-2])
    wss[list(JF_WIDE_ROWS)] = 2.0
    index = np.full(shape, -1, dtype=np.int64)
    painted = np.zeros(shape, dtype=np.int64)
    h, w = shape
    for module in range(x.shape[0]):
        mx, my = x[module], y[module]
        fs_along_x = abs(mx[0, 1] - mx[0, 0]) > abs(my[0, 1] - my[0, 0])
        width_x = np.broadcast_to(wfs[None, :] if fs_along_x else wss[:, None], mx.shape)
        width_y = np.broadcast_to(wss[:, None] if fs_along_x else wfs[None, :], mx.shape)
        # crop column j has its centre at x = j + 0.5 - w/2: the columns inside [x - wx/2, x + wx/2)
        j0 = np.ceil(mx - width_x / 2 - 0.5 + w / 2).astype(int)
        j1 = np.ceil(mx + width_x / 2 - 0.5 + w / 2).astype(int)
        i0 = np.ceil(my - width_y / 2 - 0.5 + h / 2).astype(int)
        i1 = np.ceil(my + width_y / 2 - 0.5 + h / 2).astype(int)
        flat = module * mx.size + np.arange(mx.size).reshape(mx.shape)
        for di in range(2):
            for dj in range(2):
                rows, cols = i0 + di, j0 + dj
                ok = (rows < i1) & (cols < j1) & (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
                index[rows[ok], cols[ok]] = flat[ok]
                np.add.at(painted, (rows[ok], cols[ok]), 1)
    assert painted.max() == 1  # pixels do not overlap
    return index


@pytest.fixture(scope="module")
def jungfrau_run(ps, tmp_path_factory, assembled):
    """A 2-module JUNGFRAU run (uint16 ADU) of the simulated frames, sampled at psana's own pixel centres."""
    from sfx_cnn_veto_psana.xtc import write_xtc2

    x, y, pixel = jungfrau1m_coords()
    h, w = assembled[0].shape
    rows = np.floor(y / pixel + h / 2).astype(int)
    cols = np.floor(x / pixel + w / 2).astype(int)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    frames = []
    for image in assembled:
        adu = np.clip(np.rint(image + 100), 0, 16000).astype(np.uint16)
        raw = np.zeros(x.shape, np.uint16)
        raw[inside] = adu[rows[inside], cols[inside]]
        frames.append(raw)
    path = str(tmp_path_factory.mktemp("jungfrau") / "jf1m.xtc2")
    write_xtc2(path, frames, detector_name="jungfrau", dettype="jungfrau")
    return path, frames


@needs_psana
def test_tiles_reproduce_psana_jungfrau_pixels():
    """psana's JUNGFRAU 1M: 40 tiles a module (4x2 ASICs, the wide edge pixels apart), 2 pixels wide at
    psana's wide-pixel columns and rows, every centre where psana puts it."""
    from sfx_cnn_veto_psana.geometry import geometry_from_pixel_coords

    x, y, pixel = jungfrau1m_coords()
    assert pixel == 75 and x.shape == (2, 512, 1024)
    geometry = geometry_from_pixel_coords(x, y, pixel)
    assert len(geometry.panels) == 2 * 10 * 4 and geometry.frame_shape == (2, 512, 1024)
    for panel in geometry.panels:
        fs_len, ss_len = np.hypot(*panel.fs), np.hypot(*panel.ss)
        wide_fs = panel.min_fs in JF_WIDE_COLS
        wide_ss = panel.min_ss in JF_WIDE_ROWS
        assert (panel.shape[1] == 1) == wide_fs and (panel.shape[0] == 1) == wide_ss, panel
        assert fs_len == pytest.approx(2.0 if wide_fs else 1.0, abs=1e-6), panel
        assert ss_len == pytest.approx(2.0 if wide_ss else 1.0, abs=1e-6), panel
    mx, my = geometry.pixel_maps()
    np.testing.assert_allclose(mx, x / pixel, atol=1e-6)
    np.testing.assert_allclose(my, y / pixel, atol=1e-6)


@needs_psana
def test_jungfrau_with_psanas_own_geometry(jungfrau_run, veto):
    """A real psana JUNGFRAU, raw and calib, no geometry given: the crop map comes from psana's pixel
    coordinates; decisions and scores equal those on a crop painted straight from psana's pixels."""
    from sfx_cnn_veto.core.crop import CropMapper
    from sfx_cnn_veto_psana import PsanaVeto
    from sfx_cnn_veto_psana.geometry import geometry_from_pixel_coords

    path, frames = jungfrau_run
    x, y, pixel = jungfrau1m_coords()
    index = rasterized_crop_index(x, y, pixel)
    covered = index >= 0
    assert 0.05 < 1 - covered.mean() < 0.3  # the gap between the modules crosses the crop
    cmap = CropMapper((350, 350), geometry=geometry_from_pixel_coords(x, y, pixel))(frames[0].shape)
    np.testing.assert_array_equal(cmap.good, covered)
    np.testing.assert_array_equal(cmap.index[covered], index[covered])

    crops = [f.reshape(-1)[np.where(covered, index, 0)] for f in frames]
    painted = [d for _, d in veto.stream(((i, c, covered) for i, c in enumerate(crops)), cropped=True)]
    veto.threshold = split_threshold(veto, [d.score for d in painted])
    painted = [d for _, d in veto.stream(((i, c, covered) for i, c in enumerate(crops)), cropped=True)]
    assert {d.is_hit for d in painted} == {True, False}

    for source in ("raw", "calib"):
        run, det = _run(path, "jungfrau")
        pv = PsanaVeto(veto, detector=det, source=source)
        out = [d for _, d in pv.events(run, batch_size=4)]
        assert pv.geometry_origin == "psana" and len(pv.geometry.panels) == 80
        assert_same(out, painted)


@needs_psana
def test_crop_is_psanas_own_image_turned_180_degrees(jungfrau_run, veto):
    """Orientation: psana's assembled det.raw.image (cframe=0: rows along psana x, columns along y) read
    at the crop's lab points turned by 180 degrees equals the crop, pixel for pixel (wide pixels aside,
    which psana's image puts at one index of the two they cover); a mirror does not."""
    from sfx_cnn_veto_psana import PsanaVeto

    path, frames = jungfrau_run
    run, det = _run(path, "jungfrau")
    evt = next(iter(run.events()))
    image = det.raw.image(evt)
    r0, c0 = det.raw._det_geo().point_coord_indexes(p_um=(0, 0), fract=True)  # the beam in psana's image
    cmap = PsanaVeto(veto, detector=det, source="raw").crop_map(frames[0].shape)
    crop = cmap(det.raw.raw(evt))
    i, j = np.mgrid[0:350, 0:350]
    lab_x, lab_y = j + 0.5 - 175, i + 0.5 - 175
    _, ss, fs = np.unravel_index(cmap.index, frames[0].shape)
    regular = cmap.good & ~np.isin(fs, JF_WIDE_COLS) & ~np.isin(ss, JF_WIDE_ROWS)
    assert regular.mean() > 0.6

    def read(rows, cols):
        return image[np.floor(rows).astype(int)[regular], np.floor(cols).astype(int)[regular]]

    np.testing.assert_array_equal(crop[regular], read(r0 - lab_y, c0 - lab_x))
    # a mirror agrees only where equal ADU values meet by chance
    assert np.mean(crop[regular] == read(r0 + lab_y, c0 - lab_x)) < 0.5  # mirrored up-down
    assert np.mean(crop[regular] == read(r0 - lab_y, c0 + lab_x)) < 0.5  # mirrored left-right


@needs_psana
def test_psana_geometry_file_is_used_instead_of_the_default(jungfrau_run, veto, tmp_path):
    """geometry='FILE.data' (psana's own format, e.g. refined constants offline psana does not load):
    the crop follows that file (one module moved by 10 pixels), not psana's default geometry."""
    import psana.pscalib.geometry.GeometryAccess as ga

    from sfx_cnn_veto_psana import PsanaVeto

    path, frames = jungfrau_run
    default = os.path.join(os.path.dirname(ga.__file__), "data", "geometry-def-jungfrau1M.data")
    lines = open(default).read().splitlines()
    moved = [ln for ln in lines if ln.split()[2:4] == ["JUNGFRAU:V2", "1"]]
    assert len(moved) == 1
    fields = moved[0].split()
    fields[4] = str(int(fields[4]) + 750)  # x0 + 750 um: 10 pixels
    text = "\n".join(" ".join(fields) if ln == moved[0] else ln for ln in lines) + "\n"
    refined = tmp_path / "refined.data"
    refined.write_text(text)
    geo = ga.GeometryAccess(str(refined))
    x, y, _ = geo.get_pixel_coords(cframe=1)
    index = rasterized_crop_index(x, y, 75)
    assert not np.array_equal(index, rasterized_crop_index(*jungfrau1m_coords()))
    covered = index >= 0
    crops = [f.reshape(-1)[np.where(covered, index, 0)] for f in frames]
    painted = [d for _, d in veto.stream(((i, c, covered) for i, c in enumerate(crops)), cropped=True)]

    run, det = _run(path, "jungfrau")
    pv = PsanaVeto(veto, detector=det, source="raw", geometry=str(refined))
    out = [d for _, d in pv.events(run, batch_size=4)]
    assert pv.geometry_origin == "user" and pv.geometry.source == str(refined)
    assert_same(out, painted)


def test_tiles_refuse_coordinates_that_are_not_a_grid():
    """Jittered centres, a wrong pixel size, or x/y of different shapes: a ConfigError saying what is wrong."""
    from sfx_cnn_veto.errors import ConfigError
    from sfx_cnn_veto_psana.geometry import geometry_from_pixel_coords

    ss, fs = np.mgrid[0:20, 0:30].astype(float)
    x, y = np.stack([fs * 75, fs * 75 + 3000]), np.stack([ss * 75, ss * 75])
    geometry = geometry_from_pixel_coords(x, y, 75)
    assert len(geometry.panels) == 2 and [p.plane for p in geometry.panels] == [(0,), (1,)]
    assert geometry.panels[1].corner_x == pytest.approx(40 - 0.5) and geometry.panels[0].fs == (1.0, 0.0)
    jittered = x.copy()
    jittered[1, 7, 11] += 20.0
    with pytest.raises(ConfigError, match="segment 1 are not a set of regular tiles"):
        geometry_from_pixel_coords(jittered, y, 75)
    with pytest.raises(ConfigError, match="pixel size"):
        geometry_from_pixel_coords(x, y, 50)
    with pytest.raises(ConfigError, match="one shape"):
        geometry_from_pixel_coords(x, y[:, :10], 75)


@needs_psana
def test_lab_frame_is_psanas(ps):
    """lab_from_psana_frame is psana's own cframe 0 -> 1 change (GeometryAccess.get_pixel_coords)."""
    import psana.pscalib.geometry.GeometryAccess as ga

    from sfx_cnn_veto_psana.geometry import lab_from_psana_frame

    path = os.path.join(os.path.dirname(ga.__file__), "data", "geometry-def-epix10kaquad.data")
    x0, y0, _ = ga.GeometryAccess(path).get_pixel_coords(cframe=0)
    x1, y1, _ = ga.GeometryAccess(path).get_pixel_coords(cframe=1)
    lx, ly = lab_from_psana_frame(x0, y0)
    np.testing.assert_array_equal(lx, x1)
    np.testing.assert_array_equal(ly, y1)


@needs_psana
def test_cli_psana_geometry_option(panel_run, veto, paper_model_file, tmp_path):
    """``sfx-cnn-veto psana --files ... --geometry FILE.geom``: multi-panel events scored, none an error."""
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS, main
    from sfx_cnn_veto_psana import read_table

    xtc2, geom, slabs = panel_run
    base = ["psana", "--files", xtc2, "--detector", "epixsim", "-m", paper_model_file, "--backend", "keras"]
    code = main(base + ["--geometry", geom, "--table", str(tmp_path / "t.h5")])
    rows = read_table(tmp_path / "t.h5")
    assert code == EXIT_EVENT_ERRORS  # only the event without data
    assert rows["error"].tolist() == [False] * 4 + [True] + [False] * (len(slabs) - 4)
    code = main(base + ["--table", str(tmp_path / "u.h5")])
    assert code == EXIT_EVENT_ERRORS and read_table(tmp_path / "u.h5")["error"].all()


@needs_psana
def test_psana_geometry_that_is_not_a_grid_gives_error_events(ps, veto):
    """psana pixel coordinates the tiles cannot reproduce: each event an error naming the fix, none lost.

    The detector is a minimal holder around psana's real GeometryAccess (JUNGFRAU 1M default) whose
    ``_pixel_coords`` jitters one pixel: no real psana detector here has such a geometry."""
    import types

    import psana.pscalib.geometry.GeometryAccess as ga

    from sfx_cnn_veto_psana import PsanaVeto

    geo = ga.GeometryAccess(os.path.join(os.path.dirname(ga.__file__), "data", "geometry-def-jungfrau1M.data"))

    def pixel_coords(cframe=0):
        x, y, z = geo.get_pixel_coords(cframe=cframe)
        x = x.copy()
        x[1, 100, 100] += 30.0
        return x, y, z

    frame = np.zeros((2, 512, 1024), np.uint16)
    raw = types.SimpleNamespace(_det_geo=lambda: geo, _pixel_coords=pixel_coords, raw=lambda evt: frame)
    pv = PsanaVeto(veto, detector=types.SimpleNamespace(raw=raw), source="raw", psana=ps)
    out = [d for _, d in pv.events([object(), object()])]
    assert len(out) == 2
    for d in out:
        assert d.is_hit and d.error and "segment 1 are not a set of regular tiles" in d.error
        assert "geometry=FILE.geom" in d.error and "\n" not in d.error
