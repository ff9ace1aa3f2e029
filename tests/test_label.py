"""Labelling: peakfinder8 on synthetic frames, the paper's and the percentile rules, the CSV, existing counts."""

from __future__ import annotations

import csv
import os

import h5py
import numpy as np
import pytest

from sfx_cnn_veto.cli import main
from sfx_cnn_veto.training import labels as L
from sfx_cnn_veto.training.peaks import Peakfinder8Counter, radius_map

from train_helpers import write_run

pytest.importorskip("om.algorithms.crystallography")


def _spots(frame, positions, amplitude=300.0, sigma=0.8):
    yy, xx = np.mgrid[-3:4, -3:4]
    blob = amplitude * np.exp(-(yy ** 2 + xx ** 2) / (2 * sigma ** 2))
    for y, x in positions:
        frame[y - 3:y + 4, x - 3:x + 4] += blob
    return frame


def test_paper_rule_boundaries():
    assert L.paper_rule([0, 1, 2, 10, 11, 50, None]) == [0, 0, None, None, 1, 1, None]
    assert L.paper_rule([3, 4, 5], miss_below=4, hit_above=4) == [0, None, 1]


def test_percentile_rule_quartiles():
    counts = list(range(100))
    labels = L.percentile_rule(counts, percentile=25)
    q1, q3 = np.percentile(counts, 25), np.percentile(counts, 75)
    assert labels.count(0) == sum(c <= q1 for c in counts) == 25
    assert labels.count(1) == sum(c >= q3 for c in counts) == 25
    assert all(lab == 0 for c, lab in zip(counts, labels) if c <= 24)
    assert all(lab == 1 for c, lab in zip(counts, labels) if c >= 75)
    assert L.percentile_rule([None, 5]) == [None, 0]


def test_peakfinder8_counts_spots_not_hot_pixels():
    rng = np.random.default_rng(1)
    frame = rng.normal(100, 5, (128, 128)).astype(np.float32)
    positions = [(20 + 22 * (i // 4), 20 + 25 * (i % 4)) for i in range(12)]
    _spots(frame, positions)
    counter = Peakfinder8Counter({})
    assert counter(frame) == 12
    noise = rng.normal(100, 5, (128, 128)).astype(np.float32)
    assert counter(noise) == 0
    noise[[10, 50, 90], [30, 70, 100]] = 20000.0  # single hot pixels: below min_pix_count 2
    assert counter(noise) == 0
    found = counter.find(frame)
    got = sorted(zip(np.round(found["ss"]).astype(int), np.round(found["fs"]).astype(int)))
    assert got == sorted(positions)


def test_peakfinder8_mask_and_resolution_limits():
    rng = np.random.default_rng(2)
    frame = _spots(rng.normal(100, 5, (128, 128)).astype(np.float32), [(20, 20), (64, 90), (100, 100), (30, 64)])
    mask = np.ones((128, 128), dtype=bool)
    mask[:40, :40] = False
    assert Peakfinder8Counter({"mask": mask})(frame) == 3
    r = radius_map((128, 128))
    assert Peakfinder8Counter({"max_res": 40})(frame) == sum(r[y, x] <= 40 for y, x in [(20, 20), (64, 90), (100, 100), (30, 64)])


def _read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def test_label_cli_csv_every_event_and_errors(tmp_path, capsys):
    lst, truth = write_run(str(tmp_path), "run7", 30, seed=3)
    with open(lst, "a") as handle:
        handle.write(f"{tmp_path}/missing.cxi //0\n")
        handle.write(f"{tmp_path}/run7.cxi //99\n")
    out = tmp_path / "labels.csv"
    code = main(["label", lst, "-o", str(out)])
    assert code == 2  # some events could not be read
    header, rows = _read_csv(out)
    assert header == ["file", "event", "run", "num_peaks", "label"]
    assert len(rows) == 32
    assert {r[2] for r in rows} == {"run7"}
    assert rows[0][1] == "//0" and rows[0][0] == str(tmp_path / "run7.cxi")
    assert rows[-2][3:] == ["", ""] and rows[-1][3:] == ["", ""]
    err = capsys.readouterr().err
    assert "missing.cxi" in err and "//99" in err
    parsed = L.read_labels(str(out))
    for row, hit in zip(parsed[:30], truth):
        n = row.num_peaks
        assert row.label == (None if 2 <= n <= 10 else int(n > 10))
        if hit:
            assert n >= 8
        else:
            assert n <= 1
    assert sum(r.label == 1 for r in parsed) >= 0.8 * truth.sum()


def test_label_percentile_rule_and_run_names(tmp_path):
    lst, _ = write_run(str(tmp_path), "a", 20, seed=4)
    out = tmp_path / "l.csv"
    assert main(["label", lst, "-o", str(out), "--rule", "percentile", "--run", "myrun"]) == 0
    rows = L.read_labels(str(out))
    assert {r.run for r in rows} == {"myrun"}
    counts = [r.num_peaks for r in rows]
    assert [r.label for r in rows] == L.percentile_rule(counts, percentile=25)


def test_counts_from_stream_hitlist_and_cxi(tmp_path):
    lst, _ = write_run(str(tmp_path), "r1", 4, seed=5)
    cxi = str(tmp_path / "r1.cxi")
    counts = [0, 15, 5, 1]
    # a CrystFEL stream with chunks out of order (indexamajig -j 2), OM-style event ID on one
    chunks = []
    for i in (2, 0, 3, 1):
        event = f"// {i:04d}" if i == 3 else f"//{i}"
        chunks.append(
            "----- Begin chunk -----\n"
            f"Image filename: {cxi}\nEvent: {event}\nImage serial number: {i + 1}\nhit = {int(counts[i] > 10)}\n"
            f"indexed_by = none\nnum_peaks = {counts[i]}\n"
            "Peaks from peak search\n  fs/px   ss/px (1/d)/nm^-1   Intensity  Panel\nEnd of peak list\n"
            "----- End chunk -----\n")
    stream = tmp_path / "x.stream"
    stream.write_text("CrystFEL stream format 2.3\nGenerated by CrystFEL 0.10.2\n" + "".join(chunks))
    out = tmp_path / "s.csv"
    assert main(["label", lst, "-o", str(out), "--stream", str(stream)]) == 0
    assert [r.num_peaks for r in L.read_labels(str(out))] == counts
    assert [r.label for r in L.read_labels(str(out))] == [0, 1, None, 0]

    cleaned = tmp_path / "cleaned.txt"
    cleaned.write_text("# Filename, frameNumber, nPeaks, nPixels, totalIntensity, peakResolution, peakResolutionA, "
                       "peakDensity\n" + "".join(f"r1.cxi, {i}, {c}, 10, 1000.0, 100, 2.5, 0.1\n"
                                                 for i, c in enumerate(counts[:3])))
    out2 = tmp_path / "h.csv"
    assert main(["label", lst, "-o", str(out2), "--hitlist", str(cleaned)]) == 2  # event 3 has no count
    assert [r.num_peaks for r in L.read_labels(str(out2))] == counts[:3] + [None]

    with h5py.File(cxi, "a") as f:
        f["/entry_1/result_1/nPeaks"] = np.array(counts, dtype=np.int32)
    out3 = tmp_path / "c.csv"
    assert main(["label", lst, "-o", str(out3), "--cxi-npeaks"]) == 0
    assert [r.num_peaks for r in L.read_labels(str(out3))] == counts


def test_geometry_centre_and_mask(tmp_path):
    from sfx_cnn_veto.io.geometry import read_geometry
    from sfx_cnn_veto.io.masks import cxi_mask, geom_mask

    cxi = tmp_path / "m.cxi"
    mask = np.zeros((64, 80), dtype=np.uint16)
    mask[:, :10] = 1  # bad
    with h5py.File(cxi, "w") as f:
        f["/entry_1/data_1/mask"] = mask
    path = tmp_path / "g.geom"
    path.write_text("clen = 0.08 ; comment\nres = 9090.9\nmask = /entry_1/data_1/mask\nmask_bad = 0x1\n"
                    "p0/min_fs = 0\np0/max_fs = 79\np0/min_ss = 0\np0/max_ss = 63\n"
                    "p0/corner_x = -30\np0/corner_y = -40.5\np0/fs = +1.0x\np0/ss = +1.0y\n")
    geom = read_geometry(str(path))
    assert geom.beam_center() == (40.5, 30.0)  # pixel i spans [i, i + 1): the beam is 30 pixel widths in
    good = geom_mask(geom, str(cxi), (64, 80))
    assert good[:, :10].sum() == 0 and good[:, 10:].all()
    assert (cxi_mask(str(cxi), (64, 80)) == good).all()
    assert geom.globals["clen"] == "0.08"


def test_psana_peakfinder8_agrees_with_om():
    pytest.importorskip("psana.peakfinder8")
    from sfx_cnn_veto import manager

    rng = np.random.default_rng(7)
    frame = _spots(rng.normal(100, 5, (128, 128)).astype(np.float32),
                   [(20 + 22 * (i // 4), 20 + 25 * (i % 4)) for i in range(12)])
    specs = manager.labelers()
    om = specs["peakfinder8"].create({})
    ps = specs["psana-peakfinder8"].create({})
    assert ps(frame) == om(frame) == 12
    assert ps(rng.normal(100, 5, (128, 128)).astype(np.float32)) == 0


@pytest.mark.parametrize("labeler", ["peakfinder8", "psana-peakfinder8"])
def test_a_mask_of_another_shape_than_the_frame_is_refused(labeler):
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.errors import FrameReadError

    if labeler.startswith("psana"):
        pytest.importorskip("psana.peakfinder8")
    count = manager.labelers()[labeler].create({"mask": np.ones((32, 30), np.uint8)})
    with pytest.raises(FrameReadError, match="mask of shape \\(32, 30\\) does not match the 32x32 frame"):
        count(np.zeros((32, 32), np.float32))
    frame = _spots(np.random.default_rng(3).normal(100, 5, (64, 64)).astype(np.float32), [(20, 20), (40, 44)])
    left_bad = np.ones((64, 64), np.uint8)
    left_bad[:, :32] = 0
    assert manager.labelers()[labeler].create({})(frame) == 2
    assert manager.labelers()[labeler].create({"mask": left_bad})(frame) == 1


def test_label_cli_counts_with_the_psana_adapters_peakfinder8_as_with_oms(tmp_path):
    pytest.importorskip("psana.peakfinder8")
    from sfx_cnn_veto import manager

    assert manager.provider_of("sfxveto_labelers", "psana-peakfinder8") == "psana"
    lst, _truth = write_run(str(tmp_path), "p1", 8, seed=3, hit_rate=0.5)
    om_csv, psana_csv = tmp_path / "om.csv", tmp_path / "psana.csv"
    assert main(["label", lst, "-o", str(om_csv)]) == 0
    assert main(["label", lst, "-o", str(psana_csv), "--labeler", "psana-peakfinder8"]) == 0
    om_counts = [r.num_peaks for r in L.read_labels(str(om_csv))]
    assert [r.num_peaks for r in L.read_labels(str(psana_csv))] == om_counts
    assert max(om_counts) > 0


def test_label_cli_uses_the_geometry_mask_and_threshold(tmp_path, capsys):
    """The geometry's mask (right half bad) replaces the CXI file's own (left half bad), and its
    adu_per_photon sets the threshold: the counts equal an explicit run with that mask and 30 ADU."""
    lst, truth = write_run(str(tmp_path), "g1", 12, seed=8, hit_rate=1.0)
    with h5py.File(tmp_path / "g1.cxi", "a") as f:
        own = np.zeros((96, 96), dtype=np.uint16)
        own[:, :48] = 1  # the file's own CXI mask: left half bad
        f["/entry_1/data_1/mask"] = own
        geom_raw = np.zeros((96, 96), dtype=np.uint16)
        geom_raw[:, 48:] = 4  # the geometry's mask: right half bad
        f["/geometry/mask"] = geom_raw
    right_good = np.ones((96, 96), bool)
    right_good[:, 48:] = False
    np.save(tmp_path / "right_bad.npy", right_good)
    (tmp_path / "g1.geom").write_text(
        "adu_per_photon = 10\nmask = /geometry/mask\nmask_good = 0x0\nmask_bad = 0xffff\n"
        "p0/min_fs = 0\np0/max_fs = 95\np0/min_ss = 0\np0/max_ss = 95\np0/corner_x = -48\np0/corner_y = -48\n"
        "p0/fs = +1.0x\np0/ss = +1.0y\n")
    with_geom, explicit, own_mask = (tmp_path / n for n in ("geom.csv", "explicit.csv", "own.csv"))
    assert main(["label", lst, "-o", str(with_geom)]) == 0
    assert "threshold 30 ADU (3 photons x 10 ADU/photon)" in capsys.readouterr().err
    (tmp_path / "g1.geom").rename(tmp_path / "g1.geom.off")
    assert main(["label", lst, "-o", str(explicit), "--mask", str(tmp_path / "right_bad.npy"),
                 "--threshold", "30"]) == 0
    assert main(["label", lst, "-o", str(own_mask), "--threshold", "30"]) == 0
    n_geom, n_explicit, n_own = ([r.num_peaks for r in L.read_labels(str(p))]
                                 for p in (with_geom, explicit, own_mask))
    assert n_own != n_explicit  # the two masks give different counts on these frames: the test can tell
    assert n_geom == n_explicit


def test_label_in_worker_processes_writes_the_same_labels_and_errors_as_in_one(tmp_path, capsys):
    lists = [write_run(str(tmp_path), f"run{k}", 12, seed=20 + k)[0] for k in range(3)]
    with open(lists[1], "a") as handle:  # an event that cannot be read, counted in a worker
        handle.write(f"{tmp_path}/run1.cxi //99\n")
    outs, errs = [], []
    for jobs in ("1", "2"):
        out = tmp_path / f"labels_{jobs}.csv"
        assert main(["label", *lists, "-o", str(out), "--jobs", jobs]) == 2
        outs.append(out.read_text())
        errs.append(capsys.readouterr().err)
    assert outs[0] == outs[1]
    assert len(_read_csv(tmp_path / "labels_2.csv")[1]) == 37
    assert all("run1.cxi //99" in err or "//99" in err for err in errs)
    assert sum(row.label == 1 for row in L.read_labels(str(tmp_path / "labels_2.csv"))) > 0
