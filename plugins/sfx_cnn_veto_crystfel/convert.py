"""``sfx-cnn-veto convert``: hit lists between OM, Cheetah, CrystFEL and scores CSVs.

``convert hitlist IN... -o hits.lst [--min-peaks N]``
    OM (``/abs/run.h5 // 0005``), Cheetah (``cleaned.txt``, ``frames.txt``) or
    CrystFEL lists to an indexamajig ``.lst`` (``/abs/run.h5 //5``), in order;
    from a decisions table (the OM adapter's ``decisions.csv``, a ``score``
    CSV) only the rows it calls hits.
``convert lst-scores IN.lst --scores SCORES.csv -o OUT.csv``
    the events of a ``.lst`` (hits, say) with their scores looked up in a
    scores CSV (``filter-lst --scores`` or ``score``); events without a score
    get an error row. With ``--model`` instead of ``--scores`` they are scored.
"""

from __future__ import annotations

import argparse
import csv
import sys

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io import files as atomic
from sfx_cnn_veto.io.hitlists import iter_hitlist


CSV_HEADER = ["file", "event", "score", "is_hit", "error"]


def _hitlist(args: argparse.Namespace) -> int:
    n_in = n_out = n_misses = 0
    with atomic.writing([args.output]) as handles:
        out = handles[args.output]
        for path in args.inputs:
            for entry in iter_hitlist(path, fmt=args.format):
                n_in += 1
                if entry.is_hit is False:  # a decisions table's miss (OM adapter, score CSV): not a hit
                    n_misses += 1
                    continue
                if args.min_peaks is not None and (entry.npeaks is None or entry.npeaks < args.min_peaks):
                    continue
                out.write(args.prefix + entry.lst_line() + "\n")
                n_out += 1
    misses = f", {n_misses} misses left out (their hit column says 0)" if n_misses else ""
    print(f"convert: {n_in} entries read{misses}, {n_out} written to {args.output}", file=sys.stderr)
    return 0


def _lst_scores(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    from sfx_cnn_veto_crystfel.filter_lst import canonical
    from sfx_cnn_veto_crystfel.tag_stream import read_scores_csv

    if bool(args.scores) == bool(args.model):
        raise ConfigError("give either --scores SCORES.csv (look scores up) or --model M (score the events)")
    errors = 0
    with atomic.writing([args.output]) as handles:
        writer = csv.writer(handles[args.output], lineterminator="\n")
        writer.writerow(CSV_HEADER)
        with FrameStore({"dataset": args.dataset} if args.dataset else {}) as store:
            events = iter_events([args.list], store, prefix=args.prefix)
            if args.scores:
                table = read_scores_csv(args.scores, threshold=args.threshold)
                rows = []
                for ref, error in events:
                    _line, event = canonical(ref)
                    score, is_hit, err = table.get((ref.path, event), (None, True, error or "no score in the CSV"))
                    rows.append((ref.path, event, score, is_hit, err))
            else:
                from sfx_cnn_veto.cli_commands import load_veto

                args.backend = args.batch_size = args.threads = None  # the defaults
                veto = load_veto(args)
                rows = ((ref.path, canonical(ref)[1], None if d.error else d.score, d.is_hit, d.error)
                        for ref, d in veto.stream_events(events, store))
            for path, event, score, is_hit, err in rows:
                errors += int(bool(err))
                writer.writerow([path, event or "", "" if score is None else f"{score:.6f}", int(bool(is_hit)),
                                 err or ""])
    return EXIT_EVENT_ERRORS if errors else 0


def run(args: argparse.Namespace) -> int:
    if args.kind == "hitlist":
        return _hitlist(args)
    if args.kind == "lst-scores":
        return _lst_scores(args)
    raise ConfigError("convert: name what to convert: hitlist or lst-scores (see --help)")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", parser_class=type(parser))
    hl = sub.add_parser("hitlist", help="OM/Cheetah/CrystFEL hit lists to an indexamajig .lst")
    hl.add_argument("inputs", nargs="+", metavar="LIST",
                    help="OM list or the OM adapter's decisions.csv (its hits), Cheetah cleaned.txt/frames.txt, or .lst")
    hl.add_argument("-o", "--output", required=True, metavar="OUT.lst", help="indexamajig event list to write")
    hl.add_argument("--format", choices=("auto", "om", "csv", "lst"), default="auto",
                    help="input format (default: sniffed from the content)")
    hl.add_argument("--min-peaks", type=int, default=None,
                    help="keep only entries with at least this many peaks (lists that carry peak counts)")
    hl.add_argument("-x", "--prefix", default="", help="prepend this to every file name written")
    ls = sub.add_parser("lst-scores", help="a .lst's events with their scores, as a CSV")
    ls.add_argument("list", metavar="IN.lst", help="indexamajig event list to convert")
    ls.add_argument("-o", "--output", required=True, metavar="OUT.csv", help="scores CSV to write")
    ls.add_argument("--scores", metavar="SCORES.csv", help="look scores up in this CSV")
    ls.add_argument("-m", "--model", default=None, help="or score the events with this model")
    ls.add_argument("--threshold", type=float, default=None, help="decision threshold (default: CSV's / model's)")
    ls.add_argument("-x", "--prefix", default="", help="prefix for file names in the list, as indexamajig's -x")
    ls.add_argument("--dataset", default=None, help="HDF5 data set of the frames (default: auto)")
