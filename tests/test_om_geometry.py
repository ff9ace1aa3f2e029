"""The OM veto step crops with OM's own geometry: multi-panel raw slabs, the beam of a single panel.

OM hands the processing layer each event's raw slab (``detector_data``); for a
multi-panel detector its centre is not the beam. These tests build raw slabs
of the demo frames with the simulator's eight-panel detector
(``sfx_cnn_veto.simulate.panels``: panels turned by 0/90/180/270 degrees,
6-pixel gaps), give OM their CrystFEL geometry as
``crystallography.geometry_file``, and check that

* OM under ``mpirun -n 3`` vetoes exactly the events the package's own file
  path (``Veto(geometry=...).stream_events``, what ``sfx-cnn-veto score``
  runs) calls misses on the same slab files, with the same scores;
* the layer's scores on the slabs equal its scores on the assembled frames
  (single-panel geometry, gaps in the bad-pixel map), and differ from
  cropping the slab's centre (what the step did before it read the geometry);
* a single-panel geometry with the beam at the frame centre gives today's
  crop, and one with the beam elsewhere moves the crop there.

The model is the OM tests' tiny demo model (``om_demo`` in conftest.py),
re-saved with ``use_mask`` so that gaps and the bad-pixel map are masked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.geometry import (Geometry, read_geometry, single_panel_geometry, write_geometry)
from sfx_cnn_veto.simulate.panels import assembled_good, eight_panel_geometry, to_slab
from sfx_cnn_veto_om.config import CnnVetoConfig
from sfx_cnn_veto_om.geometry import VetoGeometry, geometry_source, status_line
from test_om_adapter import EXAMPLE, HAVE_OM, needs_mpi, needs_om, run_monitor

LAYER = "sfx_cnn_veto_om.processing.CnnVetoCrystallographyProcessing"
FRAME_SHAPE = (700, 700)
#: Global keys OM's geometry parser requires (res, clen, adu_per_photon) and OM's HDF5 layout.
OM_HEADER = {"photon_energy": 9500, "adu_per_photon": 8, "clen": 0.08, "res": 9090.91,
             "data": "/entry/data/data", "dim0": "%", "dim1": "ss", "dim2": "fs"}
SLAB_FILES, SLAB_FRAMES = 2, 4  # one file per processing rank, a few frames each
SCORE_TOLERANCE = 2e-5  # decisions.csv keeps 6 significant digits; batch 1 vs batch 8 in the network


def packed(geometry: Geometry) -> Geometry:
    """``geometry`` with its panels packed edge to edge in the slab (4 rows x 2 columns), lab unchanged.

    The simulator's slab leaves unused rows between panels; OM's peakfinder8
    assumes equal panels tiling the slab (``asic_nx/ny``, ``nasics_x/y``), as a
    real detector's Cheetah layout does.
    """
    panels = []
    for i, panel in enumerate(geometry.panels):
        nss, nfs = panel.shape
        row, col = (i % 4) * nss, (i // 4) * nfs
        panels.append(dataclasses.replace(panel, min_ss=row, max_ss=row + nss - 1, min_fs=col, max_fs=col + nfs - 1))
    return dataclasses.replace(geometry, panels=tuple(panels), source="eight panels, packed")


def _write_h5(path: Path, dataset: str, data: np.ndarray, *, chunked: bool = False) -> Path:
    import h5py

    with h5py.File(path, "w") as h5:
        h5.create_dataset(dataset, data=data, chunks=(1,) + data.shape[1:] if chunked else None)
    return path


def _masked_copy(model: Path, dst: Path) -> Path:
    """The demo model re-saved with ``use_mask``: gaps and OM's bad pixels read as background."""
    from sfx_cnn_veto.core.model import VetoModel

    loaded = VetoModel.load(str(model))
    VetoModel(loaded.keras_model, dataclasses.replace(loaded.metadata, use_mask=True)).save(str(dst))
    return dst


@pytest.fixture(scope="session")
def slabs(om_demo, tmp_path_factory):
    """Raw-slab files of demo frames (two hits, two misses a file), their OM geometry and bad-pixel map,
    and the assembled frames with their bad-pixel map (the slab's gaps marked bad)."""
    import h5py

    root = tmp_path_factory.mktemp("om_slabs")
    geometry = packed(eight_panel_geometry(FRAME_SHAPE, gap=6, res=OM_HEADER["res"]))
    geom_path = root / "eight_panels.geom"
    write_geometry(str(geom_path), geometry, header=OM_HEADER)
    with h5py.File(om_demo["truth"].mask) as h5:
        demo_good = np.asarray(h5["/data/data"]) != 0
    data = root / "data"
    data.mkdir()
    files, assembled, truth = [], [], {}
    for i in range(SLAB_FILES):
        with h5py.File(om_demo["truth"].paths[i]) as h5:
            is_hit = np.asarray(h5["entry/truth/is_hit"])
            pick = np.sort(np.concatenate([np.flatnonzero(is_hit)[:SLAB_FRAMES // 2],
                                           np.flatnonzero(~is_hit)[:SLAB_FRAMES // 2]]))
            frames = np.asarray(h5["entry/data/data"][:])[pick]  # simulated hits and misses, in file order
        assembled.append(frames)
        slab = np.stack([to_slab(frame, geometry) for frame in frames])
        files.append(_write_h5(data / f"slab_{i:03d}.h5", "entry/data/data", slab, chunked=True))
        truth.update({f"{files[-1]} // {k:04d}": bool(is_hit[j]) for k, j in enumerate(pick)})
    (data / "files.lst").write_text("".join(f"{f}\n" for f in files))
    slab_good = (to_slab(demo_good.astype(np.int8), geometry) != 0) & geometry.good_pixels()
    _write_h5(data / "mask.h5", "/data/data", slab_good.astype(np.int8))
    plain = root / "assembled"
    plain.mkdir()
    assembled_mask = demo_good & assembled_good(geometry, FRAME_SHAPE)
    _write_h5(plain / "mask.h5", "/data/data", assembled_mask.astype(np.int8))
    return {"geometry": geometry, "geom": geom_path, "files": files, "truth": truth, "list": data / "files.lst",
            "mask": data / "mask.h5", "slab_good": slab_good, "assembled": np.concatenate(assembled),
            "assembled_mask": plain / "mask.h5", "model": _masked_copy(om_demo["model"], root / "masked.keras")}


def _reference(slabs) -> dict[str, object]:
    """What the package's file path (``sfx-cnn-veto score``'s) decides on the slab files: by OM's event ID."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    veto = Veto.load(str(slabs["model"]), geometry=read_geometry(str(slabs["geom"])), backend="keras",
                     mask=f"{slabs['mask']}:/data/data", file_masks=False, batch_size=8, threads=1)
    with FrameStore({"dataset": "/entry/data/data"}) as store:
        events = iter_events([str(f) for f in slabs["files"]], store)
        return {f"{ref.file} // {ref.index:04d}": decision for ref, decision in veto.stream_events(events, store)}


# ---------------------------------------------------------------------------
# Under mpirun: OM's multi-panel geometry, raw-slab files


@needs_om
@needs_mpi
def test_om_multi_panel_vetoes_the_events_score_calls_misses(slabs, tmp_path):
    run = run_monitor(tmp_path / "run", slabs["list"], processing_layer=LAYER, geometry=slabs["geom"],
                      cnn_veto={"model": str(slabs["model"]), "mode": "veto"})
    n = SLAB_FILES * SLAB_FRAMES
    assert run["rc"] == 0, run["log"][-4000:]
    assert f"OM has processed {n} events in total." in run["log"], run["log"][-4000:]
    rows = {row["event_id"]: row for row in run["rows"]}
    reference = _reference(slabs)
    assert sorted(rows) == sorted(reference), "decisions.csv does not list every slab event once"
    assert all(d.error is None for d in reference.values())
    assert not any(row["error"] for row in rows.values()), [row["error"] for row in rows.values()]
    misses = {eid for eid, d in reference.items() if not d.is_hit}
    assert 0 < len(misses) < n, f"the reference should call some frames misses and some hits: {reference}"
    vetoed = {eid for eid, row in rows.items() if row["vetoed"] == "1"}
    assert vetoed == misses
    for eid, decision in reference.items():
        assert float(rows[eid]["score"]) == pytest.approx(decision.score, abs=SCORE_TOLERANCE), eid
    # OM's peakfinder8 reads the slab through OM's own reading of the geometry: the kept simulated
    # hits are its hits, and no simulated hit was vetoed (the masked demo model is good enough).
    hits = {eid for eid, hit in slabs["truth"].items() if hit}
    assert not (vetoed & hits), f"simulated hits vetoed: {sorted(vetoed & hits)}"
    assert {eid for eid, row in rows.items() if row["frame_is_hit"] == "1"} == hits
    # One start-up line from the collector names the geometry, its panels and the crop's bad fraction.
    lines = [line for line in run["log"].splitlines() if f"cnn_veto: geometry {slabs['geom']}" in line]
    assert len(lines) == 1, run["log"][-4000:]
    assert "(from crystallography.geometry_file): 8 panel(s), slab 676x688" in lines[0]
    assert "% bad with the bad-pixel map" in lines[0] and "Warning" not in lines[0]


# ---------------------------------------------------------------------------
# In process: OM's real processing layer on "rank 1" (no MPI)


def _layer(tmp: Path, *, model: Path, om_geometry: Path, mask: Path | None, mode: str = "tag", **cnn_veto):
    """OM's processing layer with ``om_geometry`` as crystallography.geometry_file, initialized as rank 1."""
    from om.lib.parameters import MonitorParameters

    from sfx_cnn_veto_om.processing import CnnVetoCrystallographyProcessing

    config = yaml.safe_load((EXAMPLE / "monitor.yaml").read_text())
    config["crystallography"]["geometry_file"] = str(om_geometry)
    config["peakfinder8_peak_detection"]["bad_pixel_map_filename"] = None if mask is None else str(mask)
    config["cnn_veto"] = {"model": str(model), "mode": mode, "threads": 1, **cnn_veto}
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "monitor.yaml").write_text(yaml.safe_dump(config))
    layer = CnnVetoCrystallographyProcessing(monitor_parameters=MonitorParameters(config=str(tmp / "monitor.yaml")))
    layer.initialize_processing_node(node_rank=1, node_pool_size=3)
    return layer


def _scores(layer, frames) -> np.ndarray:
    """The layer's CNN score of each frame (tag mode: peakfinder8 runs too, as in OM)."""
    scores = []
    for i, frame in enumerate(frames):
        data = {"detector_data": frame, "timestamp": 0.0, "beam_energy": 9500.0, "detector_distance": 80.0,
                "event_id": f"x // {i}"}
        out, _ = layer.process_data(node_rank=1, node_pool_size=3, data=data)
        assert out["cnn_veto"]["error"] is None, out["cnn_veto"]["error"]
        scores.append(out["cnn_veto"]["score"])
    return np.array(scores)


@needs_om
def test_slab_with_geometry_scores_like_the_assembled_frames(slabs, tmp_path):
    geometry = slabs["geometry"]
    frames = slabs["assembled"]
    slab_frames = np.stack([to_slab(frame, geometry) for frame in frames])
    on_slabs = _scores(_layer(tmp_path / "slab", model=slabs["model"], om_geometry=slabs["geom"], mask=slabs["mask"]),
                       slab_frames)
    on_frames = _scores(_layer(tmp_path / "assembled", model=slabs["model"], om_geometry=EXAMPLE / "detector.geom",
                               mask=slabs["assembled_mask"]), frames)
    np.testing.assert_allclose(on_slabs, on_frames, rtol=0, atol=1e-6)
    # What the step did before it read OM's geometry: the slab's centre, a different crop.
    from sfx_cnn_veto.core.pipeline import Veto

    centre = Veto.load(str(slabs["model"]), backend="keras", batch_size=1, threads=1, file_masks=False,
                       mask=slabs["slab_good"]).score(slab_frames)
    assert np.max(np.abs(centre - on_slabs)) > 1e-3, "cropping the slab's centre should give other scores"


def _single_panel_geom(path: Path, center) -> Path:
    write_geometry(str(path), single_panel_geometry(FRAME_SHAPE, center, res=OM_HEADER["res"]), header=OM_HEADER)
    return path


@needs_om
def test_single_panel_geometry_follows_its_beam(om_demo, slabs, tmp_path):
    """Beam at the frame centre: today's crop (no geometry). Beam elsewhere: the crop around it.
    OM's bad-pixel map is masked the same way on both paths (the model uses masks)."""
    import h5py

    from sfx_cnn_veto.core.pipeline import Veto

    with h5py.File(om_demo["truth"].paths[0]) as h5:
        frames = np.asarray(h5["entry/data/data"][:6])
    model, mask = slabs["model"], Path(om_demo["truth"].mask)

    def plain(**kwargs) -> np.ndarray:
        return Veto.load(str(model), backend="keras", batch_size=1, threads=1, file_masks=False,
                         mask=f"{mask}:/data/data", **kwargs).score(frames)

    centred = _scores(_layer(tmp_path / "centre", model=model, om_geometry=EXAMPLE / "detector.geom", mask=mask),
                      frames)
    np.testing.assert_allclose(centred, plain(), rtol=0, atol=1e-6)
    beam = (380.0, 310.0)
    off = _scores(_layer(tmp_path / "off", model=model, om_geometry=_single_panel_geom(tmp_path / "off.geom", beam),
                         mask=mask), frames)
    np.testing.assert_allclose(off, plain(center=beam), rtol=0, atol=1e-6)
    assert np.max(np.abs(off - centred)) > 1e-3, "a beam 30 px off the centre should move the crop"


REAL_GEOMETRIES = Path(__file__).resolve().parents[2] / "shared" / "real" / "geometry"  # ../shared beside the clone


@needs_om
@pytest.mark.parametrize("name", ["jungfrau4M", "epix10k2M"])  # the LCLS CSPAD (64 near-axis panels); ePix10k2M
def test_real_multi_panel_geometry_through_oms_layer(name, slabs, om_demo, tmp_path):
    """A real facility geometry as OM's geometry_file: OM's layer scores the raw slab as the package does,
    and as the assembled frames score (to within the few pixels that slightly turned panels resample)."""
    import h5py

    from sfx_cnn_veto.core.pipeline import Veto

    path = REAL_GEOMETRIES / f"{name}.geom"
    geometry = read_geometry(str(path))
    with h5py.File(om_demo["truth"].paths[0]) as h5:
        is_hit = np.asarray(h5["entry/truth/is_hit"])
        pick = np.sort(np.concatenate([np.flatnonzero(is_hit)[:2], np.flatnonzero(~is_hit)[:2]]))
        frames = np.asarray(h5["entry/data/data"][:])[pick]
    slab_frames = np.stack([to_slab(frame, geometry) for frame in frames])
    assert slab_frames.shape[1:] == geometry.frame_shape
    on_slabs = _scores(_layer(tmp_path / name, model=slabs["model"], om_geometry=path, mask=None), slab_frames)
    package = Veto.load(str(slabs["model"]), geometry=geometry, backend="keras", batch_size=1, threads=1)
    np.testing.assert_allclose(on_slabs, package.score(slab_frames), rtol=0, atol=1e-6)
    assembled = Veto.load(str(slabs["model"]), backend="keras", batch_size=1, threads=1, file_masks=False,
                          mask=assembled_good(geometry, FRAME_SHAPE)).score(frames)
    np.testing.assert_allclose(on_slabs, assembled, rtol=0, atol=0.01)


@needs_om
def test_cnn_veto_geometry_overrides_the_monitors(om_demo, slabs, tmp_path):
    """``cnn_veto.geometry`` replaces crystallography.geometry_file for the veto (OM keeps its own)."""
    layer = _layer(tmp_path / "override", model=slabs["model"], om_geometry=EXAMPLE / "detector.geom", mask=None,
                   geometry=str(slabs["geom"]))
    assert layer._veto.preprocess.geometry.source == str(slabs["geom"])
    assert len(layer._veto.preprocess.geometry.panels) == 8


@needs_om
def test_unreadable_geometry_stops_the_monitor_at_start(om_demo, tmp_path):
    with pytest.raises(ConfigError, match=r"cnn_veto\.geometry: cannot open geometry .*nope\.geom"):
        _layer(tmp_path / "bad", model=om_demo["model"], om_geometry=EXAMPLE / "detector.geom", mask=None,
               geometry=str(tmp_path / "nope.geom"))


# ---------------------------------------------------------------------------
# No OM needed: the group's key, the geometry's source, the start-up line


def test_geometry_key_is_validated():
    assert CnnVetoConfig.from_group({"mode": "off"}).geometry is None
    assert CnnVetoConfig.from_group({"mode": "off", "geometry": "d.geom"}).geometry == str(Path("d.geom").resolve())
    for bad in (3, "", True):
        with pytest.raises(ConfigError, match=r"cnn_veto\.geometry: expected null .* or a CrystFEL \.geom path"):
            CnnVetoConfig.from_group({"mode": "off", "geometry": bad})


def test_geometry_source_prefers_the_group_then_oms_file(tmp_path):
    groups = {"crystallography": {"geometry_file": "om.geom"}}
    assert geometry_source(CnnVetoConfig.from_group({"mode": "off"}), groups) == (
        str(Path("om.geom").resolve()), "crystallography.geometry_file")
    mine = CnnVetoConfig.from_group({"mode": "off", "geometry": str(tmp_path / "mine.geom")})
    assert geometry_source(mine, groups) == (str(tmp_path / "mine.geom"), "cnn_veto.geometry")
    with pytest.raises(ConfigError, match="crystallography.geometry_file"):
        geometry_source(CnnVetoConfig.from_group({"mode": "off"}), {"crystallography": {}})


def test_status_line_reports_panels_beam_and_the_crops_bad_fraction():
    geometry = packed(eight_panel_geometry(FRAME_SHAPE, gap=6))
    gaps = 1.0 - assembled_good(geometry, FRAME_SHAPE)[175:525, 175:525].mean()  # the assembled crop's gaps
    good = geometry.good_pixels()
    good[:169, :344] = False  # the bad-pixel map marks panel q0a0 bad
    bad = 1.0 - (assembled_good(geometry, FRAME_SHAPE) & ~_footprint(geometry, 0))[175:525, 175:525].mean()
    line = status_line(VetoGeometry(geometry, "x.geom", "crystallography.geometry_file"), (350, 350),
                       mask=good, mask_used=True)
    assert line.startswith("cnn_veto: geometry x.geom (from crystallography.geometry_file): 8 panel(s), slab 676x688")
    assert f"crop 350x350: {gaps:.1%} gaps or geometry-bad, {bad:.1%} bad with the bad-pixel map" in line
    assert "beam at lab x = y = 0" in line
    single = status_line(VetoGeometry(single_panel_geometry(FRAME_SHAPE, (380, 310)), "s.geom", "k"), (350, 350),
                         mask=None, mask_used=False)
    assert "1 panel(s), slab 700x700, beam at slab (row, col) = (380, 310); crop 350x350: 0.0% gaps" in single
    assert "bad-pixel map not used" in single
    far = dataclasses.replace(geometry, panels=tuple(dataclasses.replace(p, corner_x=p.corner_x + 5000)
                                                     for p in geometry.panels))
    warning = status_line(VetoGeometry(far, "far.geom", "k"), (350, 350), mask=None, mask_used=False)
    assert warning.startswith("OM Warning: cnn_veto: geometry far.geom") and "no panel covers" in warning
    inverted = status_line(VetoGeometry(geometry, "x.geom", "k"), (350, 350), mask=~geometry.good_pixels(),
                           mask_used=True)
    assert inverted.startswith("OM Warning: cnn_veto: geometry x.geom") and "is it inverted?" in inverted


def _footprint(geometry: Geometry, index: int) -> np.ndarray:
    """The assembled pixels panel ``index`` covers."""
    one = dataclasses.replace(geometry, panels=(geometry.panels[index],))
    return assembled_good(one, FRAME_SHAPE)


def test_om_and_the_package_read_the_same_panels(tmp_path):
    """OM's parser accepts the written geometry and lays the slab out as ours does (peakfinder8's layout)."""
    if not HAVE_OM:
        pytest.skip("ondamonitor (OM) is not installed")
    from om.lib.geometry import GeometryInformation

    geometry = packed(eight_panel_geometry(FRAME_SHAPE, gap=6, res=OM_HEADER["res"]))
    write_geometry(str(tmp_path / "g.geom"), geometry, header=OM_HEADER)
    info = GeometryInformation.from_file(geometry_filename=str(tmp_path / "g.geom"))
    assert info.get_pixel_maps()["x"].shape == read_geometry(str(tmp_path / "g.geom")).frame_shape
    layout = info.get_layout_info()
    assert (layout["asic_ny"], layout["asic_nx"]) == geometry.panels[0].shape
    assert (layout["nasics_y"] * layout["asic_ny"], layout["nasics_x"] * layout["asic_nx"]) == geometry.frame_shape
    # Same lab positions: OM's maps hold each pixel's first corner, ours its centre (half a step along fs and ss).
    x, y = geometry.pixel_maps()
    om_x, om_y = info.get_pixel_maps()["x"], info.get_pixel_maps()["y"]
    for p in geometry.panels:
        rows, cols = slice(p.min_ss, p.max_ss + 1), slice(p.min_fs, p.max_fs + 1)
        half = 0.5 * (np.array(p.fs) + np.array(p.ss))
        np.testing.assert_allclose(om_x[rows, cols] + half[0], x[rows, cols], atol=1e-3, err_msg=p.name)
        np.testing.assert_allclose(om_y[rows, cols] + half[1], y[rows, cols], atol=1e-3, err_msg=p.name)



def test_om_config_reports_the_geometry_line(slabs, tmp_path, capsys):
    """``sfx-cnn-veto om-config monitor.yaml`` reads the geometry as the monitor will, without starting OM."""
    from sfx_cnn_veto.cli import main

    config = yaml.safe_load((EXAMPLE / "monitor.yaml").read_text())
    config["crystallography"]["geometry_file"] = str(slabs["geom"])
    config["peakfinder8_peak_detection"]["bad_pixel_map_filename"] = str(slabs["mask"])
    config["cnn_veto"]["model"] = str(slabs["model"])
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["om-config", str(tmp_path / "monitor.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"cnn_veto: geometry {slabs['geom']} (from crystallography.geometry_file): 8 panel(s)" in out
    assert "% bad with the bad-pixel map" in out
    config["cnn_veto"]["geometry"] = str(tmp_path / "missing.geom")
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
    assert main(["om-config", str(tmp_path / "monitor.yaml")]) != 0
    err = capsys.readouterr().err
    assert "cnn_veto.geometry: cannot open geometry" in err and "Traceback" not in err, err
