"""``sfx-cnn-veto bench --quick --json`` runs and writes the headline keys; the fast paths keep every event."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sfx_cnn_veto import bench  # noqa: E402

KEYS = ("machine", "veto_end_to_end_fps", "default_end_to_end_fps", "batch1_latency_ms",
        "pf8_full_frame_ms", "pf8_crop_ms", "ratio_pf8_full_over_veto")
#: Issue 18's keys (ratios in wall and CPU time, OM's batch-1 latency, the 64-panel crop map).
KEYS_18 = ("default_batch1_latency_ms", "ratio_pf8_full_over_default", "ratio_pf8_full_over_default_cpu",
           "ratio_pf8_full_over_veto_cpu", "crop_map_ms", "ratio_pf8_full_over_default_batch1")


def test_bench_quick_json(tmp_path, capsys):
    pytest.importorskip("om")
    from sfx_cnn_veto.cli import main

    out = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--frames", "48", "--file-frames", "2", "--batch-size", "16",
                 "--json", str(out), "--workdir", str(tmp_path / "work")])
    assert code == 0
    data = json.loads(out.read_text())
    for key in KEYS:
        assert key in data
    assert data["machine"]["cores_available"] >= 1
    assert data["veto_end_to_end_fps"] > 0 and data["batch1_latency_ms"] > 0
    assert data["pf8_full_frame_ms"] > 0 and data["pf8_crop_ms"] > 0 and data["ratio_pf8_full_over_veto"] > 0
    e2e = data["networks"]["paper"]["end_to_end"]
    assert e2e["events"] == 48 and e2e["counts"]["error"] == 0
    for key in KEYS_18:
        assert data[key] > 0, key
        assert key in data["targets"] and data["targets"][key]["measured"] == data[key], key
    assert data["crop_map"]["panels"] == 64 and data["crop_map"]["layout"].endswith("jungfrau4M.geom")
    om_backend = data["networks"]["default"]["batch1_latency"]
    assert om_backend["om_default_backend"] == "auto" and om_backend["backend"] in ("numba", "keras")
    # as OM runs it with one processing rank per core (1 thread), and with one rank on every core
    assert om_backend["threads"] == 1 and data["networks"]["default"]["batch1_latency_all_threads"]["threads"] == "all"
    assert data["default_batch1_latency_all_threads_ms"] > 0
    printed = capsys.readouterr().out
    assert "peakfinder8 / veto" in printed and "read_crop" in printed
    assert "crop_map_ms" in printed and "CPU time" in printed and "1 thread(s)" in printed


def test_synthetic_frames_have_spots_in_the_crop():
    rng = np.random.default_rng(0)
    hit = bench.synthetic_frame(rng, (400, 400), hit=True)
    miss = bench.synthetic_frame(rng, (400, 400), hit=False)
    assert hit.dtype == np.float32 and hit.shape == (400, 400)
    crop = slice(25, 375)
    assert (hit[crop, crop] > 250).sum() > (miss[crop, crop] > 250).sum() + 10


@pytest.fixture(scope="module")
def small_veto(tmp_path_factory):
    from sfx_cnn_veto.core.architectures import build_paper_model
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.pipeline import Veto

    path = str(tmp_path_factory.mktemp("model") / "m.keras")
    VetoModel(build_paper_model(seed=0), ModelMetadata(architecture="paper", input_shape=(350, 350, 1),
                                                       crop_shape=(350, 350), normalize="standardize")).save(path)
    return {name: Veto.load(path, backend=name, batch_size=4) for name in ("numba", "keras")}


def test_stream_events_keeps_every_event_in_order(small_veto, tmp_path):
    """Reads of crops (row blocks) in the prefetch thread, errors fail open, order kept, same scores as in memory."""
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    cxi = str(tmp_path / "f.cxi")
    bench.write_cxi(cxi, 5, shape=(400, 420))
    lst = tmp_path / "f.lst"
    lines = [f"{cxi} //{i}" for i in (0, 1, 9, 2, 3)] + [f"{tmp_path}/missing.cxi //0", f"{cxi} //4"]
    lst.write_text("\n".join(lines) + "\n")
    import h5py

    with h5py.File(cxi, "r", locking=False) as handle:
        frames = handle["/entry_1/data_1/data"][:]
    for name, veto in small_veto.items():
        with FrameStore() as store:
            out = list(veto.stream_events(iter_events([str(lst)], store), store))
        assert [ref.lst_line() for ref, _ in out] == lines
        labels = [d.label for _, d in out]
        assert labels[2] == "error" and labels[5] == "error"
        assert all(d.is_hit for _, d in out if d.error)  # fail open
        good = [0, 1, 3, 4, 6]
        want = veto.score(frames[[0, 1, 2, 3, 4]])
        np.testing.assert_allclose([out[i][1].score for i in good], want, atol=1e-6)


def test_stream_reuses_buffer_but_keeps_results(small_veto):
    veto = small_veto["numba"]
    rng = np.random.default_rng(5)
    frames = [bench.synthetic_frame(rng, (360, 360), hit=bool(i % 2)) for i in range(9)]
    items = list(enumerate(frames))
    items.insert(4, ("bad", ValueError("unreadable")))
    items.insert(6, ("small", np.zeros((100, 100), np.float32)))
    out = list(veto.stream(items))
    assert [k for k, _ in out] == [k for k, _ in items]
    alone = [veto.score([f])[0] for f in frames]
    scores = [d.score for k, d in out if k not in ("bad", "small")]
    np.testing.assert_allclose(scores, alone, atol=1e-6)
    assert dict(out)["bad"].error == "unreadable" and dict(out)["small"].error


def test_hdf5_crop_read_equals_hyperslab(tmp_path):
    import h5py

    from sfx_cnn_veto.core.crop import crop_region
    from sfx_cnn_veto.io.hdf5 import HDF5Source

    cxi = str(tmp_path / "r.cxi")
    bench.write_cxi(cxi, 2, shape=(500, 480))
    region = crop_region((500, 480), (350, 350), (200.4, 300.0))
    with HDF5Source(cxi) as src, h5py.File(cxi, "r", locking=False) as handle:
        got = src.read("//1", region)
        want = handle["/entry_1/data_1/data"][1][region]
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
