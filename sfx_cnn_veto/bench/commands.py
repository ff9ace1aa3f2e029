"""The ``bench`` sub-command: its options, the order of the measurements, the JSON it writes."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.bench.cases import (
    bench_end_to_end,
    bench_latency,
    bench_network,
    bench_normalize,
    bench_pf8,
    bench_reading,
    load_crops,
)
from sfx_cnn_veto.bench.inputs import (
    CROP_SHAPE,
    FRAME_SHAPE,
    default_architecture,
    list_backends,
    make_model,
    om_default_backend,
    write_cxi,
    write_lst,
)
from sfx_cnn_veto.bench.cropmap import bench_crop_map, real_geometry_path
from sfx_cnn_veto.bench.processes import bench_filter_lst, bench_memory, bench_mpi, list_filter
from sfx_cnn_veto.bench.report import print_report, summarize
from sfx_cnn_veto.bench.timing import machine_info
from sfx_cnn_veto.types import CommandSpec


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
    parser.add_argument("--crop-geometry", default=None, metavar="FILE.geom",
                        help="the multi-panel geometry whose crop-map gather is timed (default: the real 64-panel "
                             "../shared/real/geometry/jungfrau4M.geom beside the clone, else a simulated CSPAD-like one)")

def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What to run: event and frame counts, which optional parts, repeats of each measurement."""
    from sfx_cnn_veto.errors import ConfigError

    quick = args.quick
    events = args.frames if args.frames != 2048 or not quick else 256
    file_frames = args.file_frames if args.file_frames != 32 or not quick else 8
    if events < 1 or file_frames < 1 or args.batch_size < 1:
        raise ConfigError("--frames, --file-frames and --batch-size must be positive")
    use_simulator = (not quick) if args.simulator is None else args.simulator
    if use_simulator:
        try:
            import sfx_cnn_veto.simulate  # noqa: F401
        except ImportError:
            if args.simulator:
                raise
            use_simulator = False
    return {
        "quick": quick, "events": events, "file_frames": file_frames, "use_simulator": use_simulator,
        "memory": (not quick) if args.memory is None else args.memory,
        "mpi": (not quick) if args.mpi is None else args.mpi,
        "repeats": {"read": 1 if quick else 3, "norm": 2 if quick else 5, "b1": 20 if quick else 200,
                    "bb": 3 if quick else 15, "e2e": 1 if quick else 5, "pf8_full": 1,
                    "pf8_crop": 2 if quick else 5, "latency": 2 if quick else 5, "crop_map": 50 if quick else 300},
    }


def _measure_networks(args: argparse.Namespace, tmp: str, full, crops, lst: str, rep: dict[str, int],
                      step) -> dict[str, Any]:
    """The paper's network (and the default one): alone on every backend, then the veto end to end."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.errors import VetoError

    networks = {"paper": "paper"}
    default_arch = default_architecture(args.default_architecture)
    if default_arch and default_arch != "paper":
        networks["default"] = default_arch
    backends = list_backends() if args.backends == "all" else args.backends.split(",")
    out: dict[str, Any] = {}
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
        om_backend = om_default_backend()
        # OM gives each processing rank cores // ranks threads: 1 with a rank per core (the OM example's 2
        # ranks on 2 cores, and a facility node's usual layout); all cores with a single processing rank
        for key, threads in (("batch1_latency", 1), ("batch1_latency_all_threads", args.threads)):
            step(f"{label} network, batch-1 latency as OM runs it ({threads or 'all'} thread(s))")
            latency_veto = Veto.load(model, backend=om_backend, batch_size=1, threads=threads)
            entry[key] = bench_latency(latency_veto, full, rep["latency"])
            entry[key].update(om_default_backend=om_backend, threads=threads or "all")
            del latency_veto
        step(f"{label} network, end to end")
        veto = Veto.load(model, backend="auto", batch_size=args.batch_size, threads=args.threads)
        entry["auto_backend"] = veto.backend_name
        entry["end_to_end"] = bench_end_to_end(veto, lst, rep["e2e"])
        if veto.backend_name != "keras" and "keras" in backends:
            step(f"{label} network, end to end (keras)")
            keras_veto = Veto.load(model, backend="keras", batch_size=args.batch_size, threads=args.threads)
            entry["end_to_end_keras"] = bench_end_to_end(keras_veto, lst, max(1, rep["e2e"] // 2))
        out[label] = entry
    return out


def _measure(args: argparse.Namespace, settings: dict[str, Any], tmp: str, result: dict[str, Any]) -> None:
    """Every measurement in turn, into ``result``, with a progress bar of the steps."""
    from sfx_cnn_veto.cli_commands import progress

    rep, file_frames = settings["repeats"], settings["file_frames"]
    with progress(total=None, desc="bench", unit="step") as bar:
        def step(text: str) -> None:
            bar.set_postfix_str(text)
            bar.update(1)

        step("writing frames")
        cxi = os.path.join(tmp, "bench.cxi")
        result["file_hits"] = sum(write_cxi(cxi, file_frames, simulator=settings["use_simulator"]))
        lst = write_lst(os.path.join(tmp, "bench.lst"), [cxi], file_frames, settings["events"])

        step("reading")
        result["reading"] = bench_reading(cxi, file_frames, rep["read"])
        full, crops = load_crops(cxi, file_frames)
        step("normalizing")
        result["normalize"] = bench_normalize(crops, rep["norm"])
        step("crop map (64 panels)")
        geometry = args.crop_geometry or real_geometry_path()
        result["crop_map"] = bench_crop_map(geometry, CROP_SHAPE, repeats=rep["crop_map"])
        result["networks"] = _measure_networks(args, tmp, full, crops, lst, rep, step)
        step("peakfinder8")
        result["peakfinder8"] = bench_pf8(full, crops, rep["pf8_full"], rep["pf8_crop"])

        model = result["networks"]["paper"]["model"]
        if settings["memory"]:
            sizes = [int(v) for v in args.memory_events.split(",") if v.strip()]
            step("memory")
            result["memory"] = bench_memory(model, cxi, file_frames, tmp, sizes, "auto")
        if settings["mpi"]:
            step("mpi")
            result["mpi"] = bench_mpi(model, lst, "auto")
        command = list_filter()
        if command is not None:
            step(command.name)
            result["filter_lst"] = bench_filter_lst(model, lst, tmp, (1, 2) if settings["mpi"] else ())


def _write_json(result: dict[str, Any], path: str) -> None:
    for entry in result.get("networks", {}).values():
        entry.pop("model", None)
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=False, default=float)
    print(f"wrote {path}")


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    settings = _settings(args)
    result: dict[str, Any] = {"machine": machine_info(), "quick": settings["quick"], "events": settings["events"],
                              "file_frames": settings["file_frames"], "frame_shape": list(FRAME_SHAPE),
                              "crop_shape": list(CROP_SHAPE), "batch_size": args.batch_size,
                              "frames_source": "sfx_cnn_veto.simulate run90" if settings["use_simulator"]
                              else "synthetic"}
    tmp_owner = None
    tmp = args.workdir
    if tmp is None:
        tmp_owner = tempfile.TemporaryDirectory(prefix="sfx-cnn-veto-bench-")
        tmp = tmp_owner.name
    os.makedirs(tmp, exist_ok=True)
    try:
        _measure(args, settings, tmp, result)
    finally:
        result["machine"]["load_average_end"] = list(os.getloadavg())
        if tmp_owner is not None:
            tmp_owner.cleanup()

    summarize(result)
    print_report(result)
    if args.json:
        _write_json(result, args.json)
    return 0


@hookimpl
def sfxveto_commands():
    return [CommandSpec("bench", "time the veto and OM's peakfinder8 side by side on simulated frames",
                        _configure, _run)]
