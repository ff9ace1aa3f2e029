"""``sfx-cnn-veto bench``: the veto and OM's peakfinder8 timed side by side, in one run.

Everything is measured in one process on the same frames, which the command
writes itself: a temporary CXI file of 1750x1750 float32 frames (one HDF5
chunk a frame, as detectors write them) with Bragg-like spots on a water-ring
background, and a ``.lst`` that cycles over its events. Reported, as the
median and the 10th-90th percentile of ms/frame, with frames/s:

* reading a 350x350 crop from the CXI file (hyperslab) against reading the
  whole frame and cropping it;
* normalization (``standardize``, ``robust``);
* the CNN alone at batch 1 and at the streaming batch size, for every backend
  and for the paper's network and the project's default one (architecture
  ``default``, when registered);
* the whole veto end to end on the ``.lst`` (the ``score`` path:
  ``iter_events`` + ``Veto.stream_events``, reading only crops, prefetching);
* OM's compiled peakfinder8 on the full frames and on the crops;
* peak memory (RSS) of streaming runs of 1k and 10k events (subprocesses),
  and ``mpirun -n 2`` against one rank (when ``mpirun`` is there).

Timings on a shared machine are noisy: compare figures of the same run. The
JSON (``--json``) holds everything, with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterable

import numpy as np

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.types import CommandSpec

FRAME_SHAPE = (1750, 1750)
CROP_SHAPE = (350, 350)

#: The issue's targets on the 2-core machine (printed beside the figures).
TARGETS = {
    "veto_end_to_end_fps": 500.0,
    "ratio_pf8_full_over_veto": 45.0,
    "batch1_latency_ms": 3.0,
    "default_end_to_end_fps": 1000.0,
}

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


# ---------------------------------------------------------------------------
# Frames and files

def synthetic_frame(rng: np.random.Generator, shape=FRAME_SHAPE, *, hit: bool) -> np.ndarray:
    """A float32 frame: water ring + noise, hot pixels, and Bragg-like spots when ``hit``.

    A stand-in for the simulator (branch ``sim``): enough structure for the
    peak finder and the network to do their normal amount of work.
    """
    h, w = shape
    y, x = np.ogrid[:h, :w]
    r = np.hypot(y - h / 2.0, x - w / 2.0).astype(np.float32)
    background = 8.0 + 40.0 * np.exp(-(((r - 0.35 * min(h, w)) / (0.08 * min(h, w))) ** 2))
    frame = background + np.sqrt(background) * rng.standard_normal(shape, dtype=np.float32)
    hot = rng.integers(0, [h, w], size=(20, 2))
    frame[hot[:, 0], hot[:, 1]] += 5e4
    if hit:
        n = int(rng.integers(40, 160))
        # half the spots near the beam (inside the crop), half anywhere
        near = rng.normal([h / 2, w / 2], min(h, w) / 8, size=(n // 2, 2))
        far = rng.uniform([4, 4], [h - 4, w - 4], size=(n - n // 2, 2))
        centres = np.clip(np.concatenate([near, far]), 4, [h - 5, w - 5])
        amplitude = rng.uniform(300, 3000, size=n).astype(np.float32)
        yy, xx = np.mgrid[-3:4, -3:4]
        for (cy, cx), a in zip(centres, amplitude):
            iy, ix = int(cy), int(cx)
            fy, fx = cy - iy, cx - ix
            frame[iy - 3:iy + 4, ix - 3:ix + 4] += a * np.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / 2.0)
    return frame.astype(np.float32, copy=False)


def simulated_frames(frames: int, shape=FRAME_SHAPE, *, run_name: str = "run90"):
    """``frames`` frames of the project's simulator (:mod:`sfx_cnn_veto.simulate`), detector resized to ``shape``."""
    import dataclasses

    from sfx_cnn_veto.simulate import default_experiment, simulate_run

    experiment = default_experiment()
    run = experiment.run(run_name)
    run = dataclasses.replace(run, detector=dataclasses.replace(run.detector, shape=tuple(shape)))
    for frame, truth in simulate_run(run, experiment.run_seed(run), frames):
        yield np.asarray(frame, dtype=np.float32), bool(truth.get("crystal"))


def write_cxi(path: str, frames: int, *, seed: int = 0, shape=FRAME_SHAPE, simulator: bool = False) -> list[bool]:
    """Write ``frames`` frames to ``/entry_1/data_1/data`` (one chunk a frame); returns hit flags.

    ``simulator=True`` uses the project's simulator (run ``run90`` of the
    default experiment on a ``shape`` detector, ~0.6 s a 1750x1750 frame
    here), else :func:`synthetic_frame` (fast).
    """
    from sfx_cnn_veto.io.cxi import write_cxi as write_frames

    rng = np.random.default_rng(seed)
    if simulator:
        source = simulated_frames(frames, shape)
    else:
        source = ((synthetic_frame(rng, shape, hit=bool(i % 2)), bool(i % 2)) for i in range(frames))
    hits: list[bool] = []

    def frames_only():
        for frame, hit in source:
            hits.append(hit)
            yield frame

    write_frames(path, frames_only(), n_frames=frames, shape=shape)
    return hits


def write_lst(path: str, cxi: Iterable[str], frames_per_file: int, events: int) -> str:
    """A CrystFEL list of ``events`` lines cycling over the files' events."""
    cxi = list(cxi)
    with open(path, "w") as handle:
        for i in range(events):
            handle.write(f"{cxi[(i // frames_per_file) % len(cxi)]} //{i % frames_per_file}\n")
    return path


# ---------------------------------------------------------------------------
# Timing helpers

def stats(seconds: list[float], per: int = 1) -> dict[str, Any]:
    """Median and 10th/90th percentiles of ms/frame, frames/s, from call times of ``per`` frames."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3 / per
    med = float(np.median(ms))
    return {
        "ms_per_frame": med,
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "fps": 1e3 / med if med > 0 else float("inf"),
        "samples": int(len(ms)),
        "frames_per_sample": per,
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    t = os.times()
    return t.user + t.system


def timed(func: Callable[[], Any], repeats: int, *, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        func()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return out


def with_cpu(func: Callable[[], dict[str, Any]], frames: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
    """Run ``func`` and add ``cpu_ms_per_frame``: CPU time (all threads) over frames done.

    On a shared machine wall time depends on the other users; CPU time much less.
    """
    start = cpu_seconds()
    result = func()
    n = frames(result)
    result["cpu_ms_per_frame"] = (cpu_seconds() - start) * 1e3 / n if n else None
    return result


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "node": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": platform.processor() or "",
        "load_average_start": list(os.getloadavg()),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "tensorflow", "keras", "numba", "h5py", "om", "sfx_cnn_veto"):
        try:
            from importlib import metadata

            dist = {"om": "ondamonitor", "sfx_cnn_veto": "sfx-cnn-veto", "tensorflow": "tensorflow-cpu"}.get(name, name)
            versions[name] = metadata.version(dist)
        except Exception:  # noqa: BLE001
            try:
                versions[name] = getattr(__import__(name), "__version__", "?")
            except Exception:  # noqa: BLE001
                versions[name] = None
    info["versions"] = versions
    return info


# ---------------------------------------------------------------------------
# Models

def make_model(path: str, architecture: str, *, seed: int = 0) -> str:
    """Save an untrained model of ``architecture`` (timings do not depend on the weights' values)."""
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel

    spec = manager.architectures()[architecture]
    try:
        keras_model = spec.build(spec.input_shape, seed=seed)
    except TypeError:
        keras_model = spec.build(spec.input_shape)
    meta = ModelMetadata(architecture=architecture, input_shape=tuple(spec.input_shape),
                         crop_shape=tuple(spec.input_shape[:2]), normalize=spec.default_normalize)
    VetoModel(keras_model, meta).save(path)
    return path


def default_architecture(name: str | None = None) -> str | None:
    """The project's default network: ``name``, else ``default``, else the one described as the default."""
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.errors import ConfigError

    specs = manager.architectures()
    if name:
        if name not in specs:
            raise ConfigError(f"no architecture {name!r} (have: {', '.join(sorted(specs))})")
        return name
    if "default" in specs:
        return "default"
    described = [n for n, s in sorted(specs.items()) if s.description.lower().startswith("default")]
    return described[0] if described else None


def list_backends() -> list[str]:
    from sfx_cnn_veto import manager

    return sorted(manager.backends())


# ---------------------------------------------------------------------------
# The measurements

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
        ds = handle["/entry_1/data_1/data"]
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
    from sfx_cnn_veto.core import normalize

    out = {}
    for name in ("standardize", "robust"):
        func = getattr(normalize, name)
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
        for _ in range(repeats):
            for frame in frames:
                start = time.perf_counter()
                found = finder.find_peaks(data=frame)
                seconds.append(time.perf_counter() - start)
                peaks.append(found["num_peaks"])
        out[name] = stats(seconds)
        out[name]["mean_peaks"] = float(np.mean(peaks))
    return out


# ---------------------------------------------------------------------------
# Subprocess measurements: memory and MPI

def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _memory_child(model: str, lst: str, backend: str, out_csv: str) -> None:
    """Run the ``score`` command on ``lst`` and print its peak RSS (KiB) as JSON."""
    import resource

    from sfx_cnn_veto.cli import main

    def rss_kib() -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    start = time.perf_counter()
    code = main(["score", lst, "-m", model, "--backend", backend, "-o", out_csv])
    elapsed = time.perf_counter() - start
    with open(out_csv) as handle:
        rows = sum(1 for _ in handle) - 1
    print(json.dumps({"exit": code, "rows": rows, "seconds": elapsed, "rss_end_kib": rss_kib(),
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def bench_memory(model: str, cxi: str, frames: int, tmp: str, sizes: Iterable[int], backend: str) -> dict[str, Any]:
    out = {}
    for n in sizes:
        lst = write_lst(os.path.join(tmp, f"memory-{n}.lst"), [cxi], frames, n)
        cmd = [sys.executable, "-c",
               "import sys; from sfx_cnn_veto.bench import _memory_child; _memory_child(*sys.argv[1:])",
               model, lst, backend, os.path.join(tmp, f"memory-{n}.csv")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        result["events"] = n
        if "peak_rss_kib" in result:
            result["peak_rss_mib"] = round(result["peak_rss_kib"] / 1024, 1)
        out[str(n)] = result
    return out


def _mpi_child(model: str, lst: str, backend: str) -> None:
    """Each rank scores every size-th event of the list; rank 0 prints frames/s of all ranks together."""
    from mpi4py import MPI

    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.core.tf import default_threads
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    veto = Veto.load(model, backend=backend, threads=max(1, default_threads() // size))
    counts = {"hit": 0, "miss": 0, "error": 0}

    def run() -> None:
        with FrameStore() as store:
            mine = (item for i, item in enumerate(iter_events([lst], store)) if i % size == rank)
            for _ref, decision in veto.stream_events(mine, store):
                counts[decision.label] += 1

    run()  # warm-up
    counts.update({"hit": 0, "miss": 0, "error": 0})
    comm.Barrier()
    start = MPI.Wtime()
    run()
    elapsed = MPI.Wtime() - start
    events = comm.reduce(sum(counts.values()), op=MPI.SUM)
    slowest = comm.reduce(elapsed, op=MPI.MAX)
    if rank == 0:
        print(json.dumps({"ranks": size, "events": events, "seconds": slowest, "fps": events / slowest,
                          "backend": veto.backend_name, "cores_per_rank": default_threads(),
                          "threads_per_rank": getattr(veto.classifier, "threads", None)}))


def bench_filter_lst(model: str, lst: str, tmp: str, mpi_ranks: Iterable[int] = ()) -> dict[str, Any]:
    """``sfx-cnn-veto filter-lst`` (the CrystFEL adapter), when installed: wall time of whole commands.

    In-process once (``--mpi off``), then under ``mpirun -n N`` for each of
    ``mpi_ranks``. These figures include loading the model (and, under
    mpirun, starting Python and TensorFlow in each rank): they are the
    user's wall clock, not the steady-state rate of the rows above.
    """
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.cli import main

    if "filter-lst" not in manager.commands():
        return {"error": "filter-lst is not installed (the CrystFEL adapter)"}
    with open(lst) as handle:
        events = sum(1 for line in handle if line.strip())
    out: dict[str, Any] = {"events": events}
    try:
        start = time.perf_counter()
        code = main(["filter-lst", lst, "-m", model, "-o", os.path.join(tmp, "filter-hits.lst"), "--mpi", "off"])
        elapsed = time.perf_counter() - start
        out["in_process"] = {"exit": code, "seconds": elapsed, "fps_including_model_load": events / elapsed}
    except Exception as exc:  # noqa: BLE001 - a benchmark row, not the benchmark
        out["in_process"] = {"error": f"{type(exc).__name__}: {exc}"}
    mpirun = shutil.which("mpirun")
    for ranks in mpi_ranks:
        if mpirun is None:
            out[f"mpirun_{ranks}"] = {"error": "mpirun not found"}
            continue
        cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", str(ranks), sys.executable, "-m",
               "sfx_cnn_veto.cli", "filter-lst", lst, "-m", model, "-o",
               os.path.join(tmp, f"filter-hits-{ranks}.lst"), "--mpi", "on" if ranks > 1 else "off"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        elapsed = time.perf_counter() - start
        out[f"mpirun_{ranks}"] = {"exit": proc.returncode, "seconds_including_startup": elapsed,
                                  "fps_including_startup": events / elapsed,
                                  "summary": (proc.stderr.strip().splitlines() or [""])[-1][:300]}
    return out


def bench_mpi(model: str, lst: str, backend: str) -> dict[str, Any]:
    """The score path under ``mpirun -n 1`` and ``-n 2`` (``--bind-to none``: one rank may use every core)."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return {"error": "mpirun not found (Debian: openmpi-bin)"}
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return {"error": "mpi4py not installed"}
    out = {}
    for ranks in (1, 2):
        cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", str(ranks), sys.executable, "-c",
               "import sys; from sfx_cnn_veto.bench import _mpi_child; _mpi_child(*sys.argv[1:])",
               model, lst, backend]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        try:
            out[f"ranks_{ranks}"] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            out[f"ranks_{ranks}"] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    one, two = out.get("ranks_1", {}).get("fps"), out.get("ranks_2", {}).get("fps")
    if one and two:
        out["speedup_2_over_1"] = two / one
    return out


# ---------------------------------------------------------------------------
# The command

def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=2048,
                        help="events in the end-to-end list (default 2048; --quick: 256)")
    parser.add_argument("--file-frames", type=int, default=32,
                        help="distinct 1750x1750 frames written to the CXI file (default 32, 392 MiB; --quick: 8)")
    parser.add_argument("--json", metavar="OUT", help="write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: few frames and repeats, no memory/MPI runs (figures are rough)")
    parser.add_argument("--batch-size", type=int, default=64, help="streaming batch size (default 64)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the network (default: cores)")
    parser.add_argument("--backends", default="all",
                        help="comma-separated backends for the CNN-alone rows (default: all registered that load)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="measure peak RSS of 1k and 10k event runs (default: on, off with --quick)")
    parser.add_argument("--mpi", action=argparse.BooleanOptionalAction, default=None,
                        help="measure mpirun -n 2 against 1 rank (default: on, off with --quick)")
    parser.add_argument("--memory-events", default="1000,10000", help="event counts of the memory runs")
    parser.add_argument("--simulator", action=argparse.BooleanOptionalAction, default=None,
                        help="frames from the project's simulator (sfx_cnn_veto.simulate, ~0.6 s a frame to make) "
                             "instead of the built-in synthetic ones (default: on, off with --quick)")
    parser.add_argument("--workdir", default=None, help="where to write the temporary files (default: a temp dir)")
    parser.add_argument("--default-architecture", default=None, metavar="NAME",
                        help="the project's default network (default: the architecture named 'default', else "
                             "the one whose description starts with 'default')")


def _row(name: str, s: dict[str, Any]) -> str:
    cpu = s.get("cpu_ms_per_frame")
    return (f"  {name:<44} {s['ms_per_frame']:>9.3f} {s['p10_ms']:>9.3f} {s['p90_ms']:>9.3f} "
            f"{s['fps']:>10.1f} {'' if cpu is None else f'{cpu:>9.3f}'}")


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.cli_commands import progress
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.errors import ConfigError, VetoError

    quick = args.quick
    events = args.frames if args.frames != 2048 or not quick else 256
    file_frames = args.file_frames if args.file_frames != 32 or not quick else 8
    if events < 1 or file_frames < 1 or args.batch_size < 1:
        raise ConfigError("--frames, --file-frames and --batch-size must be positive")
    do_memory = (not quick) if args.memory is None else args.memory
    do_mpi = (not quick) if args.mpi is None else args.mpi
    use_simulator = (not quick) if args.simulator is None else args.simulator
    if use_simulator:
        try:
            import sfx_cnn_veto.simulate  # noqa: F401
        except ImportError:
            if args.simulator:
                raise
            use_simulator = False
    rep = {"read": 1 if quick else 3, "norm": 2 if quick else 5, "b1": 20 if quick else 200,
           "bb": 3 if quick else 15, "e2e": 1 if quick else 5, "pf8_full": 1, "pf8_crop": 2 if quick else 5}

    result: dict[str, Any] = {"machine": machine_info(), "quick": quick, "events": events,
                              "file_frames": file_frames, "frame_shape": list(FRAME_SHAPE),
                              "crop_shape": list(CROP_SHAPE), "batch_size": args.batch_size,
                              "frames_source": "sfx_cnn_veto.simulate run90" if use_simulator else "synthetic"}
    tmp_owner = None
    tmp = args.workdir
    if tmp is None:
        tmp_owner = tempfile.TemporaryDirectory(prefix="sfx-cnn-veto-bench-")
        tmp = tmp_owner.name
    os.makedirs(tmp, exist_ok=True)
    try:
        with progress(total=None, desc="bench", unit="step") as bar:
            def step(text: str) -> None:
                bar.set_postfix_str(text)
                bar.update(1)

            step("writing frames")
            cxi = os.path.join(tmp, "bench.cxi")
            result["file_hits"] = sum(write_cxi(cxi, file_frames, simulator=use_simulator))
            lst = write_lst(os.path.join(tmp, "bench.lst"), [cxi], file_frames, events)

            step("reading")
            result["reading"] = bench_reading(cxi, file_frames, rep["read"])
            full, crops = load_crops(cxi, file_frames)
            step("normalizing")
            result["normalize"] = bench_normalize(crops, rep["norm"])

            networks = {"paper": "paper"}
            default_arch = default_architecture(args.default_architecture)
            if default_arch and default_arch != "paper":
                networks["default"] = default_arch
            backends = list_backends() if args.backends == "all" else args.backends.split(",")
            result["networks"] = {}
            for label, arch in networks.items():
                model = make_model(os.path.join(tmp, f"{arch}.keras"), arch)
                entry: dict[str, Any] = {"architecture": arch, "model": model, "backends": {}}
                for backend in backends:
                    step(f"{label} network, {backend}")
                    try:
                        veto = Veto.load(model, backend=backend, batch_size=args.batch_size, threads=args.threads)
                    except VetoError as exc:
                        entry["backends"][backend] = {"error": str(exc)}
                        continue
                    entry["backends"][backend] = bench_network(veto, crops, args.batch_size, rep["bb"], rep["b1"])
                step(f"{label} network, end to end")
                veto = Veto.load(model, backend="auto", batch_size=args.batch_size, threads=args.threads)
                entry["auto_backend"] = veto.backend_name
                entry["end_to_end"] = bench_end_to_end(veto, lst, rep["e2e"])
                if veto.backend_name != "keras" and "keras" in backends:
                    step(f"{label} network, end to end (keras)")
                    keras_veto = Veto.load(model, backend="keras", batch_size=args.batch_size, threads=args.threads)
                    entry["end_to_end_keras"] = bench_end_to_end(keras_veto, lst, max(1, rep["e2e"] // 2))
                result["networks"][label] = entry

            step("peakfinder8")
            result["peakfinder8"] = bench_pf8(full, crops, rep["pf8_full"], rep["pf8_crop"])

            if do_memory:
                sizes = [int(v) for v in args.memory_events.split(",") if v.strip()]
                step("memory")
                result["memory"] = bench_memory(result["networks"]["paper"]["model"], cxi, file_frames, tmp, sizes,
                                                "auto")
            if do_mpi:
                step("mpi")
                result["mpi"] = bench_mpi(result["networks"]["paper"]["model"], lst, "auto")
            if "filter-lst" in manager.commands():
                step("filter-lst")
                result["filter_lst"] = bench_filter_lst(result["networks"]["paper"]["model"], lst, tmp,
                                                        (1, 2) if do_mpi else ())
    finally:
        result["machine"]["load_average_end"] = list(os.getloadavg())
        if tmp_owner is not None:
            tmp_owner.cleanup()

    _summarize(result)
    _print(result)
    if args.json:
        for entry in result.get("networks", {}).values():
            entry.pop("model", None)
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2, sort_keys=False, default=float)
        print(f"wrote {args.json}")
    return 0


def _summarize(result: dict[str, Any]) -> None:
    """The headline keys (issue 8) at the top level of the JSON."""
    nets = result.get("networks", {})
    paper = nets.get("paper", {})
    default = nets.get("default")
    e2e = paper.get("end_to_end", {})
    auto = paper.get("auto_backend")
    b1 = paper.get("backends", {}).get(auto, {}).get("batch1", {})
    pf8 = result.get("peakfinder8", {})
    veto_ms = e2e.get("ms_per_frame")
    result["veto_end_to_end_fps"] = e2e.get("fps")
    result["veto_backend"] = auto
    result["default_end_to_end_fps"] = (default or {}).get("end_to_end", {}).get("fps")
    result["default_network"] = default.get("architecture") if default else None
    result["batch1_latency_ms"] = b1.get("ms_per_frame")
    result["pf8_full_frame_ms"] = pf8.get("pf8_full_frame", {}).get("ms_per_frame")
    result["pf8_crop_ms"] = pf8.get("pf8_crop", {}).get("ms_per_frame")
    result["ratio_pf8_full_over_veto"] = (
        result["pf8_full_frame_ms"] / veto_ms if veto_ms and result["pf8_full_frame_ms"] else None
    )
    result["ratio_pf8_crop_over_veto"] = (
        result["pf8_crop_ms"] / veto_ms if veto_ms and result["pf8_crop_ms"] else None
    )
    result["targets"] = {
        key: {"target": target, "measured": result.get(key),
              "met": None if result.get(key) is None else
              (result[key] <= target if key.endswith("_ms") else result[key] >= target)}
        for key, target in TARGETS.items()
    }


def _print(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"sfx-cnn-veto bench  ({m['date_utc']}; {m.get('cpu', '?')}, {m['cores_available']} cores; "
          f"load average {m['load_average_start'][0]:.2f} -> {m['load_average_end'][0]:.2f})")
    print(f"frames ({result['frames_source']}, {result.get('file_hits', '?')} of {result['file_frames']} with a crystal) "
          f"{result['frame_shape'][0]}x{result['frame_shape'][1]} float32 CXI (one chunk a frame), "
          f"crop {result['crop_shape'][0]}x{result['crop_shape'][1]}, {result['events']} events, "
          f"batch {result['batch_size']}{'  [--quick: rough figures]' if result['quick'] else ''}")
    print(f"  {'step':<44} {'ms/frame':>9} {'p10':>9} {'p90':>9} {'frames/s':>10} {'cpu ms':>9}")
    for name, s in result["reading"].items():
        print(_row(name, s))
    for name, s in result["normalize"].items():
        print(_row(name, s))
    for label, entry in result["networks"].items():
        if label != entry["architecture"]:
            label = f"{label} ({entry['architecture']})"
        for backend, res in entry["backends"].items():
            if "error" in res:
                print(f"  {label} CNN {backend}: not available ({res['error']})")
                continue
            print(_row(f"{label} CNN alone, {backend}, batch 1", res["batch1"]))
            print(_row(f"{label} CNN alone, {backend}, batch {res['batch_size']}", res[f"batch{res['batch_size']}"]))
        print(_row(f"{label} veto end to end ({entry['auto_backend']})", entry["end_to_end"]))
        if "end_to_end_keras" in entry:
            print(_row(f"{label} veto end to end (keras)", entry["end_to_end_keras"]))
    for name, s in result["peakfinder8"].items():
        if isinstance(s, dict):
            print(_row(f"{name} (OM, {s['mean_peaks']:.0f} peaks)", s))
        else:
            print(f"  peakfinder8: {s}")
    if result.get("default_network") is None:
        print("  (no default architecture registered (name 'default', or a description starting 'default'): "
              "only the paper's network was measured)")
    if result.get("ratio_pf8_full_over_veto"):
        print(f"peakfinder8 / veto: full frame {result['ratio_pf8_full_over_veto']:.1f}x, "
              f"crop {result['ratio_pf8_crop_over_veto']:.1f}x (paper network end to end)")
    if "memory" in result:
        for n, r in result["memory"].items():
            print(f"peak RSS, streaming {n} events: " + (f"{r['peak_rss_mib']} MiB ({r['seconds']:.1f} s)"
                                                        if "peak_rss_mib" in r else r.get("error", "?")))
    if "mpi" in result:
        for key, r in result["mpi"].items():
            if isinstance(r, dict):
                print(f"MPI {key}: " + (f"{r['fps']:.0f} frames/s ({r['events']} events)" if "fps" in r
                                        else r.get("error", "?")))
            elif key == "speedup_2_over_1":
                print(f"MPI speed-up, 2 ranks over 1: {r:.2f}x")
    if "filter_lst" in result:
        for key, r in result["filter_lst"].items():
            if isinstance(r, dict):
                shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "summary"}
                print(f"filter-lst {key}: {shown}")
    print("targets (issue 8, 2-core machine):")
    for key, t in result["targets"].items():
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        print(f"  {key:<28} {value:>10}  target {'<=' if key.endswith('_ms') else '>='} {t['target']:g}: {mark}")


@hookimpl
def sfxveto_commands():
    return [CommandSpec("bench", "time the veto and OM's peakfinder8 side by side on simulated frames",
                        _configure, _run)]
