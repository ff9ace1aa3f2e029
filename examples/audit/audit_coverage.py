"""Does the live audit's interval cover the true sensitivity? Seeded simulated runs where the truth is known.

For each seed: ``sfx-cnn-veto simulate`` writes a run (CXI, .lst, .geom, truth CSV);
``sfx-cnn-veto label`` counts peakfinder8 peaks on EVERY frame (the truth the audit
estimates: a real hit is a frame peakfinder8 calls a hit); ``filter-lst --audit-fraction F``
vetoes the run and audits a fraction of it, writing ``audit.json``. The true sensitivity is
(kept frames that are peakfinder8 hits) / (all peakfinder8 hits); the script checks
whether the audit's 95% interval holds it, and also reports the sensitivity on the
simulator's own truth (frames with a crystal) for comparison.

Usage::

    PYTHONPATH=.:plugins python examples/audit/audit_coverage.py OUTDIR [--seeds 1-10] [--frames 300]
        [--fraction 0.2] [--threshold 0.999]

A threshold above the model's own loses some hits on purpose, so the runs have a miss
rate to estimate. Prints one line per seed and the coverage; writes OUTDIR/coverage.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from sfx_cnn_veto.cli import main as cli
from sfx_cnn_veto.core import audit as A


def _rows(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def relative_list(lst: str) -> None:
    """Rewrite ``lst`` with each file path relative to its folder (``run90.geom`` stays its geometry).

    The audit picks events by a hash of the list's line, so with ``simulate``'s absolute paths the
    audited frames would change with ``OUTDIR`` (and a seed's result with them); relative lines make
    each seed's result the same wherever it runs.
    """
    folder = os.path.dirname(os.path.abspath(lst))
    with open(lst, encoding="utf-8") as handle:
        lines = [line.rstrip("\n").partition(" ") for line in handle if line.strip()]
    with open(lst, "w", encoding="utf-8", newline="\n") as dest:
        for path, sep, event in lines:
            dest.write(os.path.relpath(path, folder) + sep + event + "\n")


def one_seed(outdir: str, seed: int, *, frames: int, fraction: float, threshold: float | None) -> dict:
    """Simulate, label every frame, filter with the audit; the audit's interval and the true figures."""
    d = os.path.join(outdir, f"seed{seed}")
    if cli(["simulate", d, "--frames", str(frames), "--runs", "90", "--size", "400x400", "--seed", str(seed),
            "--compression", "none"]) != 0:
        raise SystemExit(f"simulate failed for seed {seed}")
    lst = os.path.join(d, "run90.lst")
    if cli(["label", lst, "-o", os.path.join(d, "labels.csv")]) not in (0, 2):
        raise SystemExit(f"label failed for seed {seed}")
    extra = ["--threshold", str(threshold)] if threshold is not None else []
    relative_list(lst)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        code = cli(["filter-lst", "run90.lst", "-o", "hits.lst", "--scores", "scores.csv",
                    "--audit-fraction", str(fraction), *extra])
    finally:
        os.chdir(cwd)
    if code not in (0, 2):
        raise SystemExit(f"filter-lst failed for seed {seed}")
    peaks = {r["event"]: int(r["num_peaks"]) for r in _rows(os.path.join(d, "labels.csv")) if r["num_peaks"]}
    crystal = {r["event"]: r["crystal"] == "1" for r in _rows(os.path.join(d, "run90.truth.csv"))}
    scores = _rows(os.path.join(d, "scores.csv"))
    kept = {r["event"] for r in scores if r["decision"] == "hit"}  # the CNN's decision (before the audit's rescue)
    pf8 = {e for e, n in peaks.items() if n >= A.DEFAULT_MIN_PEAKS}
    true_sens = len(pf8 & kept) / len(pf8) if pf8 else float("nan")
    crystals = {e for e, c in crystal.items() if c}
    crystal_sens = len(crystals & kept) / len(crystals) if crystals else float("nan")
    audit = json.load(open(os.path.join(d, "audit.json"), encoding="utf-8"))
    low, high = audit["sensitivity_interval"]
    return {
        "seed": seed, "frames": len(scores), "pf8_hits": len(pf8), "pf8_hits_vetoed": len(pf8 - kept),
        "true_sensitivity": true_sens, "true_miss_rate": 1 - true_sens,
        "crystal_frames": len(crystals), "crystal_sensitivity": crystal_sens,
        "estimate": audit["sensitivity_estimate"], "interval": [low, high],
        "covered": low <= true_sens <= high, "alarm": audit["alarm"],
        "counts": {k: audit[k] for k in ("vetoed", "audited_vetoed", "audited_vetoed_pf8_hits", "kept",
                                         "audited_kept", "audited_kept_pf8_hits")},
    }


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--seeds", default="1-10")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--threshold", type=float, default=0.999,
                        help="decision threshold (default 0.999, above the model's: some hits are lost)")
    args = parser.parse_args(argv)
    os.environ.setdefault("SFX_CNN_VETO_PROGRESS", "0")
    results = []
    for seed in _seeds(args.seeds):
        r = one_seed(args.outdir, seed, frames=args.frames, fraction=args.fraction, threshold=args.threshold)
        results.append(r)
        est = "n/a" if r["estimate"] is None else f"{r['estimate']:.3f}"
        print(f"seed {seed}: true sensitivity {r['true_sensitivity']:.3f} ({r['pf8_hits_vetoed']} of "
              f"{r['pf8_hits']} peakfinder8 hits vetoed); audit {est} [{r['interval'][0]:.3f}, "
              f"{r['interval'][1]:.3f}] from {r['counts']['audited_vetoed']} audited vetoed + "
              f"{r['counts']['audited_kept']} audited kept; {'covered' if r['covered'] else 'NOT covered'}; "
              f"crystal-truth sensitivity {r['crystal_sensitivity']:.3f}", flush=True)
    covered = sum(r["covered"] for r in results)
    errors = [abs(r["estimate"] - r["true_sensitivity"]) for r in results if r["estimate"] is not None]
    summary = {"seeds": len(results), "covered": covered, "coverage": covered / len(results),
               "mean_abs_error": sum(errors) / len(errors) if errors else None,
               "mean_interval_width": sum(r["interval"][1] - r["interval"][0] for r in results) / len(results),
               "fraction": args.fraction, "threshold": args.threshold, "frames": args.frames, "runs": results}
    with open(os.path.join(args.outdir, "coverage.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    print(f"coverage: {covered} of {len(results)} seeds ({100 * covered / len(results):.0f}%); mean |estimate - "
          f"truth| {summary['mean_abs_error']}; mean interval width {summary['mean_interval_width']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
