"""``sfx-cnn-veto tag-cxi``: per-event CNN tags beside the data, in the CXI layout.

For each input HDF5/CXI file ``run.cxi`` a sidecar ``run.cnn.h5`` holds, like
Cheetah's ``/entry_1/result_1/nPeaks``, one value per frame of the file:

``/entry_1/result_1/cnnHitScore``  float32  hit probability, NaN where undecided
``/entry_1/result_1/cnnHit``       int8     1 hit (and fail-open errors), 0 miss,
                                            -1 frame not in the inputs
``/entry_1/result_1/cnnError``     int8     1 where the frame could not be scored
``/entry_1/data_1/data``           external link to the frames of ``run.cxi``

with attributes (model hash, threshold, package version, source file) on
``/entry_1/result_1``. Files are written atomically. ``--in-place`` writes the
three ``result_1`` data sets into the user's own file instead (only then is
that file opened for writing).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from sfx_cnn_veto.errors import ConfigError, FrameReadError

RESULT = "/entry_1/result_1"
SCORE = "cnnHitScore"
HIT = "cnnHit"
ERROR = "cnnError"


@dataclass
class FileTags:
    """The tags of one file, one slot per frame."""

    path: str
    dataset: str
    score: np.ndarray
    hit: np.ndarray
    error: np.ndarray

    @classmethod
    def empty(cls, path: str, dataset: str, n: int) -> "FileTags":
        return cls(path, dataset, np.full(n, np.nan, np.float32), np.full(n, -1, np.int8), np.zeros(n, np.int8))

    def set(self, index: int, score: float | None, is_hit: bool, error: str | None) -> None:
        self.score[index] = np.nan if score is None or error else score
        self.hit[index] = 1 if is_hit or error else 0
        self.error[index] = 1 if error else 0


def sidecar_path(path: str, *, output_dir: str | None = None, suffix: str = ".cnn.h5") -> str:
    """``run.cxi`` -> ``run.cnn.h5`` beside it, or in ``output_dir``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    directory = output_dir if output_dir else os.path.dirname(os.path.abspath(path))
    return os.path.join(directory, stem + suffix)


def write_sidecar(tags: FileTags, target: str, attrs: dict) -> None:
    """Write ``target`` atomically (``target.part`` renamed when closed)."""
    import h5py

    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp = target + ".part"
    with h5py.File(tmp, "w") as f:
        group = f.create_group(RESULT)
        group.create_dataset(SCORE, data=tags.score)
        group.create_dataset(HIT, data=tags.hit)
        group.create_dataset(ERROR, data=tags.error)
        for key, value in attrs.items():
            group.attrs[key] = value
        group.attrs["source_file"] = os.path.abspath(tags.path)
        link = os.path.relpath(os.path.abspath(tags.path), os.path.dirname(os.path.abspath(target)))
        f.require_group("/entry_1/data_1")
        f["/entry_1/data_1"]["data"] = h5py.ExternalLink(link, tags.dataset)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)


def write_in_place(tags: FileTags, attrs: dict) -> None:
    """Replace the ``result_1`` tag data sets inside the user's own file."""
    import h5py

    try:
        f = h5py.File(tags.path, "r+")
    except OSError as exc:
        raise FrameReadError(f"{tags.path}: cannot open for writing ({exc})") from exc
    with f:
        group = f.require_group(RESULT)
        for name, data in ((SCORE, tags.score), (HIT, tags.hit), (ERROR, tags.error)):
            if name in group:
                del group[name]
            group.create_dataset(name, data=data)
        for key, value in attrs.items():
            group.attrs[key] = value


def _frame_index(event: str | None) -> int | None:
    if event is None:
        return 0
    if event.startswith("//") and event[2:].isdigit():
        return int(event[2:])
    return None


def run(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS

    decided, attrs = _decide(args)
    tags, skipped = _collect(args, decided)
    written = _write(args, tags, attrs)
    errors = sum(1 for _, _, (_, _, error) in decided if error)
    print(f"tag-cxi: {len(decided)} events, {written} files tagged, {errors} errors"
          + (f", {skipped} events not written (file unreadable or event not a frame index)" if skipped else ""),
          file=sys.stderr)
    return EXIT_EVENT_ERRORS if errors or skipped else 0


def _decide(args: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    """``[(ref, event, (score, is_hit, error))]`` from ``--scores`` or the veto, and the sidecars' attributes."""
    from sfx_cnn_veto import __version__
    from sfx_cnn_veto.cli_commands import list_prefix, load_veto, model_path, progress, reader_options
    from sfx_cnn_veto.io.files import file_sha256
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    from sfx_cnn_veto_crystfel.filter_lst import canonical
    from sfx_cnn_veto_crystfel.tag_stream import read_scores_csv

    decided = []
    with FrameStore(reader_options(args)) as store:
        events = iter_events(args.inputs, store, prefix=list_prefix(args))
        if args.scores:
            table = read_scores_csv(args.scores, threshold=args.threshold)
            attrs: dict[str, Any] = {"scores_csv": os.path.abspath(args.scores)}
            for ref, error in events:
                _line, event = canonical(ref)
                found = table.get((ref.path, event))
                decided.append((ref, event, found if found else (None, True, error or "no score in the CSV")))
        else:
            veto = load_veto(args)
            model = model_path(args)
            attrs = {"model": os.path.abspath(model), "model_sha256": file_sha256(model),
                     "threshold": veto.threshold}
            with progress(desc="tag-cxi") as bar:
                for ref, decision in veto.stream_events(events, store):
                    decided.append((ref, canonical(ref)[1],
                                    (None if decision.error else decision.score, decision.is_hit, decision.error)))
                    bar.update(1, hits=decision.is_hit and not decision.error)
    attrs["sfx_cnn_veto_version"] = __version__
    return decided, attrs


def _collect(args: argparse.Namespace, decided: list) -> tuple[dict[str, "FileTags | None"], int]:
    """The decisions laid out per data file (None for a file that cannot be read), and how many were not."""
    from sfx_cnn_veto.cli_commands import reader_options
    from sfx_cnn_veto.io.hdf5 import HDF5Source

    tags: dict[str, FileTags | None] = {}
    skipped = 0
    for ref, event, (score, is_hit, error) in decided:
        if ref.file not in tags:
            try:
                with HDF5Source(ref.file, reader_options(args)) as src:
                    tags[ref.file] = FileTags.empty(ref.file, src.dataset_path, len(src.events()))
            except FrameReadError as exc:
                print(f"sfx-cnn-veto: {exc} (no sidecar)", file=sys.stderr)
                tags[ref.file] = None
        target, index = tags[ref.file], _frame_index(event)
        if target is None or index is None or index >= len(target.score):
            skipped += 1
            continue
        target.set(index, score, is_hit, error)
    return tags, skipped


def _write(args: argparse.Namespace, tags: dict[str, "FileTags | None"], attrs: dict[str, Any]) -> int:
    """Write each file's tags, in place or as a sidecar (two files never share one): how many were written."""
    targets: dict[str, str] = {}
    for path, file_tags in tags.items():
        if file_tags is None or args.in_place:
            continue
        target = os.path.abspath(sidecar_path(path, output_dir=args.output_dir, suffix=args.suffix))
        if target in targets:
            raise ConfigError(f"{targets[target]} and {path} would share the sidecar {target}; "
                              "write them to different --output-dir runs")
        if target == os.path.abspath(path):
            raise ConfigError(f"{target}: the sidecar would overwrite its data file; use another --suffix")
        targets[target] = path
    written = 0
    for path, file_tags in tags.items():
        if file_tags is None:
            continue
        if args.in_place:
            write_in_place(file_tags, attrs)
            print(f"tag-cxi: {path}: {RESULT}/{SCORE}, {HIT}, {ERROR} written in place", file=sys.stderr)
        else:
            target = sidecar_path(path, output_dir=args.output_dir, suffix=args.suffix)
            write_sidecar(file_tags, target, attrs)
            print(f"tag-cxi: {target}", file=sys.stderr)
        written += 1
    return written


def configure(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.cli_commands import add_input_arguments, add_model_arguments

    add_input_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--scores", metavar="SCORES.csv",
                        help="take decisions from this CSV (filter-lst --scores) instead of scoring")
    parser.add_argument("--output-dir", default=None,
                        help="where sidecars go (default: beside each data file)")
    parser.add_argument("--suffix", default=".cnn.h5", help="sidecar name: STEM + SUFFIX (default .cnn.h5)")
    parser.add_argument("--in-place", action="store_true",
                        help="write the tags into the data files themselves (opens them for writing)")
