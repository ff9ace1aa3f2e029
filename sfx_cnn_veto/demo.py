"""``sfx-cnn-veto demo``: the whole story on built-in simulated data, in one command.

simulate the default experiment -> label with peakfinder8 -> train the default
network and the paper's -> evaluate both on every run (Table II) -> filter one
run's .lst into hits and misses -> a shifted run: the veto's live audit, then
calibration on its first 200 labelled frames, judged on the rest -> pictures of
hits, misses and mistakes -> a summary of where everything is.

Every step runs the same sub-command a user would run, so the demo doubles as
a recipe (the commands are printed as they run and saved in ``commands.sh``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.errors import VetoError
from sfx_cnn_veto.types import ROLE_FILTER_LIST, CommandSpec

TRAIN_RUNS = ("run90", "run91", "run92", "run93")


class DemoStepError(VetoError):
    pass


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", nargs="?", default="demo-output", help="where everything goes (default demo-output)")
    parser.add_argument("--frames", type=int, default=300, help="frames per simulated run (default 300)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulation and training (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum training epochs (default: 40 default net, 25 paper net)")
    parser.add_argument("--train-paper", action="store_true",
                        help="train the paper's network here too (about 10 more minutes on 2 cores); by default the "
                             "comparison uses the paper-network reference model shipped with the package, trained by "
                             "this same pipeline on this same simulated data (seed 1, 300 frames a run, --augment none --epochs 25)")
    parser.add_argument("--no-paper", action="store_true", help="no comparison with the paper's network")
    parser.add_argument("--filter-run", default="run98", help="run whose .lst is filtered into hits and misses (default run98)")
    parser.add_argument("--shifted-run", default="run100",
                        help="run on which the audit and the calibration are shown (default run100, weak crystals)")
    parser.add_argument("--calibration-frames", type=int, default=200,
                        help="labelled frames of the shifted run the calibration uses (default 200; the rest judge it)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny smoke run (3 runs, few frames, 2 epochs fine-tuning the shipped models): checks the "
                             "plumbing, not the science")


def _runner(out: Path, log: list[str]):
    from sfx_cnn_veto.cli import main as cli_main

    def step(title: str, argv: list[Any]) -> float:
        argv = [str(a) for a in argv]
        line = "sfx-cnn-veto " + " ".join(shlex.quote(a) for a in argv)
        log.append(line)
        print(f"\n=== {title}\n$ {line}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        code = cli_main(argv)
        elapsed = time.perf_counter() - start
        if code not in (0, 2):  # 2: some events could not be decided, accounted for
            raise DemoStepError(f"demo step '{title}' failed (exit {code}); command: {line}")
        print(f"--- {title}: {elapsed:.0f} s", file=sys.stderr, flush=True)
        return elapsed

    return step


def run(args: argparse.Namespace) -> int:
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.core.model import default_model_path

    out = Path(args.outdir).resolve()
    data, models, report, pictures = out / "data", out / "models", out / "report", out / "pictures"
    for d in (data, models, report, pictures):
        d.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    step = _runner(out, log)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    frames = 40 if args.quick else args.frames
    runs = list(dict.fromkeys(["run90", "run91", args.filter_run, args.shifted_run])) if args.quick else None
    train_runs = ["run90", "run91"] if args.quick else list(TRAIN_RUNS)

    sim = ["simulate", data, "--seed", args.seed, "--frames", frames]
    if runs:
        sim += ["--runs", ",".join(runs)]
    timings["simulate"] = step("1/8 simulate the experiment", sim)
    lists = sorted(data.glob("*.lst"), key=lambda p: int("".join(c for c in p.stem if c.isdigit()) or 0))
    labels = out / "labels.csv"
    timings["label"] = step("2/8 label every run with peakfinder8", ["label", *lists, "-o", labels, "--jobs", 0])

    default_model, paper_model = models / "default.keras", models / "paper.keras"
    epochs_default = 2 if args.quick else (args.epochs or 40)
    epochs_paper = 2 if args.quick else (args.epochs or 25)
    train = ["train", "--labels", labels, "--train-runs", ",".join(train_runs), "--seed", args.seed]
    shipped_paper = reference_paper_model()
    # --quick: 2 epochs on 80 frames teach a fresh network nothing (train refuses such a model: exit 4),
    # so the smoke run fine-tunes the shipped models instead
    init_default = _init_model(args.quick, default_model_path())
    timings["train default"] = step("3/8 train the default network" + (" (fine-tuning the shipped one)" if init_default else ""),
                                    train + ["-o", default_model, "--epochs", epochs_default, "--lr", 0.01, *init_default])
    compare: list[Any] = []
    same_data = args.seed == 1 and frames == 300 and not args.quick
    if args.train_paper or (not args.no_paper and not (shipped_paper and same_data)):
        if not args.no_paper:
            timings["train paper"] = step("4/8 train the paper's network with the paper's preprocessing",
                                          train + ["-o", paper_model, "--arch", "paper", "--augment", "none",
                                                  "--epochs", epochs_paper, *_init_model(args.quick, shipped_paper)])
            compare = ["--compare-model", paper_model]
    elif not args.no_paper:
        print(f"\n=== 4/8 the paper's network: the reference model shipped with the package\n"
              f"    ({shipped_paper}: trained by this pipeline on this same data with --arch paper "
              f"--augment none --epochs {epochs_paper}; pass --train-paper to train it here)", file=sys.stderr)
        compare = ["--compare-model", shipped_paper]
    timings["evaluate"] = step("5/8 evaluate on every run (the paper's Table II)",
                               ["evaluate", "-m", default_model, "--labels", labels, "--report", report, *compare])

    filter_dir = out / "filter"
    filter_list = data / f"{args.filter_run}.lst"
    list_filter = manager.command_with_role(ROLE_FILTER_LIST)
    if list_filter is not None:
        filter_dir.mkdir(exist_ok=True)
        timings["filter"] = step(f"6/8 filter {filter_list.name} before indexamajig",
                                 [list_filter.name, filter_list, "-m", default_model, "-o", filter_dir / "hits.lst",
                                  "--misses", filter_dir / "misses.lst", "--errors", filter_dir / "errors.lst",
                                  "--scores", filter_dir / "scores.csv"])
    else:
        print("\n=== 6/8 skipped: no command filters a .lst (the CrystFEL adapter's filter-lst is not installed)",
              file=sys.stderr)

    t = time.perf_counter()
    from sfx_cnn_veto.demo_shifted import shifted_run_story

    story = shifted_run_story(step, out, data, labels, default_model, args.shifted_run,
                              min(args.calibration_frames, frames * 2 // 3))
    timings["shifted run"] = time.perf_counter() - t

    print("\n=== 8/8 pictures of hits, misses and mistakes", file=sys.stderr, flush=True)
    t = time.perf_counter()
    written = _pictures(report, labels, pictures, default_model)
    timings["pictures"] = time.perf_counter() - t
    (out / "commands.sh").write_text("#!/bin/sh\n# The demo's steps, as a user would type them.\nset -e\n"
                                     + "\n".join(log) + "\n")
    total = time.perf_counter() - started
    _summary(out, report, filter_dir, written, timings, total)
    print("\n" + "\n".join(story))
    return 0


def _init_model(quick: bool, path: str | None) -> list[str]:
    """``["--init-model", path]`` for a --quick run when the shipped model exists, else nothing."""
    return ["--init-model", path] if quick and path else []


def reference_paper_model() -> str | None:
    """The paper-network model shipped for the demo's comparison (``sfx_cnn_veto/data/paper.keras``)."""
    path = Path(__file__).resolve().parent / "data" / "paper.keras"
    return str(path) if path.exists() else None


def _pictures(report: Path, labels: Path, pictures: Path, model: Path) -> list[Path]:
    """One hit, one miss, and up to two mistakes (a missed hit first: the costly kind)."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.io.events import EventRef
    from sfx_cnn_veto.io.store import FrameStore
    from sfx_cnn_veto.show import show_event

    scores_csv = report / "scores.csv"
    if not scores_csv.exists():
        return []
    rows = list(csv.DictReader(open(scores_csv)))
    peaks = {(r["file"], r["event"]): r["num_peaks"] for r in csv.DictReader(open(labels))}
    picks: dict[str, dict[str, str]] = {}
    # mistakes on runs the network never saw first: they are the ones that matter
    ordered = sorted(rows, key=lambda r: r.get("run", "") in TRAIN_RUNS)
    for row in ordered:
        label, pred = row.get("label", ""), row.get("predicted", row.get("is_hit", ""))
        if label == "" or pred == "":
            continue
        kind = {("1", "1"): "hit", ("0", "0"): "miss", ("1", "0"): "missed-hit", ("0", "1"): "false-alarm"}.get((label, pred))
        if kind and kind not in picks:
            picks[kind] = row
    veto = Veto.load(str(model))
    written = []
    with FrameStore() as store:
        for kind, row in picks.items():
            ref = EventRef(row["file"], row["event"] or None, row["file"])
            name = pictures / f"{kind}_{row.get('run', 'run')}_{(row['event'] or '').strip('/')}.png"
            # decided as `evaluate` decided it (the file's own mask), the network's input drawn beside the frame
            show_event(veto, store, ref, str(name),
                       title=f"{row.get('run', '')} {ref.event or ''}: labelled {'hit' if row['label'] == '1' else 'miss'} "
                             f"({peaks.get((row['file'], row['event']), '?')} peaks)")
            written.append(name)
    return written


def _summary(out: Path, report: Path, filter_dir: Path, pictures: list[Path], timings: dict[str, float],
             total: float) -> None:
    print("\n" + "=" * 78, file=sys.stderr)
    metrics_path = report / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        paper_path = report / "compare" / "paper" / "metrics.json"
        paper = json.loads(paper_path.read_text())["runs"] if paper_path.exists() else {}

        def f(v):
            return "  n/a" if v is None else f"{v:.3f}"

        print("Per run: sensitivity / specificity / accuracy (labels from peakfinder8; * = training run)")
        head = f"{'run':<8} {'events':>6} {'% hit':>6}   {'default network (sen spe acc)':<30}"
        print(head + ("   paper's network (sen spe acc)" if paper else ""))
        for run_name, m in metrics["runs"].items():
            star = "*" if run_name in TRAIN_RUNS else " "
            line = (f"{run_name + star:<8} {m['events']:>6} {100 * (m['hit_fraction'] or 0):>5.1f}%   "
                    f"{f(m['sensitivity'])} {f(m['specificity'])} {f(m['accuracy'])}{'':<12}")
            if run_name in paper:
                q = paper[run_name]
                line += f"   {f(q['sensitivity'])} {f(q['specificity'])} {f(q['accuracy'])}"
            print(line)
    outputs = [
        ("simulated runs (.cxi/.lst/.geom/truth)", out / "data"),
        ("labels (peakfinder8)", out / "labels.csv"),
        ("models", out / "models"),
        ("report (Table II, confusion matrices, ROC)", report / "report.md"),
        ("side-by-side with the paper's network", report / "compare.md"),
        ("filtered event lists", filter_dir),
        ("pictures", out / "pictures"),
        ("the commands, to run them yourself", out / "commands.sh"),
    ]
    print("\nOutputs:")
    for what, path in outputs:
        if path.exists():
            print(f"  {what:<44} {path}")
    print("\nTime per step: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"; total {total:.0f} s")


@hookimpl(trylast=True)
def sfxveto_commands():
    return [CommandSpec("demo", "the whole story on built-in simulated data: simulate, label, train, evaluate, filter",
                        configure, run)]
