"""Long-run soak of ``sfx-cnn-veto filter-lst``: many events, many files, a mask per file, SIGKILL + --resume.

What it does (everything under ``--workdir``, removed at the end unless ``--keep``):

1. writes ``--files`` CXI files (bitshuffle-LZ4) of ``--events / --files`` small frames each
   (``--frame`` pixels square, Poisson background, bright spots on some frames: the "hits"), each
   file with its OWN mask at ``/entry_1/data_1/mask`` (CXI convention: nonzero = bad): dead pixels,
   a dead row and a few hot pixels (``HOT`` counts) in every frame of the file, so a run that
   ignored the masks would call every frame a hit;
2. writes one ``.lst`` of every event, file after file, and a cheap model that knows masks
   (``use_mask``; 64x64 crop; ``score = sigmoid(max(standardized crop) - 10)``: a frame with
   spots scores near 1, background near 0, so the decisions are not a coin toss);
3. runs ``filter-lst`` three times in child processes, sampling each child's RSS
   (``/proc/PID/status`` VmRSS) every ``--sample-every`` seconds:
   ``reference`` (uninterrupted), ``killed`` (SIGKILL once the journal holds half of the blocks)
   and ``resumed`` (``--resume`` of the killed run);
4. compares ``hits.lst``, ``misses.lst``, ``errors.lst`` and ``scores.csv`` of the resumed run
   with the reference byte for byte, prints the figures and writes them to ``--json``.

Usage (from the repository root; not part of CI, the test ``tests/test_soak.py`` runs it on a few
hundred events)::

    PYTHONPATH=$PWD:$PWD/plugins python examples/soak/soak.py --events 200000 --files 200 \\
        --json soak.json

The last result is in docs/guarantees.md ("Soak"). Exit status: 0 when the resumed outputs equal the
reference byte for byte and every run did what it should, else 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CROP = 64
#: Counts of a masked hot pixel, and how many each file has in the crop: a few such pixels make the
#: standardized crop maximum ~sqrt(64*64/N_HOT) > EDGE, so a run that ignored the masks would call
#: every frame a hit.
HOT, N_HOT = 20000.0, 5
#: Standardized crop maximum at which the soak model's score is 0.5.
EDGE = 10.0
OUTPUTS = ("hits.lst", "misses.lst", "errors.lst", "scores.csv")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000, help="events in the list (default 200000)")
    p.add_argument("--files", type=int, default=200, help="CXI files they are spread over (default 200)")
    p.add_argument("--frame", type=int, default=96, help="frame side in pixels, >= 64 (default 96)")
    p.add_argument("--batch-size", type=int, default=64, help="filter-lst --batch-size (default 64)")
    p.add_argument("--backend", default="auto", help="filter-lst --backend (default auto)")
    p.add_argument("--threads", type=int, default=None, help="filter-lst --threads (default: its own)")
    p.add_argument("--sample-every", type=float, default=1.0, help="RSS sampling period, s (default 1)")
    p.add_argument("--workdir", default=None, help="where data and outputs go (default: a new /tmp/soak-*)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", default=None, help="write the figures here as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the frames and masks (default 0)")
    args = p.parse_args(argv)
    if args.frame < CROP or args.files < 1 or args.events < args.files:
        p.error(f"need --frame >= {CROP} and --events >= --files >= 1")
    return args


def file_frames(k: int, n: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames, bad, has_spots)`` of file ``k``: ``n`` float32 frames, its bad pixels (bool), the truth."""
    rng = np.random.default_rng([seed, k])
    frames = rng.poisson(2.0, (n, side, side)).astype(np.float32)
    bad = rng.random((side, side)) < 0.005  # dead pixels (0 counts) ...
    bad[rng.integers(0, side), :] = True  # ... and a dead row, somewhere else in each file
    lo, hi = (side - CROP) // 2, (side + CROP) // 2
    hot = np.zeros_like(bad)
    hot[rng.integers(lo, hi, N_HOT), rng.integers(lo, hi, N_HOT)] = True  # hot pixels inside the crop
    bad |= hot
    has_spots = rng.random(n) < 0.3
    for i in np.flatnonzero(has_spots):  # spots inside the centred crop
        ys, xs = rng.integers(lo + 4, hi - 4, 12), rng.integers(lo + 4, hi - 4, 12)
        frames[i, ys, xs] += rng.uniform(40.0, 120.0, 12).astype(np.float32)
    frames[:, bad] = 0.0
    frames[:, hot] = HOT
    return frames, bad, has_spots


def write_data(work: Path, n_files: int, per_file: int, side: int, seed: int) -> tuple[Path, np.ndarray]:
    """Write the CXI files (each with its own mask) and the list; ``(list path, truth of every event)``."""
    import h5py

    from sfx_cnn_veto.io.cxi import write_cxi

    truth = []
    with open(work / "events.lst", "w") as lst:
        for k in range(n_files):
            frames, bad, has_spots = file_frames(k, per_file, side, seed)
            path = work / "data" / f"run{k:04d}.cxi"
            write_cxi(path, frames, compression="lz4")
            with h5py.File(path, "a") as handle:
                handle.create_dataset("/entry_1/data_1/mask", data=bad.astype(np.uint16))  # nonzero = bad
            lst.writelines(f"{path} //{i}\n" for i in range(per_file))
            truth.append(has_spots)
    return work / "events.lst", np.concatenate(truth)


def write_model(path: Path) -> str:
    """The soak model: GlobalMaxPooling -> Dense(2, softmax), ``P(hit) = sigmoid(max - EDGE)``, masks used."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    inputs = keras.Input((CROP, CROP, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalMaxPooling2D()(inputs)))
    model.set_weights([np.array([[0.0, 1.0]], np.float32), np.array([0.0, -EDGE], np.float32)])
    meta = ModelMetadata(architecture="soak-max", input_shape=(CROP, CROP, 1), crop_shape=(CROP, CROP),
                         normalize="standardize", threshold=0.5, use_mask=True)
    return VetoModel(model, meta).save(str(path))


def child_env() -> dict:
    """This checkout first on the path, TensorFlow quiet, no progress bar."""
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "plugins")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["SFX_CNN_VETO_PROGRESS"] = "0"
    return env


class JournalCounter:
    """Blocks the filter-lst journal holds so far (one line each in its .jsonl files), read incrementally."""

    def __init__(self, journal: Path):
        self.journal = journal
        self.seen: dict[Path, tuple[int, int]] = {}  # file -> (bytes read, newlines in them)

    def __call__(self) -> int:
        total = 0
        for part in sorted(self.journal.glob("*.jsonl")) if self.journal.is_dir() else ():
            offset, lines = self.seen.get(part, (0, 0))
            try:
                with open(part, "rb") as handle:
                    if os.fstat(handle.fileno()).st_size < offset:  # rewritten: count again
                        offset, lines = 0, 0
                    handle.seek(offset)
                    chunk = handle.read()
            except OSError:
                continue
            self.seen[part] = (offset + len(chunk), lines + chunk.count(b"\n"))
            total += self.seen[part][1]
        return total


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` in MB, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run_sampled(argv: list[str], cwd: Path, journal: Path, every: float, kill_at: int | None = None) -> dict:
    """Run ``filter-lst argv`` in a child, sampling its RSS; SIGKILL it once the journal has ``kill_at`` blocks.

    Returns the wall time, exit code, whether it was killed (and at how many blocks), the RSS
    samples ``[seconds, MB, journal blocks]`` and the tail of its stderr.
    """
    err_path = cwd / f"stderr-{time.monotonic_ns()}.txt"
    count = JournalCounter(journal)
    before = count()  # blocks already journaled (a resumed run)
    start = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "sfx_cnn_veto.cli", "filter-lst", *argv], cwd=cwd,
                                env=child_env(), stdout=subprocess.DEVNULL, stderr=err)
        samples, killed_at, next_sample = [], None, start
        while proc.poll() is None:
            now = time.monotonic()
            blocks = count() if (kill_at is not None or now >= next_sample) else 0
            if now >= next_sample:
                mb = rss_mb(proc.pid)
                if mb is not None:
                    samples.append([round(now - start, 3), round(mb, 1), blocks])
                next_sample += every
            if kill_at is not None and blocks >= kill_at:
                proc.send_signal(signal.SIGKILL)
                killed_at = blocks
                break
            time.sleep(0.005 if kill_at is not None else min(0.05, every))
        code = proc.wait()
    tail = err_path.read_text(errors="replace")[-2000:]
    err_path.unlink()
    return {"seconds": round(time.monotonic() - start, 2), "exit_code": code, "killed_at_block": killed_at,
            "journal_blocks_before": before, "rss": rss_summary(samples, before), "samples": samples,
            "stderr_tail": tail}


def rss_summary(samples: list[list[float]], before: int = 0) -> dict:
    """RSS in MB: start (first sample once the run journaled a block of its own: model loaded, events
    streaming), after a tenth of those samples (warmed up), middle and end of them, max of them and of
    all, and the growth from the tenth to the end (what a per-event or per-file leak would show)."""
    if not samples:
        return {}
    streaming = [s for s in samples if s[2] > before] or samples
    warm = streaming[len(streaming) // 10][1]
    return {"start_mb": streaming[0][1], "warm_mb": warm, "middle_mb": streaming[len(streaming) // 2][1],
            "end_mb": streaming[-1][1], "max_mb": max(s[1] for s in samples),
            "max_streaming_mb": max(s[1] for s in streaming), "growth_after_warm_mb": round(streaming[-1][1] - warm, 1),
            "n_samples": len(samples)}


def compare(ref: Path, out: Path) -> dict:
    """Per output: identical bytes?, and the SHA-256 of the reference."""
    result = {}
    for name in OUTPUTS:
        a, b = ref / name, out / name
        same = a.exists() and b.exists() and a.read_bytes() == b.read_bytes()
        result[name] = {"identical": same, "sha256": hashlib.sha256(a.read_bytes()).hexdigest() if a.exists() else None}
    return result


def machine() -> dict:
    """The machine and its load."""
    with open("/proc/cpuinfo") as handle:
        cpu = next((l.split(":", 1)[1].strip() for l in handle if l.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform()}


def agreement(scores_csv: Path, truth: np.ndarray) -> dict:
    """Labels of the reference run against the frames that have spots (shows the masks were used)."""
    import csv

    with open(scores_csv, newline="") as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    hit = np.array([lab == "hit" for lab in labels])
    return {"events_in_scores": len(labels), "hits": int(hit.sum()), "misses": labels.count("miss"),
            "errors": labels.count("error"), "frames_with_spots": int(truth.sum()),
            "labels_agreeing_with_spots": float(np.mean(hit == truth)) if len(labels) == len(truth) else None}


def filter_argv(lst: Path, model: str, out: Path, args: argparse.Namespace) -> list[str]:
    """``filter-lst`` arguments writing every output into ``out``."""
    argv = [str(lst), "-m", model, "-o", str(out / "hits.lst"), "--misses", str(out / "misses.lst"),
            "--errors", str(out / "errors.lst"), "--scores", str(out / "scores.csv"),
            "--batch-size", str(args.batch_size), "--backend", args.backend]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def soak(args: argparse.Namespace, work: Path) -> dict:
    """Write the data, run reference / killed / resumed, and gather the figures."""
    per_file = args.events // args.files
    n_events = per_file * args.files
    (work / "data").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    lst, truth = write_data(work, args.files, per_file, args.frame, args.seed)
    model = write_model(work / "soak.keras")
    data_bytes = sum(p.stat().st_size for p in (work / "data").iterdir())
    prepare_s = time.monotonic() - t0
    n_blocks = -(-n_events // args.batch_size)
    runs = {}
    for name in ("reference", "interrupted"):
        (work / name).mkdir()
    runs["reference"] = run_sampled(filter_argv(lst, model, work / "reference", args), work,
                                    work / "reference" / "hits.lst.journal", args.sample_every)
    out = work / "interrupted"
    journal = out / "hits.lst.journal"
    runs["killed"] = run_sampled(filter_argv(lst, model, out, args), work, journal, args.sample_every,
                                 kill_at=n_blocks // 2)
    runs["resumed"] = run_sampled(filter_argv(lst, model, out, args) + ["--resume"], work, journal,
                                  args.sample_every)
    return {"events": n_events, "files": args.files, "frames_per_file": per_file, "frame": [args.frame] * 2,
            "crop": [CROP, CROP], "batch_size": args.batch_size, "blocks": n_blocks, "backend": args.backend,
            "threads": args.threads, "data_bytes": data_bytes, "prepare_seconds": round(prepare_s, 1),
            "runs": runs, "outputs": compare(work / "reference", out),
            "labels": agreement(work / "reference" / "scores.csv", truth)}


def verdict(result: dict) -> list[str]:
    """What went wrong, if anything (empty: the soak passed)."""
    runs, problems = result["runs"], []
    if runs["reference"]["exit_code"] != 0:
        problems.append(f"reference run exited {runs['reference']['exit_code']}")
    if runs["killed"]["killed_at_block"] is None:
        problems.append(f"the run to kill ended by itself (exit {runs['killed']['exit_code']}) before the middle")
    if runs["resumed"]["exit_code"] != 0:
        problems.append(f"resumed run exited {runs['resumed']['exit_code']}")
    problems += [f"{name} differs from the uninterrupted run" for name, o in result["outputs"].items()
                 if not o["identical"]]
    if result["labels"]["events_in_scores"] != result["events"]:
        problems.append("scores.csv does not hold every event")
    return problems


def report(result: dict) -> str:
    """The figures, a few lines for a person."""
    lines = [f"soak: {result['events']:,} events in {result['files']} files ({result['frames_per_file']} "
             f"{result['frame'][0]}x{result['frame'][1]} frames each, {result['data_bytes'] / 1e9:.2f} GB "
             f"bitshuffle-LZ4), batch {result['batch_size']}, backend {result['backend']}; "
             f"machine {result['machine']['cores']} cores, load {result['machine']['load_average']} at the start, "
             f"{result['machine_end_load']} at the end"]
    for name, run in result["runs"].items():
        r = run["rss"]
        killed = f", SIGKILL at block {run['killed_at_block']} of {result['blocks']}" if run["killed_at_block"] else ""
        rss = (f"RSS start {r['start_mb']:.1f} / a tenth in {r['warm_mb']:.1f} / middle {r['middle_mb']:.1f} / "
               f"end {r['end_mb']:.1f} / max {r['max_mb']:.1f} MB ({r['n_samples']} samples)") if r else "no RSS sample"
        lines.append(f"  {name:9s} {run['seconds']:9.1f} s, exit {run['exit_code']}{killed}; {rss}")
    lab = result["labels"]
    lines.append(f"  labels: {lab['hits']:,} hits, {lab['misses']:,} misses, {lab['errors']:,} errors; "
                 f"{lab['frames_with_spots']:,} frames have spots; agreement {lab['labels_agreeing_with_spots']}")
    lines.append("  resumed vs uninterrupted: " + ", ".join(
        f"{n} {'identical' if o['identical'] else 'DIFFERENT'}" for n, o in result["outputs"].items()))
    lines.append("  verdict: " + ("PASS" if not result["problems"] else "FAIL: " + "; ".join(result["problems"])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the figures, write the JSON; 0 when it passed."""
    args = parse_args(argv)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = machine()
        result = soak(args, work)
        result["machine"], result["machine_end_load"] = start, machine()["load_average"]
        result["date_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        result["problems"] = verdict(result)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if not result["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
