"""The simulator: geometry against Bragg's law, Wilson fall-off, hit rates, noise, files, config."""

from __future__ import annotations

import csv
import dataclasses
import filecmp
import math
import os
import re

import h5py
import numpy as np
import pytest

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.lst import lint_line, read_lst
from sfx_cnn_veto.simulate import (
    RunSimulator,
    default_experiment,
    experiment_from_dict,
    load_experiment,
    simulate_frame,
    simulate_run,
    write_run,
)
from sfx_cnn_veto.simulate.detector import noise_kernel, normal_table
from sfx_cnn_veto.simulate.physics import (
    Geometry,
    make_structure,
    predict_reflections,
    random_rotation,
    reciprocal_basis,
    render_spots,
    rotation_for_bragg,
)
from sfx_cnn_veto.simulate.writer import write_experiment

CELL = (58.0, 58.0, 173.0, 90.0, 90.0, 90.0)


def small_run(name="run90", shape=(400, 400), **changes):
    """A run of the default experiment on small frames (fast tests)."""
    run = default_experiment().run(name)
    run = dataclasses.replace(run, detector=dataclasses.replace(run.detector, shape=shape))
    return dataclasses.replace(run, **changes)


def geometry(beam_center=(199.5, 199.5), shape=(400, 400), wavelength=1.305, distance=0.08):
    return Geometry(distance_m=distance, pixel_size_m=110e-6, wavelength_a=wavelength,
                    beam_center=beam_center, shape=shape)


# ---------------------------------------------------------------------------
# Physics


def test_reciprocal_basis_of_an_orthogonal_and_a_monoclinic_cell():
    assert np.allclose(reciprocal_basis(CELL), np.diag([1 / 58.0, 1 / 58.0, 1 / 173.0]))
    cell = (50.0, 60.0, 70.0, 90.0, 105.0, 90.0)
    basis = reciprocal_basis(cell)
    direct = np.linalg.inv(basis.T)       # columns a, b, c
    assert np.allclose(np.linalg.norm(direct, axis=0), cell[:3])
    beta = math.degrees(math.acos(direct[:, 0] @ direct[:, 2] / (50.0 * 70.0)))
    assert beta == pytest.approx(105.0)
    assert np.allclose(direct.T @ basis, np.eye(3))           # a . a* = 1, a . b* = 0 ...


def test_space_group_absences_of_i4122():
    s = make_structure(CELL, "I4122", 4.0, 1)
    h, k, l = s.hkl.T
    assert np.all((h + k + l) % 2 == 0)                        # I centring
    assert np.all(s.hkl[(h == 0) & (k == 0)][:, 2] % 4 == 0)  # 4_1 screw: 00l, l = 4n
    # Wilson: |F|^2 exponential with mean 1, Friedel mates equal
    assert s.intensity.mean() == pytest.approx(1.0, abs=0.05)
    index = {tuple(x): i for i, x in enumerate(s.hkl)}
    for i in range(0, len(s.hkl), 97):
        assert s.intensity[i] == s.intensity[index[tuple(-s.hkl[i])]]


@pytest.mark.parametrize("hkl, azimuth, center", [
    ((4, 0, 0), 0.0, (199.5, 199.5)),
    ((0, 2, 2), 90.0, (199.5, 199.5)),
    ((3, 1, 6), 225.0, (219.5, 189.5)),    # beam centre moved by (+20, -10) pixels
])
def test_a_reflection_in_the_bragg_condition_lands_where_braggs_law_says(hkl, azimuth, center):
    """Turn the crystal so ``hkl`` diffracts exactly; its spot must sit at
    ``distance * tan(2 theta)`` from the beam, along the chosen azimuth, with
    ``lambda = 2 d sin(theta)`` (computed here from d alone, not from the simulator)."""
    geom = geometry(beam_center=center)
    structure = make_structure(CELL, "P1", 3.0, 1)
    rotation = rotation_for_bragg(reciprocal_basis(CELL), hkl, geom.wavelength_a, azimuth)
    refl = predict_reflections(structure, rotation, geom, mosaicity_deg=0.05, bandwidth=0.001, size_um=1.0,
                               wilson_b=0.0, photons_per_unit=1000.0)
    found = [i for i, x in enumerate(refl.hkl) if tuple(x) == tuple(hkl)]
    assert found, "the reflection turned into the diffracting condition was not predicted"
    i = found[0]
    assert refl.partiality[i] == pytest.approx(1.0, abs=1e-9)
    a, b, c = CELL[:3]
    d = 1.0 / math.sqrt((hkl[0] / a) ** 2 + (hkl[1] / b) ** 2 + (hkl[2] / c) ** 2)
    two_theta = 2.0 * math.asin(geom.wavelength_a / (2.0 * d))
    r_px = geom.distance_m * math.tan(two_theta) / geom.pixel_size_m
    phi = math.radians(azimuth)
    assert refl.fs[i] == pytest.approx(center[0] + r_px * math.cos(phi), abs=1e-6)
    assert refl.ss[i] == pytest.approx(center[1] + r_px * math.sin(phi), abs=1e-6)
    # and the rendered spot's centroid is there too (noise-free image)
    image = np.zeros(geom.shape, np.float64)
    render_spots(image, refl.fs[i:i + 1], refl.ss[i:i + 1], np.array([1000.0]), 0.7)
    rows, cols = np.indices(image.shape)
    assert image.sum() == pytest.approx(1000.0, rel=1e-3)
    assert (image * cols).sum() / image.sum() == pytest.approx(refl.fs[i], abs=0.05)
    assert (image * rows).sum() / image.sum() == pytest.approx(refl.ss[i], abs=0.05)


def test_every_predicted_spot_satisfies_braggs_law_from_its_pixel_position():
    """For random orientations, the scattering angle read back from each strong
    spot's pixel (distance, pixel size, beam centre) matches the reflection's d
    spacing, within what the excitation error allows."""
    geom = geometry(beam_center=(180.0, 210.0))
    structure = make_structure(CELL, "I4122", 2.5, 1)
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(5):
        refl = predict_reflections(structure, random_rotation(rng), geom, mosaicity_deg=0.1, bandwidth=0.002,
                                   size_um=1.0, wilson_b=30.0, photons_per_unit=100.0)
        strong = refl.partiality > 0.5
        x = (refl.fs[strong] - geom.beam_center[0]) * geom.pixel_size_m
        y = (refl.ss[strong] - geom.beam_center[1]) * geom.pixel_size_m
        two_theta = np.arctan2(np.hypot(x, y), geom.distance_m)
        h, k, l = refl.hkl[strong].T
        d = 1.0 / np.sqrt((h / 58.0) ** 2 + (k / 58.0) ** 2 + (l / 173.0) ** 2)
        expected = 2.0 * np.arcsin(geom.wavelength_a / (2.0 * d))
        # excitation error of a partiality > 0.5 spot moves 2 theta by well under 0.2 degree here
        assert np.all(np.abs(np.degrees(two_theta - expected)) < 0.2)
        checked += int(strong.sum())
    assert checked > 50


def test_intensity_falls_off_with_resolution_as_wilson_b_says():
    geom = geometry(shape=(700, 700), beam_center=(349.5, 349.5))
    structure = make_structure(CELL, "I4122", 2.2, 1)
    rng = np.random.default_rng(0)
    s_all, full_all = [], []
    for _ in range(30):
        refl = predict_reflections(structure, random_rotation(rng), geom, mosaicity_deg=0.15, bandwidth=0.002,
                                   size_um=1.0, wilson_b=30.0, photons_per_unit=100.0)
        x = refl.fs - geom.beam_center[0]
        k_x = x * geom.pixel_size_m / np.sqrt((x * geom.pixel_size_m) ** 2 + ((refl.ss - geom.beam_center[1])
                                                                             * geom.pixel_size_m) ** 2
                                             + geom.distance_m ** 2)
        polarisation = 1.0 - k_x ** 2
        s_all.append(refl.resolution)
        full_all.append(refl.photons / refl.partiality / polarisation)
    s = np.concatenate(s_all)
    full = np.concatenate(full_all)
    low = (s > 0.08) & (s < 0.15)
    high = (s > 0.30) & (s < 0.37)
    assert low.sum() > 200 and high.sum() > 200
    ratio = full[high].mean() / full[low].mean()
    expected = np.exp(-0.5 * 30.0 * ((s[high] ** 2).mean() - (s[low] ** 2).mean()))
    assert ratio < 0.5
    assert ratio == pytest.approx(expected, rel=0.2)
    # also in the frames: spot photons per reflection fall with resolution
    assert np.median(np.concatenate(full_all)[high]) < np.median(np.concatenate(full_all)[low])


def test_noise_kernel_gives_poisson_counts_and_gaussian_read_noise():
    shape = (300, 300)
    gain = np.ones(shape, np.float32)
    panel = np.zeros(shape, np.int16)
    out = np.empty(shape, np.float32)
    for mu in (0.3, 4.0, 25.0):
        lam = np.full(shape, mu, np.float32)
        # gain 1, no read noise: the counts themselves
        noise_kernel()(lam, np.exp(-lam.astype(np.float64)), gain, panel, np.zeros(1), 0.0, 1e9, 7,
                       normal_table(), out)
        assert out.mean() == pytest.approx(mu, rel=0.02)
        assert out.var() == pytest.approx(mu, rel=0.05)
        assert np.all(out == np.round(out)) and out.min() >= 0
        if mu < 1:
            assert np.mean(out == 0) == pytest.approx(math.exp(-mu), abs=0.01)
    lam = np.zeros(shape, np.float32)
    noise_kernel()(lam, np.ones(shape), gain, panel, np.array([5.0]), 3.0, 1e9, 8, normal_table(), out)
    assert out.mean() == pytest.approx(5.0, abs=0.05)
    assert out.std() == pytest.approx(math.sqrt(9.0 + 1.0 / 12.0), rel=0.03)   # read noise + ADC rounding
    # saturation
    lam = np.full(shape, 30.0, np.float32)
    noise_kernel()(lam, np.exp(-lam.astype(np.float64)), gain * 10, panel, np.zeros(1), 0.0, 250.0, 9,
                   normal_table(), out)
    assert out.max() == 250.0


# ---------------------------------------------------------------------------
# Runs


def test_hit_rate_matches_the_setting_within_sampling_error():
    for rate in (0.3, 0.85):
        run = small_run(hit_rate=rate, shape=(360, 360))
        n = 200
        crystal = np.array([t["crystal"] for _, t in simulate_run(run, 11, n)])
        sigma = math.sqrt(rate * (1 - rate) / n)
        assert abs(crystal.mean() - rate) < 4 * sigma, (crystal.mean(), rate)


def test_frames_truth_and_regeneration_of_one_frame():
    run = small_run()
    pairs = list(simulate_run(run, 3, 12))
    frame, truth = pairs[0]
    assert frame.dtype == np.float32 and frame.shape == (400, 400)
    hits = [t for _, t in pairs if t["crystal"]]
    misses = [t for _, t in pairs if not t["crystal"]]
    assert hits and misses
    assert all(t["n_spots"] > 10 for t in hits if t["strength"] > 0.5)
    assert all(t["n_spots"] == 0 and t["n_crystals"] == 0 for t in misses)
    again, truth7 = simulate_frame(run, 3, 7)
    assert np.array_equal(again, pairs[7][0]) and truth7 == pairs[7][1]
    assert not np.array_equal(pairs[1][0], pairs[2][0])
    other, _ = simulate_frame(run, 4, 7)
    assert not np.array_equal(other, again)


def test_hot_pixels_are_fixed_for_a_run_and_gaps_are_zero():
    run = small_run(hot_pixel_density=0.001)
    sim = RunSimulator(run, 5)
    assert len(sim.detector.hot_index) > 50
    a, _ = sim.frame(0)
    b, _ = sim.frame(1)
    hot = sim.detector.hot_index
    assert np.all(a.ravel()[hot] > 100) and np.all(b.ravel()[hot] > 100)
    gaps = sim.detector.panel_id < 0
    assert gaps.any() and np.all(a[gaps] == 0)
    assert np.all(sim.detector.mask[gaps] & 1)
    # the dark run found most of the bad pixels, not all of them
    known = (sim.detector.mask.ravel()[hot] & 4) > 0
    assert 0.75 < known.mean() < 1.0
    assert np.array_equal(RunSimulator(run, 5).detector.hot_index, hot)      # fixed for the run
    assert not np.array_equal(RunSimulator(run, 6).detector.hot_index, hot)  # another run, other pixels


def test_strong_background_misses_defeat_a_total_intensity_threshold():
    run = small_run(hit_rate=0.3, strong_background_fraction=0.3, zinger_rate=0.0)
    pairs = list(simulate_run(run, 9, 120))
    total = np.array([f.sum() for f, _ in pairs])
    crystal = np.array([t["crystal"] for _, t in pairs], bool)
    strong = np.array([t["strong_background"] for _, t in pairs], bool)
    assert strong.any() and not (strong & crystal).any()
    # the brightest no-crystal frames are brighter than most crystal frames
    assert total[strong].max() > np.median(total[crystal])


def test_default_experiment_has_the_papers_runs_and_shifts():
    exp = default_experiment()
    assert exp.training_runs == ["run90", "run91", "run92", "run93"]
    assert exp.validation_runs == ["run94", "run95", "run96", "run98", "run99", "run100"]
    runs = {r.name: r for r in exp.runs}
    nominal = runs["run94"]
    shifted = [r for r in exp.runs if r.role == "validation"]
    assert any(r.gain == 2.0 for r in shifted)
    assert any(abs(r.beam_center_offset_px[0]) == 20.0 for r in shifted)
    assert any(r.hot_pixel_density >= 5.99 * nominal.hot_pixel_density for r in shifted)
    assert any(r.background >= 5 * nominal.background for r in shifted)
    assert any(r.hit_rate == 0.05 for r in shifted) and any(r.hit_rate == 0.85 for r in shifted)
    assert any(r.strength <= 0.3 * nominal.strength for r in shifted)
    assert all(0.1 <= runs[n].hit_rate <= 0.4 for n in exp.training_runs)
    assert exp.select(["90", "run100"]).run_names == ["run90", "run100"]
    assert exp.run_seed("run90") != exp.run_seed("run91")
    assert exp.run_seed("run90") == exp.run_seed("run90")
    assert exp.run("run90").detector.shape[0] >= 700


def test_second_experiment_differs_in_cell_distance_and_wavelength():
    a, b = default_experiment(), default_experiment("lysozyme")
    ra, rb = a.runs[0], b.runs[0]
    assert ra.crystal.cell != rb.crystal.cell
    assert ra.detector.distance_mm != rb.detector.distance_mm
    assert ra.beam.photon_energy_ev != rb.beam.photon_energy_ev
    frame, truth = simulate_frame(dataclasses.replace(rb, hit_rate=1.0), 1, 0)
    assert truth["crystal"] == 1 and truth["n_spots"] > 0


def test_config_rejects_unknown_keys_naming_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"hitrate.*allowed:.*hit_rate"):
        experiment_from_dict({"runs": {"run1": {"hitrate": 0.3}}})
    with pytest.raises(ConfigError, match=r"detector: unknown key\(s\) pixel_size; allowed:.*pixel_size_um"):
        experiment_from_dict({"detector": {"pixel_size": 100}, "runs": {"r": {}}})
    with pytest.raises(ConfigError, match="colour"):
        experiment_from_dict({"colour": 1, "runs": {"r": {}}})
    with pytest.raises(ConfigError, match="between 0 and 1"):
        experiment_from_dict({"runs": {"r": {"hit_rate": 1.5}}})
    with pytest.raises(ConfigError, match="expected a number"):
        experiment_from_dict({"runs": {"r": {"gain": "high"}}})
    with pytest.raises(ConfigError, match="space_group"):
        make_structure(CELL, "P6122", 3.0, 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(str(bad))
    # run-level overrides reach the shared groups
    exp = experiment_from_dict({"detector": {"distance_mm": 90.0},
                                "runs": {"a": {}, "b": {"detector_distance_mm": 120.0, "photon_energy_ev": 8000}}})
    assert exp.run("a").detector.distance_mm == 90.0 and exp.run("b").detector.distance_mm == 120.0
    assert exp.run("b").beam.photon_energy_ev == 8000.0


# ---------------------------------------------------------------------------
# Files


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base = tmp_path_factory.mktemp("sim")
    run = small_run("run96", hit_rate=0.5)
    first = write_run(str(base / "a"), run, 1234, 6)
    second = write_run(str(base / "b"), run, 1234, 6)
    third = write_run(str(base / "c"), run, 1235, 6)
    return run, first, second, third


def test_same_seed_gives_byte_identical_files(written):
    run, first, second, third = written
    assert filecmp.cmp(first.cxi, second.cxi, shallow=False)
    with open(first.geom) as a, open(second.geom) as b:
        assert a.read() == b.read()
    with h5py.File(first.cxi) as fa, h5py.File(third.cxi) as fc:
        assert not np.array_equal(fa["/entry_1/data_1/data"][0], fc["/entry_1/data_1/data"][0])
    # the files hold exactly the frames the library yields
    with h5py.File(first.cxi) as f:
        data = f["/entry_1/data_1/data"]
        assert data.dtype == np.float32 and data.shape == (6, 400, 400) and data.chunks == (1, 400, 400)
        for (frame, _), stored in zip(simulate_run(run, 1234, 6), data):
            assert np.array_equal(frame, stored)


def test_lst_lines_are_exact(written):
    _, first, _, _ = written
    with open(first.lst, "rb") as handle:
        raw = handle.read().decode()
    lines = raw.split("\n")
    assert lines[-1] == "" and len(lines) == 7
    for n, line in enumerate(lines[:-1]):
        assert line == f"{first.cxi} //{n}"
        assert re.fullmatch(r"/\S+\.cxi //\d+", line) and os.path.isabs(line.split(" ")[0])
        assert lint_line(line) is None
    assert [e.event for e in read_lst(first.lst)] == [f"//{n}" for n in range(6)]


def test_geom_has_the_expected_key_value_lines(written):
    run, first, _, _ = written
    values = {}
    with open(first.geom) as handle:
        for line in handle:
            line = line.split(";", 1)[0].strip()
            if not line:
                continue
            key, sep, value = line.partition(" = ")
            assert sep, f"not a 'key = value' line: {line!r}"
            values[key] = value
    assert values["data"] == "/entry_1/data_1/data"
    assert (values["dim0"], values["dim1"], values["dim2"]) == ("%", "ss", "fs")
    assert float(values["clen"]) == pytest.approx(run.detector.distance_mm * 1e-3)
    assert float(values["res"]) == pytest.approx(1.0 / (run.detector.pixel_size_um * 1e-6), rel=1e-5)
    assert float(values["photon_energy"]) == run.beam.photon_energy_ev
    assert float(values["adu_per_photon"]) == run.adu_per_photon
    assert values["mask"] == "/entry_1/data_1/mask"
    assert (values["p0/min_fs"], values["p0/max_fs"], values["p0/max_ss"]) == ("0", "399", "399")
    # run96's beam is 20 px off: the corner moves so that the beam stays at x = 0
    assert float(values["p0/corner_x"]) == pytest.approx(-(run.beam_center[0] + 0.5))
    assert float(values["p0/corner_x"]) == pytest.approx(-220.0)
    assert (values["p0/fs"], values["p0/ss"]) == ("+1.0x", "+1.0y")


def test_cxi_metadata_and_truth_csv(written):
    run, first, _, _ = written
    with h5py.File(first.cxi) as f:
        det = f["/entry_1/instrument_1/detector_1"]
        assert det["distance"][()] == pytest.approx(0.08)
        assert det["x_pixel_size"][()] == pytest.approx(110e-6)
        assert det["beam_center_x"][()] == pytest.approx(run.beam_center[0])
        assert f["/entry_1/instrument_1/source_1/photon_energy_ev"][()] == run.beam.photon_energy_ev
        mask = f["/entry_1/data_1/mask"][()]
        assert mask.shape == (400, 400) and (mask == 0).mean() > 0.9
    with open(first.truth, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    for key in ("file", "event", "run", "crystal", "n_crystals", "strength", "n_spots"):
        assert key in rows[0]
    assert rows[3]["file"] == first.cxi and rows[3]["event"] == "//3" and rows[3]["run"] == "run96"


def test_project_readers_read_the_simulated_files(written):
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    _, first, _, _ = written
    with FrameStore() as store:
        events = list(iter_events([first.lst], store))
        assert len(events) == 6 and all(err is None for _, err in events)
        crop = store.read(events[2][0], (slice(25, 375), slice(25, 375)))
        assert crop.shape == (350, 350)


def test_write_experiment_echoes_a_config_that_loads_back(tmp_path):
    exp = default_experiment().select(["run99"])
    exp = dataclasses.replace(exp, runs=tuple(
        dataclasses.replace(r, detector=dataclasses.replace(r.detector, shape=(360, 360))) for r in exp.runs))
    files = write_experiment(str(tmp_path), exp, seed=5, n_frames=3, compression="gzip")
    assert [f.run for f in files] == ["run99"] and files[0].n_frames == 3
    again = load_experiment(str(tmp_path / "experiment.yaml"))
    assert again.seed == 5 and again.frames_per_run == 3
    assert again.run("run99") == dataclasses.replace(exp.run("run99"), frames=None)


def test_peakfinder8_labels_nominal_hits_as_hits_and_misses_as_misses(tmp_path):
    """The paper's labels come from peakfinder8 (< 2 peaks miss, > 10 hit): at nominal
    strength, crystal frames must give well over 10 peaks and empty frames fewer than 2."""
    crystallography = pytest.importorskip("om.algorithms.crystallography")
    run = default_experiment().run("run94")
    sim = RunSimulator(run, 21)
    mask_file = tmp_path / "mask.h5"
    with h5py.File(mask_file, "w") as f:
        f["mask"] = (sim.detector.mask == 0).astype(np.int8)
    height, width = sim.detector.shape
    y, x = np.indices(sim.detector.shape)
    radius = np.hypot(x - run.beam_center[0], y - run.beam_center[1]).astype(np.float32)
    pf8 = crystallography.Peakfinder8PeakDetection(
        radius_pixel_map=radius,
        layout_info={"asic_nx": width, "asic_ny": height, "nasics_x": 1, "nasics_y": 1},
        crystallography_parameters={
            "max_num_peaks": 2048, "adc_threshold": 40.0, "minimum_snr": 5.0, "min_pixel_count": 2,
            "max_pixel_count": 40, "local_bg_radius": 3, "min_res": 0, "max_res": 10000,
            "bad_pixel_map_filename": str(mask_file), "bad_pixel_map_hdf5_path": "/mask"},
    )
    hits, misses = [], []
    for i in range(40):
        frame, truth = sim.frame(i)
        n = pf8.find_peaks(data=frame)["num_peaks"]
        if truth["crystal"] and truth["strength"] >= 0.5:
            hits.append(n)
        elif not truth["crystal"]:
            misses.append(n)
    assert len(hits) >= 5 and len(misses) >= 15
    assert min(hits) > 20, hits
    assert np.mean(np.array(misses) < 2) >= 0.9, misses
