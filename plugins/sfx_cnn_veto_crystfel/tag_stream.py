"""``sfx-cnn-veto tag-stream`` (alias ``filter-stream``): CNN tags in a CrystFEL stream's chunk headers.

Each complete chunk gets ``key = value`` header lines right after its
``hit = `` line (the form CrystFEL writes and reads back for copied header
fields)::

    cnn_hit_score = 0.970000
    cnn_hit = 1

and, for a frame that could not be scored (kept: fail open),
``cnn_hit_score = nan``, ``cnn_hit = 1`` and ``cnn_hit_error = <reason>``.
Everything else is copied byte for byte (line ends included). Chunks are
matched to scores by filename + event, never by position (``indexamajig -j``
writes chunks out of list order). A chunk cut by the end of the file is copied
unchanged and reported. ``--hits``/``--misses`` split the stream: each part
gets the preamble (format line, geometry, cell) and its chunks.

The summary counts the chunks indexamajig indexed (one or more crystals) that
the veto calls misses: the indexable hits a veto run would have lost.

Single-frame files (a CBF, a 2-D HDF5 data set) have ``Event: //`` in
indexamajig 0.12's streams and no ``Event:`` line in 0.9's: both name the
file's one frame. File names are matched as indexamajig wrote them (with its
``-x`` prefix); relative ones are read relative to the working directory, or,
when they are not found there, to the stream's directory.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from typing import Any

from sfx_cnn_veto import hitrate
from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io import files as atomic
from sfx_cnn_veto.io.stream import Chunk, canonical_event, iter_chunks, iter_stream


TAG_SCORE = "cnn_hit_score"
TAG_HIT = "cnn_hit"
TAG_ERROR = "cnn_hit_error"


def tag_items(score: float | None, is_hit: bool, error: str | None) -> list[tuple[str, str]]:
    """The header lines of one decision, in the order they are written."""
    items = [(TAG_SCORE, "nan" if score is None or not math.isfinite(score) else f"{score:.6f}"),
             (TAG_HIT, str(int(bool(is_hit))))]
    if error:
        items.append((TAG_ERROR, " ".join(error.split())))
    return items


def read_scores_csv(path: str, *, prefix: str = "", threshold: float | None = None) -> dict:
    """``{(prefix + file, canonical event): (score or None, is_hit, error or None)}`` from a scores CSV."""
    out: dict = {}
    try:
        handle = open(path, encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise ConfigError(f"cannot open scores {path!r}: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = {"file", "event", "score"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{path}: not a scores CSV (lacks columns {', '.join(sorted(missing))})")
        for row in reader:
            error = row.get("error") or None
            score = float(row["score"]) if row["score"] not in ("", None) else None
            if score is not None and not math.isfinite(score):
                score, error = None, error or "non-finite score"
            if error or score is None:
                is_hit = True
            elif threshold is not None:
                is_hit = score >= threshold
            else:
                is_hit = str(row.get("is_hit", "")).strip() in ("1", "True", "true")
            out[(prefix + row["file"], canonical_event(row["event"]))] = (score, is_hit, error)
    return out


def score_chunks(args: argparse.Namespace, keys: list[tuple[str, str | None]]) -> dict:
    """Score the frames the chunks name (read through the core's readers)."""
    from sfx_cnn_veto.cli_commands import load_veto, progress, reader_options
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.lst import resolve_path
    from sfx_cnn_veto.io.store import FrameStore

    veto = load_veto(args)
    out: dict = {}
    # stream file names already carry indexamajig's -x prefix; relative ones are relative to where it ran
    base = stream_base(args.stream, [f for f, _ in keys])
    refs = [(EventRef(f, e, resolve_path(f, base=base)), None) for f, e in keys]
    with FrameStore(reader_options(args)) as store, progress(total=len(refs), desc="tag-stream") as bar:
        for (key, _), (_ref, decision) in zip(refs, veto.stream_events(refs, store)):
            out[(key.path, key.event)] = (None if decision.error else decision.score, decision.is_hit, decision.error)
            bar.update(1, hits=decision.is_hit and not decision.error)
    return out


def stream_base(stream: str, names: list[str]) -> str:
    """Where indexamajig ran, for the stream's relative file names: the working directory if the first
    relative name is found there, else the stream's directory if it is found there, else the working directory."""
    cwd = os.getcwd()
    first = next((name for name in names if not os.path.isabs(name)), None)
    if first is None or os.path.exists(os.path.join(cwd, first)):
        return cwd
    beside = os.path.dirname(os.path.abspath(stream))
    if os.path.exists(os.path.join(beside, first)):
        print(f"sfx-cnn-veto: the stream's file names are relative to {beside} (the stream's directory), "
              "not to the working directory", file=sys.stderr)
        return beside
    return cwd


def run(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS

    if not os.path.exists(args.stream):
        raise ConfigError(f"{args.stream}: stream not found")
    outputs = [p for p in (args.output, args.hits, args.misses) if p]
    if not outputs:
        raise ConfigError("nothing to write: give -o OUT.stream and/or --hits/--misses")
    if os.path.abspath(args.stream) in {os.path.abspath(p) for p in outputs}:
        raise ConfigError("an output would overwrite the input stream")
    rates = hitrate.make(args)
    if args.plot:
        from sfx_cnn_veto.cli_commands import check_writable

        check_writable(args.plot)

    # pass 1: which events the stream holds (complete chunks only)
    keys: list = []
    seen = set()
    for chunk in iter_chunks(args.stream, incomplete=False):
        key = chunk.key
        if key[0] is not None and key not in seen:
            seen.add(key)
            keys.append(key)
    if args.scores:
        decisions = read_scores_csv(args.scores, prefix=args.prefix, threshold=args.threshold)
    else:
        decisions = score_chunks(args, keys)

    # pass 2: copy, tagging each chunk
    counts = {"chunks": 0, "hit": 0, "miss": 0, "error": 0, "cut": 0, "indexed": 0, "indexed_miss": 0}
    with atomic.writing(outputs) as handles:
        for piece in iter_stream(args.stream):
            if isinstance(piece, str):
                for handle in handles.values():
                    handle.write(piece)
                continue
            targets = [args.output] if args.output else []
            if not piece.complete:
                counts["cut"] += 1
                print(f"sfx-cnn-veto: {args.stream}:{piece.lineno}: chunk cut by the end of the stream "
                      "(copied unchanged)", file=sys.stderr)
                text = piece.text
                targets += [args.hits] if args.hits else []
            else:
                counts["chunks"] += 1
                score, is_hit, error = _decision_of(piece, decisions)
                label = "error" if error else ("hit" if is_hit else "miss")
                counts[label] += 1
                if piece.num_crystals:  # indexed: a hit the veto must not lose
                    counts["indexed"] += 1
                    counts["indexed_miss"] += int(label == "miss")
                rates.add(piece.filename or "?", label)
                if error:
                    print(f"sfx-cnn-veto: {piece.filename} {piece.event or ''}: {error} (tagged cnn_hit = 1)".replace(
                        "  ", " "), file=sys.stderr)
                text = "".join(piece.with_header_items(tag_items(score, is_hit, error)))
                split = args.hits if is_hit else args.misses
                if split:
                    targets.append(split)
            for target in targets:
                handles[target].write(text)
    print(f"tag-stream: {counts['chunks']} chunks: {counts['hit']} hits, {counts['miss']} misses, "
          f"{counts['error']} errors (tagged as hits)"
          + (f", {counts['cut']} cut chunk(s) copied unchanged" if counts["cut"] else ""), file=sys.stderr)
    print(f"tag-stream: {counts['indexed']} chunks indexed; {counts['indexed_miss']} of them called misses "
          "(indexable hits the veto would lose)", file=sys.stderr)
    hitrate.finish(rates, args)
    return EXIT_EVENT_ERRORS if counts["error"] or counts["cut"] else 0


def _decision_of(chunk: Chunk, decisions: dict) -> tuple[Any, bool, str | None]:
    if chunk.filename is None:
        return None, True, "chunk has no 'Image filename:' line"
    found = decisions.get(chunk.key)
    if found is None:
        return None, True, "no score for this event (not in the scores CSV)"
    return found


def configure(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.cli_commands import add_model_arguments

    parser.add_argument("stream", metavar="IN.stream", help="CrystFEL stream (format 2.x) written by indexamajig")
    parser.add_argument("-o", "--output", metavar="OUT.stream", help="the whole stream with CNN tags")
    parser.add_argument("--hits", metavar="HITS.stream", help="tagged chunks decided hit (and errors: fail open)")
    parser.add_argument("--misses", metavar="MISSES.stream", help="tagged chunks decided miss")
    parser.add_argument("--scores", metavar="SCORES.csv",
                        help="take scores from this CSV (filter-lst/score output) instead of scoring frames")
    parser.add_argument("-x", "--prefix", default="",
                        help="the -x prefix indexamajig ran with: prepended to the CSV's file names to match the stream's")
    parser.add_argument("--dataset", default=None, help="HDF5 data set of the frames (default: auto)")
    add_model_arguments(parser)
    hitrate.add_arguments(parser)
