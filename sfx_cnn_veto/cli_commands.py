"""Core sub-commands (``plugins``, ``models``, ``score``) and the argument groups others reuse."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.types import CommandSpec


# ---------------------------------------------------------------------------
# One form per option: ``--center ROW,COL`` and ``--crop HxW`` on every command.

PAIR_OPTIONS = ("--center", "--crop")


def _numbers(text: str, separators: str) -> list[str]:
    for sep in separators:
        text = text.replace(sep, " ")
    return text.split()


def pixel_pair(text: str) -> tuple[float, float]:
    """``ROW,COL`` in pixels (``'ROW COL'`` accepted too), as an argparse type."""
    try:
        row, col = (float(v) for v in _numbers(str(text), ","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROW,COL in pixels such as 512.5,480, got {text!r}") from None
    return row, col


def shape_pair(text: str) -> tuple[int, int]:
    """``HxW`` in pixels (``H,W`` and ``'H W'`` accepted too), as an argparse type."""
    try:
        height, width = (int(v) for v in _numbers(str(text).lower(), "x,"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW in pixels such as 350x350, got {text!r}") from None
    if min(height, width) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with positive sides, got {text!r}")
    return height, width


def join_pair_arguments(argv: list[str]) -> list[str]:
    """``--center ROW COL`` (two words, the old form of score and filter-lst) becomes ``--center=ROW,COL``."""

    def number(word: str) -> bool:
        try:
            float(word)
        except ValueError:
            return False
        return True

    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word in PAIR_OPTIONS and i + 2 < len(argv) and number(argv[i + 1]) and number(argv[i + 2]):
            out.append(f"{word}={argv[i + 1]},{argv[i + 2]}")
            i += 3
            continue
        out.append(word)
        i += 1
    return out


def add_center_argument(parser: argparse.ArgumentParser, help: str) -> None:  # noqa: A002 - argparse's word
    parser.add_argument("--center", type=pixel_pair, default=None, metavar="ROW,COL", help=help)


def add_crop_argument(parser: argparse.ArgumentParser, help: str, default: str | None = None) -> None:  # noqa: A002
    parser.add_argument("--crop", type=shape_pair, default=default, metavar="HxW", help=help)


# ---------------------------------------------------------------------------
# Argument groups shared by sub-commands (also used by the plugins).

def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="CrystFEL .lst event lists, or frame files (HDF5/CXI, CBF, EDF, TIFF ...)")
    parser.add_argument("-x", "--prefix", default=None,
                        help="prefix for file names in lists, as indexamajig's -x")
    parser.add_argument("--dataset", default=None,
                        help="HDF5 data set of the frames (default: /entry_1/data_1/data, /data/data, /entry/data/data, "
                             "or an EIGER master's /entry/data/data_000001, data_000002 ... as one stack)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", default=None,
                        help="trained .keras model (default: the small model shipped with the package)")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model's)")
    parser.add_argument("--backend", default=None,
                        help="classifier backend: auto (default: numba when installed and it reproduces Keras, "
                             "else keras), keras, numba ... (see 'sfx-cnn-veto plugins')")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per network call (default 64)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the network (default: the cores available, or SFX_CNN_VETO_THREADS)")
    add_center_argument(parser, "beam center in pixels for the crop (default: the model's, else the frame center)")
    add_geometry_argument(parser)
    add_mask_arguments(parser)
    parser.add_argument("--config", default=None,
                        help="YAML config (groups model, decision, crop, reader); command-line options win")


def add_geometry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-g", "--geometry", default=None, metavar="FILE.geom",
                        help="the detector's CrystFEL geometry: the crop is taken around the beam of the assembled "
                             "image from raw multi-panel slabs (default: LIST.geom beside a .lst input, else none: "
                             "single-panel frames, cropped around --center)")


def geometry_path(args: argparse.Namespace) -> str | None:
    """``--geometry``, else the config's ``crop.geometry``, else ``LIST.geom`` beside the one ``.lst`` input."""
    path = getattr(args, "geometry", None) or getattr(config_of(args).crop, "geometry", None)
    if path:
        return path
    lists = [p for p in getattr(args, "inputs", None) or () if str(p).endswith(".lst")]
    candidates = {p[:-4] + ".geom" for p in lists if os.path.exists(p[:-4] + ".geom")}
    if len(candidates) > 1:
        from sfx_cnn_veto.errors import ConfigError

        raise ConfigError(f"the lists have different geometries beside them ({', '.join(sorted(candidates))}): "
                          "name one with --geometry")
    return candidates.pop() if candidates else None


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mask", default=None, metavar="FILE[:DATASET]",
                        help="good-pixel mask of the full frame (nonzero = good; .h5 or .npy), for models trained "
                             "with masks (default: each CXI file's own /entry_1/data_1/mask)")
    parser.add_argument("--no-file-mask", action="store_true",
                        help="do not use the files' own CXI masks")


def config_of(args: argparse.Namespace):
    """The validated YAML config named by ``--config`` (defaults when none), parsed once."""
    from sfx_cnn_veto.config import load_config

    if not hasattr(args, "_config"):
        args._config = load_config(getattr(args, "config", None))
    return args._config


def model_path(args: argparse.Namespace) -> str:
    from sfx_cnn_veto.core.model import default_model_path
    from sfx_cnn_veto.errors import ConfigError

    if args.model:
        return args.model
    if config_of(args).model.path:
        return config_of(args).model.path
    path = default_model_path()
    if path is None:
        raise ConfigError("no --model given and no default model is shipped; train one with 'sfx-cnn-veto train'")
    return path


def load_veto(args: argparse.Namespace):
    from sfx_cnn_veto.core.pipeline import Veto

    cfg = config_of(args)

    def pick(value, default):
        return default if value is None else value

    geometry = geometry_path(args)
    if geometry:
        print(f"sfx-cnn-veto: geometry {geometry}", file=sys.stderr)
    return Veto.load(
        model_path(args),
        threshold=pick(args.threshold, cfg.decision.threshold),
        backend=pick(args.backend, cfg.model.backend),
        batch_size=pick(args.batch_size, cfg.model.batch_size),
        threads=pick(args.threads, cfg.model.threads),
        center=pick(getattr(args, "center", None), cfg.crop.center),
        geometry=geometry,
        mask=getattr(args, "mask", None),
        file_masks=not getattr(args, "no_file_mask", False),
    )


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    dataset = getattr(args, "dataset", None) or config_of(args).reader.dataset
    return {"dataset": dataset} if dataset else {}


def list_prefix(args: argparse.Namespace) -> str:
    return getattr(args, "prefix", "") or config_of(args).reader.prefix


def check_writable(*paths: str | None) -> None:
    """Raise :class:`ConfigError` now, before any work, for an output whose directory is missing or read-only."""
    from sfx_cnn_veto.errors import ConfigError

    for path in paths:
        if not path or path == "-":
            continue
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ConfigError(f"{path}: cannot write it: no directory {directory}")
        if not os.access(directory, os.W_OK):
            raise ConfigError(f"{path}: cannot write it: directory {directory} is not writable")


def progress(total=None, desc="", unit="frame"):
    """A bar on a terminal, plain status lines every few seconds in a log (see :mod:`sfx_cnn_veto.progress`)."""
    from sfx_cnn_veto.progress import Progress

    return Progress(total=total, desc=desc, unit=unit)


# ---------------------------------------------------------------------------
# plugins

def _configure_plugins(parser: argparse.ArgumentParser) -> None:
    pass


def _run_plugins(args: argparse.Namespace) -> int:
    from sfx_cnn_veto import manager

    pm = manager.get_plugin_manager()
    print("Plugins (name | from | hooks):")
    for name, origin, hooks in manager.iter_plugins(pm):
        print(f"  {name} | {origin} | {', '.join(h.replace('sfxveto_', '') for h in hooks)}")
    for name, error in sorted(pm.failed.items()):
        print(f"  {name} | FAILED TO LOAD | {error}")
    sections = [
        ("Readers", "sfxveto_readers", manager.readers(pm)),
        ("Preprocessing steps", "sfxveto_preprocessing_steps", manager.preprocessing_steps(pm)),
        ("Architectures", "sfxveto_architectures", manager.architectures(pm)),
        ("Backends", "sfxveto_backends", manager.backends(pm)),
        ("Labelers", "sfxveto_labelers", manager.labelers(pm)),
        ("Sinks", "sfxveto_sinks", manager.sinks(pm)),
        ("Commands", "sfxveto_commands", manager.commands(pm)),
        ("Config groups", "sfxveto_config_groups", manager.config_groups(pm)),
    ]
    for title, hook, records in sections:
        print(f"{title}:")
        for key, record in sorted(records.items()):
            desc = getattr(record, "description", "") or getattr(record, "help", "")
            print(f"  {key:<28} {manager.provider_of(hook, record.name, pm):<28} {desc}")
    return 0


# ---------------------------------------------------------------------------
# models

def _configure_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", metavar="NAME", help="print the Keras summary of one architecture")
    parser.add_argument("--parameters", action="store_true",
                        help="also count each architecture's trainable parameters (builds the networks: "
                             "imports TensorFlow, a few seconds)")


def _run_models(args: argparse.Namespace) -> int:
    """List architectures from their records; TensorFlow is imported only to build one (--summary, --parameters)."""
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.errors import ConfigError

    specs = manager.architectures()
    if args.summary:
        if args.summary not in specs:
            raise ConfigError(f"no architecture {args.summary!r} (have: {', '.join(sorted(specs))})")
        specs[args.summary].build(specs[args.summary].input_shape).summary(print_fn=print)
        return 0
    count = None
    if args.parameters:
        from sfx_cnn_veto.core.architectures import trainable_parameters as count
    print(f"{'name':<12} {'input':<12} {'trainable' if count else '':>10}  description")
    for name, spec in sorted(specs.items()):
        shape = "x".join(str(d) for d in spec.input_shape)
        params = f"{count(spec.build(spec.input_shape)):,}" if count else ""
        print(f"{name:<12} {shape:<12} {params:>10}  {spec.description}")
    return 0


# ---------------------------------------------------------------------------
# score

def _configure_score(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("-o", "--output", default="-", help="scores CSV (default: standard output)")
    parser.add_argument("--sink", action="append", default=[], metavar="NAME:PATH",
                        help="also send decisions to a sink, e.g. hits-lst:hits.lst (repeatable; "
                             "'sfx-cnn-veto plugins' lists sinks)")


def open_sinks(specs: list[str]) -> list[Any]:
    """Sinks named ``NAME:PATH`` on the command line, through the ``sfxveto_sinks`` hook."""
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.errors import ConfigError

    available = manager.sinks()
    sinks = []
    for spec in specs:
        name, _, path = spec.partition(":")
        if name not in available:
            raise ConfigError(f"--sink {spec}: no sink {name!r} (have: {', '.join(sorted(available))})")
        sinks.append(available[name].create({"path": path}))
    return sinks


def _run_score(args: argparse.Namespace) -> int:
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS
    from sfx_cnn_veto.event_errors import EventErrors
    from sfx_cnn_veto.io.sinks import CsvSink
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    check_writable(args.output, *(spec.partition(":")[2] for spec in args.sink))
    veto = load_veto(args)
    sinks = open_sinks(args.sink)
    main_sink = CsvSink(handle=sys.stdout) if args.output == "-" else CsvSink(args.output)
    counts = {"hit": 0, "miss": 0, "error": 0}
    errors = EventErrors(" (kept as a hit)")
    start = time.perf_counter()
    with FrameStore(reader_options(args)) as store, progress(desc="score") as bar:
        events = iter_events(args.inputs, store, prefix=list_prefix(args))
        for ref, decision in veto.stream_events(events, store):
            counts[decision.label] += 1
            if decision.error:
                errors.report(ref, decision.error)
            else:
                errors.ok()
            for sink in (main_sink, *sinks):
                sink.write(ref, decision)
            manager.notify_decision(ref, decision)
            bar.update(1, hits=decision.is_hit and not decision.error)
    for sink in (main_sink, *sinks):
        sink.close()
    errors.finish()
    total = sum(counts.values())
    elapsed = time.perf_counter() - start
    print(f"{total} events: {counts['hit']} hits, {counts['miss']} misses, {counts['error']} errors "
          f"(threshold {veto.threshold:g}; {total / elapsed if elapsed else 0:.0f} frames/s)", file=sys.stderr)
    return EXIT_EVENT_ERRORS if counts["error"] else 0


def _configure_inspect(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.inspect_model import configure

    configure(parser)


def _run_inspect(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.inspect_model import run

    return run(args)


@hookimpl(trylast=True)
def sfxveto_commands():
    return [
        CommandSpec("plugins", "list loaded plugins, what each provides, and from where",
                    _configure_plugins, _run_plugins),
        CommandSpec("models", "list registered architectures with input shape (--parameters: trainable parameters)",
                    _configure_models, _run_models),
        CommandSpec("inspect", "what a model file says: threshold, crop and center, mask use, training runs, metrics, "
                    "calibration, package version (no TensorFlow)", _configure_inspect, _run_inspect),
        CommandSpec("score", "score events of .lst lists or frame files; writes file,event,score,is_hit CSV",
                    _configure_score, _run_score),
    ]
