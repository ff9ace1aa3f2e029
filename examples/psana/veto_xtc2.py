"""psana2 demo: write an xtc2 run of simulated frames with psana's own writer, veto it, read back only hits.

Steps (``run.sh`` runs them all, serially and under ``mpirun -n 4``)::

    python veto_xtc2.py write  --dir RUN            # xtc2 + smalldata index (psana.dgramedit, smdwriter)
    python veto_xtc2.py veto   --dir RUN --table veto.h5 --hits hits.npy [--model M]
    python veto_xtc2.py second --dir RUN --hits hits.npy --table second.h5
    mpirun -n 4 python veto_xtc2.py veto ...        # events spread over the big-data ranks

``veto`` and ``second`` are ordinary psana2 scripts: under ``mpirun`` psana
makes rank 0 the small-data reader, rank 1 the event builder, the last
``PS_SRV_NODES`` ranks smalldata servers (this script sets PS_SRV_NODES=1 when
run under MPI and it is unset) and the ranks in between big-data ranks that
receive events. Every event is scored exactly once and lands in the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXP, RUN, DETECTOR = "sfxsim01", 1, "camera"


def _mpi_size() -> int:
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


def cmd_write(args) -> int:
    from sfx_cnn_veto_psana.frames import toy_frames
    from sfx_cnn_veto_psana.xtc import write_run

    frames, labels = toy_frames(args.frames, shape=(400, 400), hit_fraction=0.4, seed=args.seed)
    run = write_run(args.dir, frames, exp=args.exp, run=args.run, detector_name=args.detector)
    print(f"wrote {len(frames)} events ({int(labels.sum())} simulated hits) to {run.xtc2}")
    print(f"small-data index: {run.smd}")
    return 0


def _model(args) -> str:
    """The model to use: --model, else the one shipped, else an UNTRAINED stand-in (said loudly)."""
    from sfx_cnn_veto.core.model import default_model_path

    if args.model:
        return args.model
    shipped = default_model_path()
    if shipped:
        return shipped
    path = os.path.join(args.dir, "untrained-standin.keras")
    if not os.path.exists(path):
        # Only one process may write it: run 'veto' serially first (run.sh does).
        import keras

        from sfx_cnn_veto.core.architectures import build_paper_model
        from sfx_cnn_veto.core.model import ModelMetadata, VetoModel

        keras.utils.set_random_seed(0)
        VetoModel(
            build_paper_model(),
            ModelMetadata(architecture="paper", input_shape=(350, 350, 1), crop_shape=(350, 350),
                          normalize="standardize", training={"note": "UNTRAINED random weights: demo stand-in"}),
        ).save(path)
    print("WARNING: no model given and none shipped: using an UNTRAINED stand-in (random weights); "
          "its decisions mean nothing", file=sys.stderr)
    return path


def _datasource(args, **extra):
    if _mpi_size() > 1:
        os.environ.setdefault("PS_SRV_NODES", "1")  # smalldata needs a server rank
    from sfx_cnn_veto_psana import allow_offline_runs

    allow_offline_runs()  # psana asks SLAC's logbook first; offline, fall back to dir=
    from psana import DataSource

    return DataSource(exp=args.exp, run=args.run, dir=os.path.abspath(args.dir), skip_calib_load="all",
                      batch_size=args.psana_batch, **extra)


def cmd_veto(args) -> int:
    from sfx_cnn_veto_psana import PsanaVeto, VetoTable

    model = _model(args)
    ds = _datasource(args)
    table = VetoTable(ds, args.table, hits=args.hits, batch_size=args.smd_batch)
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", "0")
    for run in ds.runs():
        center = tuple(args.center) if args.center else None
        veto = PsanaVeto.load(model, detector=run.Detector(args.detector), source=args.source,
                              threshold=args.threshold, batch_size=args.batch_size, center=center,
                              geometry=args.geometry)
        n, start = 0, time.perf_counter()
        for evt, decision in veto.events(run):
            table.record(evt, decision)
            n += 1
        if n:
            rate = n / (time.perf_counter() - start)
            print(f"rank {rank}: scored {n} events (hit {table.counts['hit']}, miss {table.counts['miss']}, "
                  f"error {table.counts['error']}); crop centre: {veto.center_origin}; "
                  f"{rate:.1f} events/s including model load", flush=True)
    written = table.done()
    if written:
        from sfx_cnn_veto_psana import read_hits, read_table

        rows = read_table(args.table)["timestamp"]
        print(f"table {args.table}: {rows.size} events ({len(set(rows.tolist()))} distinct); "
              f"hit list {written}: {read_hits(written).size} hits", flush=True)
    return 0


def cmd_second(args) -> int:
    """Second pass: psana reads only the events on the hit list (``timestamps=``)."""
    import numpy as np

    from sfx_cnn_veto_psana import read_hits

    hits = read_hits(args.hits)
    ds = _datasource(args, timestamps=args.hits)
    smd = ds.smalldata(filename=args.table, batch_size=args.smd_batch)
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", "0")
    for run in ds.runs():
        det = run.Detector(args.detector)
        n = 0
        for evt in run.events():
            frame = det.raw.calib(evt)
            total = float(np.nansum(frame)) if frame is not None else float("nan")
            smd.event(evt, {"hit": {"photons_sum": total}})
            n += 1
        if n:
            print(f"rank {rank}: second pass read {n} of the {hits.size} listed hits", flush=True)
    smd.done()
    return 0


def main(argv=None) -> int:
    from sfx_cnn_veto.cli_commands import join_pair_arguments, pixel_pair

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    for name in ("write", "veto", "second"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True, help="run directory (xtc2 files)")
        p.add_argument("--exp", default=EXP)
        p.add_argument("--run", type=int, default=RUN)
        p.add_argument("--detector", default=DETECTOR)
        if name == "write":
            p.add_argument("--frames", type=int, default=40)
            p.add_argument("--seed", type=int, default=0)
        else:
            p.add_argument("--table", required=True, help="HDF5 table written with psana smalldata")
            p.add_argument("--hits", required=True, help="hit list (.npy of timestamps)")
            p.add_argument("--psana-batch", type=int, default=1, help="psana events per MPI batch")
            p.add_argument("--smd-batch", type=int, default=10, help="smalldata events per send")
        if name == "veto":
            p.add_argument("--model", default=None)
            p.add_argument("--source", default="image", choices=("calib", "raw", "image"))
            p.add_argument("--threshold", type=float, default=None)
            p.add_argument("--batch-size", type=int, default=16, help="frames per network call")
            p.add_argument("--center", type=pixel_pair, default=None, metavar="ROW,COL",
                           help="beam center in pixels (as on every sfx-cnn-veto command)")
            p.add_argument("--geometry", default=None, metavar="FILE",
                           help="multi-panel detector geometry (.geom or psana .data; default: psana's own)")
    args = parser.parse_args(join_pair_arguments(list(sys.argv[1:] if argv is None else argv)))
    return {"write": cmd_write, "veto": cmd_veto, "second": cmd_second}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
