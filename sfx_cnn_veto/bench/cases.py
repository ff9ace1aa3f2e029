"""The in-process measurements: reading crops, normalizing, the network alone, the veto end to end, peakfinder8."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sfx_cnn_veto.bench.inputs import CROP_SHAPE, FRAME_SHAPE
from sfx_cnn_veto.io.cxi import DATA_PATH
from sfx_cnn_veto.bench.timing import cpu_seconds, stats, timed, with_cpu

#: OM peakfinder8 settings used for both frame sizes (typical SFX values).
PF8_PARAMETERS = {
    "max_num_peaks": 2048,
    "adc_threshold": 100.0,
    "minimum_snr": 5.0,
    "min_pixel_count": 2,
    "max_pixel_count": 30,
    "local_bg_radius": 3,
    "min_res": 0,
    "max_res": 100000,
    "bad_pixel_map_filename": None,
    "bad_pixel_map_hdf5_path": None,
    "fast_mode": False,
}


def bench_reading(cxi: str, n_frames: int, repeats: int) -> dict[str, Any]:
    """Three ways to get a 350x350 crop of a 1750x1750 frame out of the CXI file, interleaved."""
    import h5py

    from sfx_cnn_veto.core.crop import crop_region
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.store import FrameStore

    region = crop_region(FRAME_SHAPE, CROP_SHAPE)
    refs = [EventRef(cxi, f"//{i}", cxi) for i in range(n_frames)]
    ys, xs = region
    ways = {"read_crop_hdf5_hyperslab": [], "read_crop_row_block (reader default)": [],
            "read_full_frame_then_crop": []}
    with FrameStore() as store, h5py.File(cxi, "r", locking=False) as handle:
        ds = handle[DATA_PATH]
        calls = {
            "read_crop_hdf5_hyperslab": lambda i, ref: ds[i, ys, xs],
            "read_crop_row_block (reader default)": lambda i, ref: store.read(ref, region),
            "read_full_frame_then_crop": lambda i, ref: np.ascontiguousarray(store.read(ref)[region]),
        }
        for func in calls.values():
            func(0, refs[0])
        for _ in range(repeats):
            for i, ref in enumerate(refs):
                for name, func in calls.items():
                    start = time.perf_counter()
                    func(i, ref)
                    ways[name].append(time.perf_counter() - start)
    return {name: stats(seconds) for name, seconds in ways.items()}

def load_crops(cxi: str, n_frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from sfx_cnn_veto.core.crop import crop_region
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.store import FrameStore

    region = crop_region(FRAME_SHAPE, CROP_SHAPE)
    full, crops = [], []
    with FrameStore() as store:
        for i in range(n_frames):
            frame = store.read(EventRef(cxi, f"//{i}", cxi))
            full.append(frame)
            crops.append(np.ascontiguousarray(frame[region]))
    return full, crops

def bench_normalize(crops: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """The normalizations in NumPy and, for despeckle and robust, the compiled pass the veto uses."""
    from sfx_cnn_veto.core import fastnorm, normalize

    funcs = {name: getattr(normalize, name) for name in ("standardize", "robust", "despeckle")}
    for name in ("robust", "despeckle"):
        compiled = fastnorm.compiled_normalizer(funcs[name], {})
        if compiled is not None:
            funcs[f"{name}_compiled"] = compiled
            compiled(crops[0])  # compile (or load numba's cache) before timing
    out = {}
    for name, func in funcs.items():
        seconds = []
        for _ in range(repeats):
            for crop in crops:
                start = time.perf_counter()
                func(crop)
                seconds.append(time.perf_counter() - start)
        out[f"normalize_{name}"] = stats(seconds)
    return out

def bench_network(veto, crops: list[np.ndarray], batch: int, repeats: int, repeats_b1: int) -> dict[str, Any]:
    """The classifier alone on preprocessed crops: batch 1 and batch ``batch``."""
    pre = np.stack([veto.preprocess(c, cropped=True) for c in crops])[..., None]
    big = pre[np.arange(batch) % len(pre)]
    one = [pre[i:i + 1] for i in range(len(pre))]
    counter = iter(range(10**9))
    b1 = with_cpu(lambda: stats(timed(lambda: veto.classifier.predict(one[next(counter) % len(one)]),
                                      repeats_b1, warmup=3)),
                  lambda r: r["samples"] + 3)
    bb = with_cpu(lambda: stats(timed(lambda: veto.classifier.predict(big), repeats, warmup=1), per=batch),
                  lambda r: (r["samples"] + 1) * batch)
    return {"batch1": b1, f"batch{batch}": bb, "batch_size": batch}

def run_stream(veto, lst: str) -> tuple[int, float, dict[str, int]]:
    """The ``score`` path on a list: every event decided; returns (events, seconds, counts)."""
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    counts = {"hit": 0, "miss": 0, "error": 0}
    start = time.perf_counter()
    with FrameStore() as store:
        for _ref, decision in veto.stream_events(iter_events([lst], store), store):
            counts[decision.label] += 1
    return sum(counts.values()), time.perf_counter() - start, counts

def bench_end_to_end(veto, lst: str, repeats: int) -> dict[str, Any]:
    run_stream(veto, lst)  # warm: files open, page cache, kernels
    seconds, events, counts = [], 0, {}
    cpu = cpu_seconds()
    for _ in range(repeats):
        events, elapsed, counts = run_stream(veto, lst)
        seconds.append(elapsed)
    cpu = cpu_seconds() - cpu
    result = stats(seconds, per=events)
    result["cpu_ms_per_frame"] = cpu * 1e3 / (events * repeats)
    result.update({"events": events, "counts": counts, "backend": veto.backend_name,
                   "batch_size": veto.batch_size})
    return result

def make_pf8(shape):
    from om.algorithms.crystallography import Peakfinder8PeakDetection

    h, w = shape
    y, x = np.indices(shape)
    radius = np.hypot(y - h / 2.0, x - w / 2.0).astype(np.float32)
    return Peakfinder8PeakDetection(
        radius_pixel_map=radius,
        layout_info={"asic_nx": w, "asic_ny": h, "nasics_x": 1, "nasics_y": 1},
        crystallography_parameters=dict(PF8_PARAMETERS),
    )

def bench_pf8(full: list[np.ndarray], crops: list[np.ndarray], repeats_full: int, repeats_crop: int) -> dict[str, Any]:
    try:
        pf_full, pf_crop = make_pf8(FRAME_SHAPE), make_pf8(CROP_SHAPE)
    except ImportError as exc:
        return {"error": f"OM is not installed ({exc}); pip install ondamonitor==23.8.3"}
    out = {}
    for name, finder, frames, repeats in (("pf8_full_frame", pf_full, full, repeats_full),
                                          ("pf8_crop", pf_crop, crops, repeats_crop)):
        finder.find_peaks(data=frames[0])
        seconds, peaks = [], []
        cpu = cpu_seconds()
        for _ in range(repeats):
            for frame in frames:
                start = time.perf_counter()
                found = finder.find_peaks(data=frame)
                seconds.append(time.perf_counter() - start)
                peaks.append(found["num_peaks"])
        cpu = cpu_seconds() - cpu
        out[name] = stats(seconds)
        out[name]["cpu_ms_per_frame"] = cpu * 1e3 / len(seconds)
        out[name]["mean_peaks"] = float(np.mean(peaks))
    return out


def bench_latency(veto, full: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """What OM does with each frame: ``veto.decide([frame])`` on a full frame in memory, one at a time.

    Crop, mask, normalization and the network at batch 1, with CPU time; the
    veto as OM loads it (``batch_size=1``, its default backend).
    """
    veto.decide([full[0]])
    seconds = []
    cpu = cpu_seconds()
    for _ in range(repeats):
        for frame in full:
            start = time.perf_counter()
            veto.decide([frame])
            seconds.append(time.perf_counter() - start)
    cpu = cpu_seconds() - cpu
    result = stats(seconds)
    result["cpu_ms_per_frame"] = cpu * 1e3 / len(seconds)
    result["backend"] = veto.backend_name
    return result
