"""The ``simulate`` and ``show`` sub-commands (built in)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.cli_commands import add_crop_argument
from sfx_cnn_veto.io.cxi import COMPRESSIONS
from sfx_cnn_veto.types import CommandSpec


# ---------------------------------------------------------------------------
# simulate

def _configure_simulate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", metavar="OUTDIR", help="where to write <run>.cxi/.lst/.geom/.truth.csv")
    parser.add_argument("--config", default=None,
                        help="experiment YAML (default: the shipped 10-run streptavidin experiment); "
                             "a bare name picks a shipped one (streptavidin, lysozyme)")
    parser.add_argument("--seed", type=int, default=None, help="master seed (default: the config's)")
    parser.add_argument("--frames", type=int, default=None, help="frames per run (default: the config's, 300)")
    parser.add_argument("--runs", default=None,
                        help="comma-separated runs to write, e.g. 90,94 or run90,run94 (default: all)")
    parser.add_argument("--size", default=None, metavar="HxW",
                        help="frame size in pixels, e.g. 700x700 (default: the config's)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default="lz4",
                        help="HDF5 compression of the frames: lz4 (bitshuffle, via hdf5plugin; default: indexamajig "
                             "then needs HDF5_PLUGIN_PATH set to hdf5plugin's plugins), gzip (readable everywhere, "
                             "slower) or none")
    parser.add_argument("--layout", default="assembled", metavar="{assembled,eight-panel,cspad,jungfrau4m,FILE.geom}",
                        help="how frames are written: assembled (default, one panel), or as the raw slab of a "
                             "multi-panel detector with its geometry as RUN.geom: eight-panel (4 turned), cspad "
                             "(64 ASICs), jungfrau4m (8 modules of 512x1024; --size 2100x2100 covers them), or the "
                             "panels of a CrystFEL .geom file the frames cover")


def load_config(value: str | None):
    from sfx_cnn_veto.simulate.runs import default_experiment, load_experiment, shipped_experiments

    if value is None:
        return default_experiment()
    if value in shipped_experiments() and not os.path.exists(value):
        return default_experiment(value)
    return load_experiment(value)


def _parse_size(text: str) -> tuple[int, int]:
    from sfx_cnn_veto.errors import ConfigError

    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 64:
        raise ConfigError(f"--size: expected HxW with both at least 64, e.g. 700x700; got {text!r}")
    return parts[0], parts[1]


def _run_simulate(args: argparse.Namespace) -> int:
    import dataclasses

    from sfx_cnn_veto.cli_commands import progress
    from sfx_cnn_veto.errors import ConfigError
    from sfx_cnn_veto.simulate.writer import write_experiment

    experiment = load_config(args.config)
    if args.runs:
        experiment = experiment.select(r for r in args.runs.split(",") if r.strip())
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.size:
        shape = _parse_size(args.size)
        experiment = dataclasses.replace(experiment, runs=tuple(
            dataclasses.replace(r, detector=dataclasses.replace(r.detector, shape=shape)) for r in experiment.runs))
    start = time.perf_counter()
    written = write_experiment(args.outdir, experiment, seed=args.seed, n_frames=args.frames,
                               compression=args.compression, layout=args.layout,
                               progress_factory=lambda total, desc: progress(total=total, desc=f"simulate {desc}"))
    elapsed = time.perf_counter() - start
    total = sum(files.n_frames for files in written)
    print(f"Simulated {len(written)} run(s), {total} frames in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.0f} frames/s) "
          f"into {os.path.abspath(args.outdir)}")
    print(f"{'run':<8} {'role':<10} {'frames':>6} {'crystal':>8}  files")
    import csv

    for files in written:
        with open(files.truth, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        hits = sum(int(r["crystal"]) for r in rows)
        role = experiment.run(files.run).role
        print(f"{files.run:<8} {role:<10} {files.n_frames:>6} {hits / max(len(rows), 1):>8.1%}  "
              f"{os.path.basename(files.cxi)} .lst .geom .truth.csv")
    print(f"Configuration used: {os.path.join(os.path.abspath(args.outdir), 'experiment.yaml')}")
    return 0


# ---------------------------------------------------------------------------
# show

def _configure_show(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.cli_commands import add_model_arguments

    parser.add_argument("file", metavar="FILE", help="a frame file (CXI/HDF5, CBF ...) or a .lst (first event)")
    parser.add_argument("event", metavar="//N", nargs="?", default=None,
                        help="event of a multi-event file (default //0)")
    add_model_arguments(parser)
    parser.add_argument("--png", default=None,
                        help="output picture (default: <file stem>_<N>.png in the current directory)")
    parser.add_argument("--dataset", default=None, help="HDF5 data set of the frames")
    parser.add_argument("--no-score", action="store_true", help="draw the frame and a --crop outline, do not score")
    add_crop_argument(parser, "crop to outline when not scoring (default 350x350)", default="350x350")


def _show_ref(args: argparse.Namespace):
    """The one event to show: ``FILE //N``, or the list's line with that event (its first line by default)."""
    from sfx_cnn_veto.errors import ConfigError
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.lst import read_lst, resolve_path

    event = args.event
    if event is not None and not event.startswith("//"):
        raise ConfigError(f"event: expected //N (e.g. //3), got {event!r}")
    if not args.file.endswith(".lst"):
        return EventRef(args.file, event, resolve_path(args.file))
    entries = list(read_lst(args.file))
    if not entries:
        raise ConfigError(f"{args.file}: no events in the list")
    matching = [e for e in entries if event is not None and e.event == event]
    return (matching or entries)[0].ref()


def _run_show(args: argparse.Namespace) -> int:
    """Draw one event; with a model (-m, else the shipped one), decided exactly as ``score`` decides it."""
    from sfx_cnn_veto.cli_commands import load_veto, reader_options
    from sfx_cnn_veto.core.model import default_model_path
    from sfx_cnn_veto.errors import ConfigError
    from sfx_cnn_veto.io.store import FrameStore
    from sfx_cnn_veto.show import show_event, truth_for

    ref = _show_ref(args)
    args.inputs = [args.file]                 # a list's LIST.geom is its geometry, as for `score`
    scored = not args.no_score and bool(args.model or args.config or default_model_path())
    veto = load_veto(args) if scored else None
    with FrameStore(reader_options(args)) as store:
        if ref.event is None:
            ref = store.expand(ref)[0]
        index = ref.index if ref.event is not None else 0
        png = args.png or f"{os.path.splitext(os.path.basename(ref.file))[0]}_{index}.png"
        title = f"{os.path.basename(ref.file)} {ref.event or ''}".strip()
        truth = truth_for(ref.file, ref.event)
        decision = None
        if veto is not None:
            try:
                decision = show_event(veto, store, ref, png, title=title, truth=truth)
            except ConfigError as exc:
                if args.model or args.config:
                    raise
                print(f"sfx-cnn-veto: not scored, the shipped model cannot take this frame: {exc}", file=sys.stderr)
        if decision is None:
            _show_unscored(store.read(ref), args, png, title=title, truth=truth)
    summary = f"{title}: "
    if decision is not None:
        summary += (f"kept as hit (undecided: {decision.error}); " if decision.error
                    else f"{'hit' if decision.is_hit else 'miss'} (score {decision.score:.3f}); ")
    print(f"{summary}picture: {os.path.abspath(png)}")
    return 0


def _show_unscored(frame, args: argparse.Namespace, png: str, **kwargs) -> None:
    """No model: the frame (assembled by --geometry) with --crop outlined around --center."""
    from sfx_cnn_veto.cli_commands import geometry_path
    from sfx_cnn_veto.show import render_frame, render_slab

    crop_shape = tuple(args.crop)
    path = geometry_path(args)
    if path:
        from sfx_cnn_veto.io.geometry import read_geometry

        geometry = read_geometry(path)
        geometry.check_frame(frame.shape)
        render_slab(frame, geometry, png, crop_shape=crop_shape, **kwargs)
    else:
        render_frame(frame, png, crop_shape=crop_shape, crop_center=args.center, **kwargs)


@hookimpl
def sfxveto_commands():
    return [
        CommandSpec(name="simulate",
                    help="write a simulated SFX experiment (CXI files, .lst, .geom, truth CSV) for demos and tests",
                    configure=_configure_simulate, run=_run_simulate),
        CommandSpec(name="show", help="draw a frame and its crop (with the model's decision) to a PNG",
                    configure=_configure_show, run=_run_show),
    ]
