"""The ``label``, ``train`` and ``evaluate`` sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

import numpy as np

from sfx_cnn_veto.errors import ConfigError, VetoError
from sfx_cnn_veto.cli_commands import add_center_argument, add_crop_argument


# ---------------------------------------------------------------------------
# label

def configure_label(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.training.peaks import DEFAULTS

    parser.add_argument("inputs", nargs="+", metavar="LIST.lst",
                        help="CrystFEL event lists (or frame files); the run name is the file's stem")
    parser.add_argument("-o", "--output", required=True, help="labels CSV to write (file,event,run,num_peaks,label)")
    parser.add_argument("-x", "--prefix", default="", help="prefix for file names in lists, as indexamajig's -x")
    parser.add_argument("--dataset", default=None, help="HDF5 data set of the frames")
    parser.add_argument("--run", action="append", default=None, metavar="NAME",
                        help="run name for each input, in order (default: each list's stem)")
    src = parser.add_argument_group("where the peak counts come from (default: peakfinder8 on every frame)")
    src.add_argument("--labeler", default="peakfinder8",
                     help="peak counter registered through sfxveto_labelers (default peakfinder8: OM's compiled one)")
    src.add_argument("--stream", action="append", default=None, metavar="FILE",
                     help="take num_peaks from a CrystFEL stream (matched by filename + event)")
    src.add_argument("--hitlist", action="append", default=None, metavar="FILE",
                     help="take nPeaks from a Cheetah/OM cleaned.txt or frames.txt")
    src.add_argument("--cxi-npeaks", action="store_true",
                     help="take /entry_1/result_1/nPeaks from each CXI file")
    pf = parser.add_argument_group("peakfinder8 (indexamajig-style)")
    pf.add_argument("--threshold", type=float, default=None,
                    help="ADC threshold in ADU (default: --threshold-photons x the geometry's adu_per_photon, "
                         "else 0: the SNR cut alone decides)")
    pf.add_argument("--threshold-photons", type=float, default=3.0,
                    help="ADC threshold in photons when the geometry gives adu_per_photon and no --threshold "
                         "is set (default 3: keeps one- and two-photon noise pixels out, whatever the gain)")
    pf.add_argument("--min-snr", type=float, default=DEFAULTS["min_snr"], help=f"default {DEFAULTS['min_snr']}")
    pf.add_argument("--min-pix-count", type=int, default=DEFAULTS["min_pix_count"],
                    help=f"default {DEFAULTS['min_pix_count']}")
    pf.add_argument("--max-pix-count", type=int, default=DEFAULTS["max_pix_count"],
                    help=f"default {DEFAULTS['max_pix_count']}")
    pf.add_argument("--local-bg-radius", type=int, default=DEFAULTS["local_bg_radius"],
                    help=f"default {DEFAULTS['local_bg_radius']}")
    pf.add_argument("--min-res", type=float, default=DEFAULTS["min_res"],
                    help="minimum distance from the beam center, pixels (default 0)")
    pf.add_argument("--max-res", type=float, default=DEFAULTS["max_res"],
                    help=f"maximum distance from the beam center, pixels (default {DEFAULTS['max_res']})")
    pf.add_argument("--max-num-peaks", type=int, default=DEFAULTS["max_num_peaks"],
                    help=f"stop counting at this many peaks (default {DEFAULTS['max_num_peaks']})")
    pf.add_argument("--fast-mode", action="store_true", help="OM's sampled radial statistics (faster, seeded)")
    pf.add_argument("--geometry", "-g", default=None, metavar="FILE.geom",
                    help="CrystFEL geometry for the beam center and mask (default: LIST.geom beside each list); "
                         "with several panels, the frames are raw slabs: each panel is scanned as an ASIC and each "
                         "pixel's resolution is its distance from the beam in the lab")
    pf.add_argument("--mask", default=None, metavar="FILE[:DATASET]",
                    help="good-pixel mask (nonzero = good); default: the geometry's, else the CXI file's own")
    add_center_argument(pf, "beam center in pixels (default: from the geometry, else the frame center)")
    parser.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                        help="label up to N inputs at once, each in a process of its own (default 1: all in this "
                             "process; 0: one per core). Only peakfinder8 without --fast-mode on frames; the same "
                             "counts either way. The processes are started fresh: a script that calls label with "
                             "N > 1 needs an `if __name__ == \"__main__\":` guard")
    rule = parser.add_argument_group("labelling rule")
    rule.add_argument("--rule", choices=("paper", "percentile"), default="paper",
                      help="paper: <MISS_BELOW peaks miss, >HIT_ABOVE hit; percentile: bottom/top quartile per run")
    rule.add_argument("--miss-below", type=int, default=2, help="paper rule (default 2)")
    rule.add_argument("--hit-above", type=int, default=10, help="paper rule (default 10)")
    rule.add_argument("--percentile", type=float, default=25.0, help="percentile rule (default 25)")


def _center(value):
    """``--center`` as parsed (a (row, col) pair), or None."""
    return None if value is None else tuple(value)


class _FrameCounter:
    """Runs a registered peak counter on full frames, with the mask/centre of each file."""

    def __init__(self, args: argparse.Namespace) -> None:
        from sfx_cnn_veto import manager

        specs = manager.labelers()
        if args.labeler not in specs:
            raise ConfigError(f"--labeler {args.labeler!r} is not registered (have: {', '.join(sorted(specs))})")
        self.spec = specs[args.labeler]
        self.args = args
        self.base = {
            "min_snr": args.min_snr, "min_pix_count": args.min_pix_count,
            "max_pix_count": args.max_pix_count, "local_bg_radius": args.local_bg_radius,
            "min_res": args.min_res, "max_res": args.max_res, "max_num_peaks": args.max_num_peaks,
            "fast_mode": args.fast_mode,
        }
        self._counters: dict[tuple, Any] = {}
        self._geoms: dict[str, dict] = {}
        self._said: set = set()

    def _geom(self, list_path: str | None):
        """The run's geometry: ``--geometry``, else ``LIST.geom`` beside the list (None if neither)."""
        from sfx_cnn_veto.io.geometry import read_geometry

        path = self.args.geometry
        if path is None and list_path and list_path.endswith(".lst"):
            candidate = list_path[:-4] + ".geom"
            path = candidate if os.path.exists(candidate) else None
        if path is None:
            return None
        if path not in self._geoms:
            self._geoms[path] = read_geometry(path)
        return self._geoms[path]

    def counter(self, data_file: str, shape: tuple[int, ...], list_path: str | None):
        key = (data_file, shape, list_path)
        if key in self._counters:
            return self._counters[key]
        geom = self._geom(list_path)
        if geom is None:
            from sfx_cnn_veto.core.crop import check_single_panel

            check_single_panel(shape)  # a raw multi-panel slab needs its geometry to place the beam
        if geom is not None and geom.beam_center() is None:
            placed = self._panel_options(geom, data_file, shape)
        else:
            placed = self._frame_options(geom, data_file, shape)
        options = dict(self.base, threshold=self._threshold(geom, list_path, data_file), **placed)
        # one counter per (mask, centre or radius map): files of a run share them
        mask = options["mask"]
        sig = (options.get("center"), id(geom) if "radius" in options else None,
               None if mask is None else hash(np.packbits(mask).tobytes()), shape, options["threshold"])
        for c in self._counters.values():
            if getattr(c, "_sig", None) == sig:
                self._counters[key] = c
                return c
        counter = self.spec.create(options)
        try:
            counter._sig = sig
        except AttributeError:
            pass
        self._counters[key] = counter
        return counter

    def _frame_options(self, geom, data_file: str, shape: tuple[int, ...]) -> dict:
        """Beam centre and mask of a single-panel frame: ``--center``, else the geometry's, else the frame centre."""
        from sfx_cnn_veto.io.masks import cxi_mask, geom_mask, load_mask_file

        center = _center(self.args.center)
        if center is None and geom is not None:
            center = geom.beam_center()
        if self.args.mask:
            mask = load_mask_file(self.args.mask, shape)
        elif geom is not None and any(p.mask for p in geom.panels):
            mask = geom_mask(geom, data_file, shape)
        else:
            mask = cxi_mask(data_file, shape)
        return {"center": center, "mask": mask}

    def _panel_options(self, geom, data_file: str, shape: tuple[int, ...]) -> dict:
        """Radius map, mask and ASIC grid of a multi-panel raw slab from its geometry.

        Each slab pixel's radius is its lab distance from the beam (``hypot(x, y)``); pixels no panel
        uses, ``no_index`` panels, bad regions and the geometry's mask are bad, and so are the
        ``--mask`` file's (else, when the geometry names no mask, the CXI file's own). peakfinder8
        scans each panel as one ASIC (:func:`~sfx_cnn_veto.training.peaks.asic_grid`).
        """
        from sfx_cnn_veto.io.masks import cxi_mask, load_mask_file
        from sfx_cnn_veto.training.peaks import asic_grid

        if self.args.center:
            raise ConfigError(f"--center: the geometry {geom.source} has {len(geom.panels)} panels and puts the "
                              "beam at x = y = 0; move its panels' corner_x/corner_y instead")
        geom.check_frame(shape, source=data_file)
        x, y = geom.pixel_maps(shape)
        good = geom.good_pixels(shape, data_file)
        if self.args.mask:
            good &= np.asarray(load_mask_file(self.args.mask, shape), dtype=bool)
        elif not any(p.mask for p in geom.panels):
            own = cxi_mask(data_file, shape)
            if own is not None:
                good &= own
        grid = asic_grid(geom, shape)
        if grid is None and geom.source not in self._said:
            self._said.add(geom.source)
            print(f"sfx-cnn-veto: warning: geometry {geom.source}: its panels are not on one grid of ASICs; "
                  "peakfinder8 scans the whole slab as one ASIC (a peak may join pixels of two panels that are "
                  "side by side in the slab)", file=sys.stderr)
        flat = (-1, shape[-1])
        return {"radius": np.hypot(x, y).astype(np.float32).reshape(flat), "mask": good.reshape(flat),
                "asic_shape": grid, "pad_to_asics": grid is not None}

    def _threshold(self, geom, list_path: str | None, data_file: str) -> float:
        """``--threshold``, else ``--threshold-photons`` x the geometry's ``adu_per_photon``, else 0."""
        threshold = self.args.threshold
        if threshold is None:
            adu = None
            if geom is not None:
                adu = geom.float_global("adu_per_photon")
            threshold = self.args.threshold_photons * adu if adu else 0.0
            if (list_path, adu) not in self._said:
                self._said.add((list_path, adu))
                print(f"sfx-cnn-veto: {list_path or data_file}: peakfinder8 threshold {threshold:g} ADU"
                      + (f" ({self.args.threshold_photons:g} photons x {adu:g} ADU/photon)" if adu else ""),
                      file=sys.stderr)
        return threshold


def _countable(frame):
    """The frame, or :class:`FrameReadError` where a peak count would be meaningless.

    As for scoring (:data:`sfx_cnn_veto.core.normalize.MAX_NONFINITE_FRACTION`): a frame mostly NaN/Inf,
    or not real numbers, gets no count and no label, rather than 0 peaks and a "miss" label.
    """
    import numpy as np

    from sfx_cnn_veto.core.normalize import MAX_NONFINITE_FRACTION
    from sfx_cnn_veto.errors import FrameReadError

    frame = np.asarray(frame)
    if frame.dtype.kind not in "fiub":
        raise FrameReadError(f"expected a numeric (real) frame, got dtype {frame.dtype}")
    if frame.dtype.kind == "f":
        bad = 1.0 - float(np.isfinite(frame).mean()) if frame.size else 1.0
        if bad > MAX_NONFINITE_FRACTION:
            raise FrameReadError(f"{bad:.0%} of the frame's pixels are NaN or infinite")
    return frame


def run_label(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS
    from sfx_cnn_veto.cli_commands import check_writable
    from sfx_cnn_veto.event_errors import EventErrors
    from sfx_cnn_veto.io.store import FrameStore
    from sfx_cnn_veto.training import labels as L

    check_writable(args.output)  # now, not after every frame was counted
    if args.run is not None and len(args.run) != len(args.inputs):
        raise ConfigError(f"--run given {len(args.run)} times for {len(args.inputs)} inputs; give one per input")
    counts = _PeakCounts(args)
    errors = EventErrors(" (written with no count and no label)", prefix="sfx-cnn-veto: warning: ")
    all_rows: list[L.LabelRow] = []
    with FrameStore({"dataset": args.dataset} if args.dataset else {}) as store:
        inputs = [(item, args.run[n] if args.run else os.path.splitext(os.path.basename(item))[0],
                   _events_of(args, store, item)) for n, item in enumerate(args.inputs)]
        with _counts_elsewhere(args, inputs) as counted:
            for (item, run, events), done in zip(inputs, counted):
                all_rows += _label_input(args, store, item, run, events, counts, errors, done)
    errors.finish()
    L.write_labels(args.output, all_rows)
    print(f"{'run':<16} {'events':>7} {'hits':>6} {'misses':>7} {'ambig.':>7} {'no count':>9}", file=sys.stderr)
    for run, n, hits, misses, amb, bad in L.summarize(all_rows):
        print(f"{run:<16} {n:>7} {hits:>6} {misses:>7} {amb:>7} {bad:>9}", file=sys.stderr)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_EVENT_ERRORS if any(r.num_peaks is None for r in all_rows) else 0


def _events_of(args: argparse.Namespace, store, item: str) -> list:
    """The ``(ref, error)`` of every event of one input (a list or a frame file)."""
    from sfx_cnn_veto.io.store import iter_events

    try:
        return list(iter_events([item], store, prefix=args.prefix))
    except VetoError as exc:
        raise ConfigError(f"{item}: {exc}") from exc


def _label_input(args: argparse.Namespace, store, item: str, run: str, events: list, peaks: "_PeakCounts",
                 errors, done=None) -> list:
    """The label rows of one input: every event, with its count or why it has none.

    ``done``: a callable giving the ``(count, why)`` of every event, counted in
    another process (:func:`_counts_elsewhere`), or None to count them here.
    """
    from sfx_cnn_veto.cli_commands import progress
    from sfx_cnn_veto.training import labels as L

    list_path = item if item.endswith(".lst") else None
    results = done() if done is not None else None
    counts: list[int | None] = []
    with progress(total=len(events), desc=f"label {run}") as bar:
        for k, (ref, error) in enumerate(events):
            if error is not None:
                count, why = None, error
            else:
                count, why = results[k] if results is not None else peaks.count(store, ref, list_path)
            if why is not None:
                errors.report(ref, why)
            else:
                errors.ok()
            counts.append(count)
            bar.update(1, hits=(count or 0) > args.hit_above if args.rule == "paper" else None)
    if args.rule == "paper":
        labels = L.paper_rule(counts, miss_below=args.miss_below, hit_above=args.hit_above)
    else:
        labels = L.percentile_rule(counts, percentile=args.percentile)
    return [L.LabelRow(ref.file, ref.event, run, count, label)
            for (ref, _), count, label in zip(events, counts, labels)]


def _label_jobs(args: argparse.Namespace, n_inputs: int) -> int:
    """How many processes count peaks: 1 unless peakfinder8 counts frames of several inputs (``--jobs``)."""
    if args.stream or args.hitlist or args.cxi_npeaks or args.labeler != "peakfinder8" or args.fast_mode:
        return 1  # cheap, or a counter that may carry state from frame to frame
    jobs = args.jobs if args.jobs else (os.cpu_count() or 1)
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 0, got {jobs}")
    return min(jobs, n_inputs)


@contextlib.contextmanager
def _counts_elsewhere(args: argparse.Namespace, inputs: list):
    """One callable per input giving its events' ``(count, why)``, counted in worker processes.

    With one job, ``None`` per input: the caller counts in this process.
    The workers are started fresh (``spawn``: nothing of this process's
    threads or TensorFlow), each counts whole inputs with counters of its own.
    """
    jobs = _label_jobs(args, len(inputs))
    if jobs <= 1:
        yield [None] * len(inputs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    plain = argparse.Namespace(**{k: v for k, v in vars(args).items() if not callable(v)})
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_count_events, plain, item, events) for item, _, events in inputs]
        try:
            yield [future.result for future in futures]
        finally:
            for future in futures:
                future.cancel()


def _count_events(args: argparse.Namespace, item: str, events: list) -> list[tuple[int | None, str | None]]:
    """``(count, why)`` of each event of one input (``why`` for those already in error: not counted)."""
    from sfx_cnn_veto.io.store import FrameStore

    peaks = _PeakCounts(args)
    list_path = item if item.endswith(".lst") else None
    with FrameStore({"dataset": args.dataset} if args.dataset else {}) as store:
        return [(None, error) if error is not None else peaks.count(store, ref, list_path) for ref, error in events]


class _PeakCounts:
    """Where ``label`` gets an event's peak count: streams/hit lists, the CXI files' nPeaks, or peakfinder8."""

    def __init__(self, args: argparse.Namespace) -> None:
        from sfx_cnn_veto.training import labels as L

        self.args = args
        self.prefix = args.prefix or ""
        self.external = None
        if args.stream or args.hitlist:
            self.external = [L.read_stream_counts(p) for p in args.stream or ()] + \
                            [L.read_hitlist_counts(p) for p in args.hitlist or ()]
        self.frames = None if (self.external or args.cxi_npeaks) else _FrameCounter(args)
        self._cxi: dict[str, list[int] | str] = {}

    def count(self, store, ref, list_path: str | None) -> tuple[int | None, str | None]:
        """``(count, None)`` or ``(None, why)``: never raises for one event's trouble."""
        try:
            if self.external is not None:
                return self._external(ref)
            if self.args.cxi_npeaks:
                return self._cxi_npeaks(ref)
            frame = _countable(store.read(ref))
            counter = self.frames.counter(ref.file, tuple(frame.shape), list_path)
            # a slab of panel planes (P, ss, fs) is counted as the planes stacked
            return int(counter(frame.reshape(-1, frame.shape[-1]) if frame.ndim > 2 else frame)), None
        except VetoError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - never drop an event
            return None, f"{type(exc).__name__}: {exc}"

    def _external(self, ref) -> tuple[int | None, str | None]:
        # as indexamajig wrote the name (-x prefix + list line), then the path read
        count = next((c for src in self.external for name in (self.prefix + ref.path, ref.file, ref.path)
                      if (c := src.get(name, ref.event)) is not None), None)
        if count is None:
            return None, "no peak count for this event in " + ", ".join(s.source for s in self.external)
        return count, None

    def _cxi_npeaks(self, ref) -> tuple[int | None, str | None]:
        from sfx_cnn_veto.training import labels as L

        got = self._cxi.get(ref.file)
        if got is None:
            try:
                got = L.read_cxi_counts(ref.file)
            except (VetoError, OSError) as exc:
                got = str(exc)
            self._cxi[ref.file] = got
        if isinstance(got, str):
            return None, got
        index = ref.index or 0
        if index < len(got):
            return got[index], None
        return None, f"{L.CXI_NPEAKS} has {len(got)} entries, no event {index}"


# ---------------------------------------------------------------------------
# train

def configure_train(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.training.train import DEFAULT_ARCH, TrainConfig

    d = TrainConfig(labels="", output="")
    parser.add_argument("--labels", required=True, help="labels CSV from 'sfx-cnn-veto label'")
    parser.add_argument("--train-runs", default=None, help="comma-separated runs to train on (default: all)")
    parser.add_argument("--val-runs", default=None,
                        help="comma-separated runs for early stopping and the threshold "
                             "(default: a reproducible 15%% of the training events)")
    parser.add_argument("-o", "--output", required=True, help="model file to write (.keras)")
    parser.add_argument("--arch", default=DEFAULT_ARCH, help=f"architecture (default {DEFAULT_ARCH}; 'paper' = Table I)")
    parser.add_argument("--normalize", default=None,
                        help="normalization (default: the architecture's: despeckle for veto and veto_fr, "
                             "standardize for paper)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    parser.add_argument("--patience", type=int, default=d.patience,
                        help=f"early stopping: epochs without a better validation loss (default {d.patience}; 0 off)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="default 100 (the paper's)")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer, help="default sgd (the paper's)")
    parser.add_argument("--lr", type=float, default=d.learning_rate, help="learning rate (default 0.002)")
    parser.add_argument("--decay", type=float, default=d.decay, help="inverse-time decay per step (default 1e-4)")
    parser.add_argument("--momentum", type=float, default=d.momentum, help="default 0.9")
    parser.add_argument("--no-class-weight", action="store_true", help="do not weight classes by their rarity")
    parser.add_argument("--augment", default=d.augment,
                        help="'default' (= shift=MARGIN,flips=1,gain=0.5:2.5,offset=-5:5,hot_pixels=150,background=0:4,"
                             "p_raw=0.75,weak_hits=0.75,weak_min_peaks=11), 'none', or such a list; also hot_clusters=N, "
                             "weaken=LO:HI (see docs/results.md)")
    parser.add_argument("--margin", type=int, default=d.margin, help="pixels read around the crop for shifts (default 8)")
    parser.add_argument("--holdout", type=float, default=d.holdout,
                        help="fraction held out when no --val-runs (default 0.15)")
    parser.add_argument("--target-sensitivity", type=float, default=d.target_sensitivity,
                        help="the threshold is chosen for this sensitivity on validation data, weak hits made from "
                             "it included (default 0.99)")
    parser.add_argument("--min-specificity", type=float, default=d.min_specificity,
                        help="... but never keeps more than 1 - this of the validation misses (default 0.97)")
    parser.add_argument("--init-model", default=None, metavar="MODEL.keras",
                        help="start from this model (fine-tuning); keeps its architecture and preprocessing")
    add_crop_argument(parser, "crop shape (default: the architecture's)")
    add_center_argument(parser, "crop center (default: frame center)")
    parser.add_argument("--geometry", "-g", default=None, metavar="FILE.geom",
                        help="CrystFEL geometry of the detector: the frames are its raw slabs and the crop is taken "
                             "around its beam, gaps between panels masked (not with --center)")
    parser.add_argument("--max-per-run", type=int, default=None,
                        help="use at most this many labelled events per run (reproducible subset)")
    parser.add_argument("--dataset", default=None, help="HDF5 data set of the frames")
    parser.add_argument("--mask", default=None, metavar="FILE[:DATASET]",
                        help="good-pixel mask of the full frame (nonzero = good) for every frame "
                             "(default: each CXI file's own /entry_1/data_1/mask)")
    parser.add_argument("--threads", type=int, default=d.threads,
                        help="TensorFlow threads (default 1: the same seed and data give the same model, bit for bit; "
                             "2 is 13-37%% faster on 2 cores but not bit-exact)")
    parser.add_argument("--prefetch", type=int, default=d.prefetch, metavar="N",
                        help=f"augmented batches prepared ahead in a second thread while TensorFlow trains (default "
                             f"{d.prefetch}; 0: in line); the model is the same either way, bit for bit")
    parser.add_argument("--no-mask", action="store_true",
                        help="train on raw frames, bad pixels included (the default for --arch paper, as in the paper)")


def run_train(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.training.labels import parse_runs
    from sfx_cnn_veto.training.report import table_markdown
    from sfx_cnn_veto.training.train import TrainConfig, train

    crop = tuple(args.crop) if args.crop else None
    cfg = TrainConfig(
        labels=args.labels, output=args.output, train_runs=parse_runs(args.train_runs),
        val_runs=parse_runs(args.val_runs), arch=args.arch, normalize=args.normalize, epochs=args.epochs,
        patience=args.patience, seed=args.seed, batch_size=args.batch_size, optimizer=args.optimizer,
        learning_rate=args.lr, decay=args.decay, momentum=args.momentum, class_weight=not args.no_class_weight,
        augment=args.augment, margin=args.margin, holdout=args.holdout,
        target_sensitivity=args.target_sensitivity, min_specificity=args.min_specificity,
        init_model=args.init_model, crop_shape=crop,
        crop_center=_center(args.center), geometry=args.geometry, max_per_run=args.max_per_run,
        reader_options={"dataset": args.dataset} if args.dataset else {},
        use_mask=False if args.no_mask else (True if args.mask else None), mask=args.mask,
        threads=args.threads if args.threads and args.threads > 0 else None, prefetch=max(0, args.prefetch),
    )
    result = train(cfg)
    meta = result.model.metadata
    val = result.val_metrics
    o = val["overall"]
    print(f"wrote {result.path} ({meta.architecture} + {meta.normalize}; best epoch {result.best_epoch} "
          f"of {len(result.history['loss'])})", file=sys.stderr)
    weak = val.get("weak_hits")
    rule = (f"target sensitivity {cfg.target_sensitivity:g} on the held-out hits"
            + (f" and {weak['events']} weak hits made from them" if weak else "")
            + f", at most {1 - cfg.min_specificity:.0%} of the held-out misses kept")
    print(f"threshold {result.threshold:.4g} ({rule}) on {val['source']}: sensitivity {o['sensitivity']:.3g}, "
          f"specificity {o['specificity']:.3g}, accuracy {o['accuracy']:.3g}"
          + (f"; weak hits kept {weak['sensitivity']:.1%}" if weak else ""), file=sys.stderr)
    if "runs" in val:
        print(f"validation at that threshold ({val['source']}; the Set column names the run's role):",
              file=sys.stderr)
        print(table_markdown({"runs": val["runs"], "overall": o}, list(val["runs"]), cfg.train_runs or ()),
              file=sys.stderr)
    if result.curves_path:
        print(f"training curves: {result.curves_path}", file=sys.stderr)
    if result.failed:
        from sfx_cnn_veto.cli import EXIT_TRAINING_FAILED

        print(f"sfx-cnn-veto: error: training failed: {result.failed}; the model was written to {result.path} "
              f"for inspection, not to {args.output}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    return 0


# ---------------------------------------------------------------------------
# evaluate

def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", default=None,
                        help="trained .keras model (default: the small model shipped with the package)")
    parser.add_argument("--labels", required=True, help="labels CSV")
    parser.add_argument("--report", required=True, metavar="DIR", help="directory for report.md, metrics.json, PNGs")
    parser.add_argument("--runs", default=None, help="comma-separated runs to evaluate (default: all in the labels)")
    parser.add_argument("--compare-model", action="append", default=[], metavar="MODEL.keras",
                        help="also evaluate this model and write a side-by-side table (compare.md)")
    parser.add_argument("--intensity-runs", default=None,
                        help="runs on which the naive intensity threshold is chosen (default: the model's training runs)")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=64, help="frames per network call (default 64)")
    parser.add_argument("--dataset", default=None, help="HDF5 data set of the frames")
    from sfx_cnn_veto.cli_commands import add_geometry_argument, add_mask_arguments

    add_geometry_argument(parser)
    add_mask_arguments(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.training.evaluate import evaluate, write_report
    from sfx_cnn_veto.training.labels import parse_runs
    from sfx_cnn_veto.cli_commands import model_path
    from sfx_cnn_veto.training.report import calibration_line, compare_markdown, peak_bins_markdown, table_markdown

    args.model = model_path(args)
    ev = evaluate(args.model, args.labels, runs=parse_runs(args.runs), compare_models=args.compare_model,
                  intensity_runs=parse_runs(args.intensity_runs), threshold=args.threshold,
                  reader_options={"dataset": args.dataset} if args.dataset else {}, batch_size=args.batch_size,
                  mask=args.mask, file_masks=not args.no_file_mask, geometry=args.geometry)
    written = write_report(ev, args.report, labels_path=args.labels, model_path=args.model)
    calibration = calibration_line(ev.model.metadata)
    if calibration and args.threshold is None:
        print(f"model {calibration}")
    print(table_markdown(ev.table, ev.runs, ev.train_runs))
    print("hits kept per peak count:")
    print(peak_bins_markdown(ev.peak_bins))
    if ev.compare:
        print(compare_markdown(ev, args.model))
    n_err = sum(1 for e in ev.model.errors if e)
    if n_err:
        print(f"sfx-cnn-veto: {n_err} event(s) could not be scored and count as predicted hits "
              f"(listed in {written['report']})", file=sys.stderr)
    print(f"report: {written['report']}; metrics: {written['metrics']}", file=sys.stderr)
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS

    return EXIT_EVENT_ERRORS if n_err else 0  # as every command: 2 when some events could not be decided


# ---------------------------------------------------------------------------
# calibrate

def configure_calibrate(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.training.calibrate import DEFAULT_TARGET

    parser.add_argument("-m", "--model", required=True, help="the model to calibrate (.keras; not modified)")
    parser.add_argument("--labels", required=True,
                        help="labels CSV of a few hundred frames of the new run ('sfx-cnn-veto label')")
    parser.add_argument("-o", "--output", required=True, help="the calibrated copy to write (.keras)")
    parser.add_argument("--target-sensitivity", type=float, default=DEFAULT_TARGET,
                        help=f"share of the labelled hits the veto must keep (default {DEFAULT_TARGET})")
    parser.add_argument("--runs", default=None, help="comma-separated runs of the labels to use (default: all)")
    parser.add_argument("--first", type=int, default=None, metavar="N",
                        help="use only the first N frames of each run in the labels (default: all)")
    parser.add_argument("--may-raise", action="store_true",
                        help="let the threshold go above the model's when the labelled hits allow it (fewer misses "
                             "kept; default: calibration only ever lowers it, since a few dozen labelled hits are no "
                             "safe lower bound for the rest of the run)")
    parser.add_argument("--batch-size", type=int, default=64, help="frames per network call (default 64)")
    parser.add_argument("--dataset", default=None, help="HDF5 data set of the frames")
    from sfx_cnn_veto.cli_commands import add_geometry_argument, add_mask_arguments

    add_geometry_argument(parser)
    add_mask_arguments(parser)


def run_calibrate(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.training.calibrate import calibrate, describe, print_warnings
    from sfx_cnn_veto.training.labels import parse_runs

    result = calibrate(args.model, args.labels, args.output, target=args.target_sensitivity,
                       runs=parse_runs(args.runs), first=args.first, may_raise=args.may_raise,
                       reader_options={"dataset": args.dataset} if args.dataset else {},
                       batch_size=args.batch_size, mask=args.mask, file_masks=not args.no_file_mask,
                       geometry=args.geometry)
    print(describe(result.record))
    print_warnings(result.record)
    print(f"wrote {result.output}", file=sys.stderr)
    return 0
