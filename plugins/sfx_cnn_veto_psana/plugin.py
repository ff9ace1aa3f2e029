"""Hook implementations of the psana adapter: the ``sfx-cnn-veto psana`` command.

Importing this module imports neither psana nor TensorFlow (the command
imports them when it runs). The command is an ordinary psana script, so it
runs serially or under MPI::

    sfx-cnn-veto psana --exp mfxl1234 --run 12 --detector jungfrau --table veto.h5 --hits hits.npy
    PS_SRV_NODES=1 mpirun -n 8 sfx-cnn-veto psana --exp ... --run ... --dir /path/xtc ...

The live audit (:mod:`sfx_cnn_veto.core.audit`, as in ``filter-lst``): psana's
peakfinder8 counts the peaks of a deterministic ``--audit-fraction`` of the
events (default 0.02, picked by a hash of the timestamp, so serial and MPI
runs audit the same events), vetoed or kept. An audited event the CNN vetoes
and peakfinder8 calls a hit (``--audit-min-peaks``) is kept: in the hit list,
marked ``veto/rescued`` in the table, which also holds ``veto/audited`` and
``veto/audit_peaks``. The process holding the joined table (under MPI: every
rank's rows) turns them into the counts, writes ``audit.json`` beside the
table (``--audit-json PATH``) and logs the summary line and, when the
sensitivity's interval lies below ``--target-sensitivity``, the ALARM line.
"""

from __future__ import annotations

import argparse
import os
import sys

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.types import CommandSpec, ConfigGroupSpec, LabelerSpec


def _configure(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.cli_commands import add_model_arguments

    where = parser.add_argument_group("run (psana2: --exp/--run[/--dir] or --files; psana1: --exp/--run)")
    where.add_argument("--exp", default=None, help="experiment, e.g. mfxl1234")
    where.add_argument("--run", type=int, default=None, help="run number")
    where.add_argument("--dir", default=None, help="xtc2 directory (psana2; default: psana's own lookup)")
    where.add_argument("--files", nargs="+", default=None, help="xtc2 file(s) (psana2, serial only)")
    where.add_argument("--offline", action="store_true",
                       help="do not require the SLAC logbook (scan --dir when it cannot be reached)")
    where.add_argument("--calib", action="store_true",
                       help="load calibration constants (default: skipped, as offline psana needs)")
    where.add_argument("--max-events", type=int, default=0, help="stop after N events (0: all)")
    where.add_argument("--psana-batch", type=int, default=None,
                       help="psana2 events per MPI batch (psana's default 1000; small runs need less to spread)")
    parser.add_argument("--detector", required=True, help="detector name, e.g. jungfrau")
    parser.add_argument("--source", default="calib", choices=("calib", "raw", "image"),
                        help="array to score: calibrated panel(s), raw, or geometry-assembled image")
    parser.add_argument("--table", required=True, help="per-event HDF5 table (psana smalldata under psana2)")
    parser.add_argument("--hits", default=None,
                        help="hit list to write (.npy of timestamps; psana2 timestamps=): hits, undecided events "
                             "and audited events peakfinder8 calls hits")
    parser.add_argument("--smd-batch", type=int, default=100, help="smalldata events per send")
    add_model_arguments(parser)
    _configure_audit(parser)


def _configure_audit(parser: argparse.ArgumentParser) -> None:
    """The live audit's options, spelled and defaulted as ``filter-lst`` spells them."""
    from sfx_cnn_veto.core.audit import add_audit_arguments

    add_audit_arguments(parser, peakfinder="psana's peakfinder8", picked_by="timestamp", json_beside="the --table")


def audit_json_path(args: argparse.Namespace) -> str:
    """``--audit-json``, else ``audit.json`` in the table's directory (``--table`` is always given)."""
    from sfx_cnn_veto.core.audit import audit_json_path as json_path

    return json_path(args.audit_json, args.table)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse bad values and clashing outputs before psana starts."""
    from sfx_cnn_veto.cli_commands import check_writable
    from sfx_cnn_veto.core.audit import check_fraction
    from sfx_cnn_veto.errors import ConfigError

    if not args.files and (args.exp is None or args.run is None):
        raise ConfigError("psana: give --exp and --run (with --dir for local files), or --files")
    if args.hits and not args.hits.endswith(".npy"):
        raise ConfigError(f"--hits: expected a .npy path, got {args.hits}")
    args.audit_fraction = check_fraction(args.audit_fraction, name="--audit-fraction")
    if not 0.0 <= args.target_sensitivity <= 1.0:
        raise ConfigError(f"--target-sensitivity: expected a number in [0, 1], got {args.target_sensitivity}")
    if args.audit_min_peaks < 1:
        raise ConfigError(f"--audit-min-peaks: expected a positive integer, got {args.audit_min_peaks}")
    outputs = [p for p in (args.table, args.hits) if p]
    if args.audit_fraction > 0:
        outputs.append(audit_json_path(args))
    if len({os.path.abspath(p) for p in outputs}) != len(outputs):
        raise ConfigError("--table, --hits and the audit's json must all be different files")
    check_writable(*outputs)


def _datasource_kwargs(args: argparse.Namespace) -> dict:
    """``psana.DataSource`` keywords of a psana2 run."""
    kwargs = {"max_events": args.max_events}
    if args.psana_batch:
        kwargs["batch_size"] = args.psana_batch
    if not args.calib:
        kwargs["skip_calib_load"] = "all"
    if args.files:
        kwargs["files"] = args.files
    else:
        kwargs.update(exp=args.exp, run=args.run)
        if args.dir:
            kwargs["dir"] = args.dir
    return kwargs


def _run(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS
    from sfx_cnn_veto.cli_commands import config_of, model_path, progress
    from sfx_cnn_veto_psana.outputs import VetoTable
    from sfx_cnn_veto_psana.veto import PsanaVeto, import_psana, psana_audit, psana_generation

    _check_options(args)
    cfg = config_of(args)

    def pick(value, default):
        return default if value is None else value

    model = model_path(args)
    options = dict(
        threshold=pick(args.threshold, cfg.decision.threshold),
        backend=pick(args.backend, cfg.model.backend),
        batch_size=pick(args.batch_size, cfg.model.batch_size),
        threads=pick(args.threads, cfg.model.threads),
        center=pick(args.center, cfg.crop.center),
        # -g: a CrystFEL .geom or a psana .data file (default: psana's own pixel coordinates)
        geometry=args.geometry or cfg.crop.geometry,
    )
    psana = import_psana()
    # every rank audits the events it gets; the counts are merged from the joined table (_report_audit)
    audit = None if args.audit_fraction == 0 else psana_audit(
        fraction=args.audit_fraction, min_peaks=args.audit_min_peaks, target_sensitivity=args.target_sensitivity)
    mpi = int(os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1) > 1
    if psana_generation(psana) == 2:
        if args.offline:
            from sfx_cnn_veto_psana.offline import allow_offline_runs

            allow_offline_runs()
        if mpi:
            os.environ.setdefault("PS_SRV_NODES", "1")
        ds = psana.DataSource(**_datasource_kwargs(args))
        table = VetoTable(ds, args.table, hits=args.hits, batch_size=args.smd_batch)
        runs = ((run, run.Detector(args.detector)) for run in ds.runs())
    else:  # LCLS-I psana
        ds = psana.DataSource(f"exp={args.exp}:run={args.run}:smd")
        table = None
        runs = iter([(ds, psana.Detector(args.detector))])
    errors = 0
    with progress(desc="psana events", unit="event") as bar:
        for run, det in runs:
            veto = PsanaVeto.load(model, detector=det, source=args.source, psana=psana, **options)
            if table is None:
                table = VetoTable(None, args.table, hits=args.hits, timestamp=veto.timestamp,
                                  fiducials=veto.fiducials)
            events = ((e, d, None) for e, d in veto.events(run)) if audit is None else veto.audited(run, audit)
            for evt, decision, result in events:
                table.record(evt, decision, result)
                errors += decision.error is not None
                bar.update(1, hits=decision.is_hit and decision.error is None)
    if table is not None:
        table.done()
        counts = table.counts
        if sum(counts.values()):
            print(f"{sum(counts.values())} events: {counts['hit']} hits, {counts['miss']} misses, "
                  f"{counts['error']} errors", file=sys.stderr)
        if audit is not None and table.owns_file():
            _report_audit(args, table)
    return EXIT_EVENT_ERRORS if errors else 0


def _report_audit(args: argparse.Namespace, table) -> None:
    """On the process holding the joined table: every rank's audit counts, ``audit.json``, the summary lines."""
    from sfx_cnn_veto.core.audit import write_audit_json
    from sfx_cnn_veto_psana.outputs import audit_counts

    counts = audit_counts(table.filename, fraction=args.audit_fraction, min_peaks=args.audit_min_peaks,
                          target_sensitivity=args.target_sensitivity)
    path = write_audit_json(audit_json_path(args), counts)
    kept_in = args.hits or f"{args.table} (veto/rescued)"
    for line in counts.report_lines("psana", rescued=counts.audited_vetoed_pf8_hits, kept_in=kept_in):
        print(line, file=sys.stderr)
    print(f"psana: audit -> {path}", file=sys.stderr)


@hookimpl
def sfxveto_commands():
    return [
        CommandSpec(
            name="psana",
            help="score the events of a psana run (serially or under mpirun); per-event table and hit list",
            configure=_configure,
            run=_run,
        )
    ]


@hookimpl
def sfxveto_config_groups():
    return [ConfigGroupSpec(name="psana", description="options of the psana adapter (the psana command); any mapping")]


def _create_psana_peakfinder8(options):
    from sfx_cnn_veto_psana.peaks import create_psana_peakfinder8

    return create_psana_peakfinder8(options)


@hookimpl
def sfxveto_labelers():
    return [LabelerSpec("psana-peakfinder8", _create_psana_peakfinder8, "psana's compiled peakfinder8 (psana 4.x)")]
