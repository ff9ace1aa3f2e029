"""The weak-hit tail on held-out shifted runs: the shipped model, calibrated, and fine-tuned, over several seeds.

For each seed: simulate the runs of ``experiment.yaml`` beside this script (the demo's crystals, detector and
beam; runs the shipped model never saw, shifted further than the demo's), label them with peakfinder8, and
split every run into its first ``--calib-frames`` frames (what a beamline scientist would label) and the rest
(held out: every figure below is measured there). Then, per run:

- ``shipped``: the model in the package, as it is (threshold 0.149);
- ``calibrated``: ``sfx-cnn-veto calibrate`` on the run's first frames (default rule: only ever lowers);
- ``calibrated --may-raise``: the same, allowed to raise the threshold;
- ``at 0.5``: the same network at threshold 0.5, the case of a training whose threshold hit the specificity
  floor (the issue's measurement), and ``at 0.5, calibrated``: that model calibrated on the run's first frames;
- ``fine-tuned``: ``sfx-cnn-veto train --init-model`` on the run's first frames (``--fine-tune-epochs``).

Writes ``OUT/results.json``, ``OUT/results.md`` (mean and spread over seeds) and ``OUT/*.png``; the figures of
docs/results.md come from ``python examples/weak_tail/run.py --out docs/figures/weak_tail`` (about 15 minutes
on 2 cores). Every step is the sub-command a user would type (printed as it runs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ("shipped", "calibrated", "calibrated --may-raise", "at 0.5", "at 0.5, calibrated", "fine-tuned")


def cli(argv) -> None:
    from sfx_cnn_veto.cli import main

    argv = [str(a) for a in argv]
    print("$ sfx-cnn-veto " + " ".join(shlex.quote(a) for a in argv), file=sys.stderr, flush=True)
    code = main(argv)
    if code not in (0, 2):
        raise SystemExit(f"step failed (exit {code})")


def split_labels(labels: Path, first: int, out: Path) -> dict[str, dict[str, Path]]:
    """Per run: ``calib`` (its first ``first`` frames) and ``test`` (the rest) label files."""
    from sfx_cnn_veto.training.labels import read_labels, runs_of, write_labels

    rows = read_labels(str(labels))
    parts = {}
    for run in runs_of(rows):
        mine = [r for r in rows if r.run == run]
        parts[run] = {"calib": out / f"{run}_calib.csv", "test": out / f"{run}_test.csv"}
        write_labels(str(parts[run]["calib"]), mine[:first])
        write_labels(str(parts[run]["test"]), mine[first:])
    return parts


def read_scores(report: Path) -> dict[tuple[str, str], float]:
    with open(report / "scores.csv") as handle:
        return {(r["file"], r["event"]): (float(r["score"]) if r["score"] else float("nan"))
                for r in csv.DictReader(handle)}


def measure(test_csv: Path, scores: dict, threshold: float) -> dict:
    """Sensitivity, specificity and the per-peak-count bins of the held-out frames at ``threshold``."""
    from sfx_cnn_veto.training import metrics as M
    from sfx_cnn_veto.training.evaluate import peak_bin_table
    from sfx_cnn_veto.training.labels import read_labels

    rows = [r for r in read_labels(str(test_csv)) if r.label is not None]
    s = np.array([scores[(r.file, r.event or "")] for r in rows])
    predicted = ~(s < threshold)  # unscored frames are kept (fail open), as in evaluate
    rec = M.table_row(M.confusion([r.label for r in rows], predicted))
    rec["threshold"] = float(threshold)
    rec["peak_bins"] = peak_bin_table(rows, predicted, [rows[0].run])["overall"]
    return rec


def one_run(seed: int, run: str, parts: dict, work: Path, shipped: str, floor_model: str, args) -> dict:
    from sfx_cnn_veto.core.model import VetoModel

    out: dict[str, dict] = {}
    report = work / f"{run}_shipped"
    cli(["evaluate", "-m", shipped, "--labels", parts["test"], "--report", report])
    scores = read_scores(report)
    base = VetoModel.read_metadata(shipped).threshold
    out["shipped"] = measure(parts["test"], scores, base)
    out["at 0.5"] = measure(parts["test"], scores, 0.5)
    for name, model, extra in (("calibrated", shipped, []), ("calibrated --may-raise", shipped, ["--may-raise"]),
                               ("at 0.5, calibrated", floor_model, [])):
        target = work / f"{run}_{name.replace(' ', '_').replace(',', '').replace('--', '')}.keras"
        cli(["calibrate", "-m", model, "--labels", parts["calib"], "-o", target, *extra])
        out[name] = measure(parts["test"], scores, VetoModel.read_metadata(str(target)).threshold)
    if args.fine_tune_epochs > 0:
        tuned = work / f"{run}_fine_tuned.keras"
        cli(["train", "--labels", parts["calib"], "--init-model", shipped, "--epochs", args.fine_tune_epochs,
             "--seed", seed, "-o", tuned])
        report = work / f"{run}_fine_tuned"
        cli(["evaluate", "-m", tuned, "--labels", parts["test"], "--report", report])
        out["fine-tuned"] = measure(parts["test"], read_scores(report), VetoModel.read_metadata(str(tuned)).threshold)
    return out


def one_seed(seed: int, args, shipped: str, floor_model: str) -> dict:
    work = Path(args.work or Path(args.out) / "work") / f"seed{seed}"
    data = work / "data"
    cli(["simulate", data, "--config", HERE / "experiment.yaml", "--seed", seed, "--frames", args.frames,
         "--runs", args.runs])
    lists = [data / f"{run}.lst" for run in args.runs.split(",")]
    cli(["label", *lists, "-o", work / "labels.csv"])
    parts = split_labels(work / "labels.csv", args.calib_frames, work)
    return {run: one_run(seed, run, parts[run], work, shipped, floor_model, args) for run in parts}


def floor_copy(shipped: str, path: Path) -> str:
    """The shipped network with threshold 0.5: a model whose training threshold hit the specificity floor."""
    from dataclasses import asdict

    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.training.calibrate import write_calibrated

    meta = VetoModel.read_metadata(shipped)
    return write_calibrated(shipped, str(path), ModelMetadata(**{**asdict(meta), "threshold": 0.5}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="weak-tail-output", help="where everything goes")
    parser.add_argument("--work", default=None, help="simulated data and models (default OUT/work)")
    parser.add_argument("--seeds", default="2,3,4", help="simulation (and fine-tuning) seeds")
    parser.add_argument("--runs", default="run104,run105,run107", help="runs of experiment.yaml")
    parser.add_argument("--frames", type=int, default=500, help="frames per run")
    parser.add_argument("--calib-frames", type=int, default=200, help="labelled frames of each run used to adapt")
    parser.add_argument("--fine-tune-epochs", type=int, default=3, help="0: no fine-tuning")
    args = parser.parse_args(argv)
    os.environ.setdefault("SFX_CNN_VETO_PROGRESS", "0")
    from sfx_cnn_veto.core.model import default_model_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shipped = default_model_path()
    floor_model = floor_copy(shipped, Path(args.work or out / "work") / "shipped_at_0.5.keras")
    started = time.perf_counter()
    results = {"seeds": {}, "args": vars(args)}
    for seed in (int(s) for s in args.seeds.split(",")):
        results["seeds"][str(seed)] = one_seed(seed, args, shipped, floor_model)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    results["seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=1))
    from summarize import write_summary  # beside this script

    write_summary(results, out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
