"""Mean and spread over seeds of examples/weak_tail/run.py's results: results.md, methods.png, peak_bins.png.

``python examples/weak_tail/summarize.py OUT/results.json`` redraws them from a finished run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

BINS = ("11-15", "16-20", "21-50", ">50")


def _pooled(recs, kept_key, total_keys):
    kept = sum(r[kept_key] for r in recs)
    total = sum(sum(r[k] for k in total_keys) for r in recs)
    return kept / total if total else float("nan"), kept, total


def per_seed(results, method, runs=None):
    """Per seed, the method's figures pooled over runs: sensitivity, specificity, hits lost, misses kept."""
    out = []
    for seed, by_run in results["seeds"].items():
        recs = [by_run[r][method] for r in (runs or by_run) if method in by_run[r]]
        if not recs:
            continue
        sen, _, hits = _pooled(recs, "tp", ("tp", "fn"))
        spe, _, misses = _pooled(recs, "tn", ("tn", "fp"))
        out.append({"seed": seed, "sensitivity": sen, "specificity": spe, "lost": sum(r["fn"] for r in recs),
                    "hits": hits, "kept_misses": sum(r["fp"] for r in recs), "misses": misses,
                    "thresholds": [r["threshold"] for r in recs]})
    return out


def per_seed_bins(results, method):
    out = {b: [] for b in BINS}
    for by_run in results["seeds"].values():
        for b in BINS:
            recs = [by_run[r][method]["peak_bins"][b] for r in by_run if method in by_run[r]]
            hits = sum(r["hits"] for r in recs)
            out[b].append((sum(r["kept"] for r in recs), hits))
    return out


def _ms(values, scale=100.0, digits=1):
    v = np.array([x for x in values if x == x], dtype=float) * scale
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"  # one seed: no spread to show
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def methods_of(results):
    from run import METHODS

    have = {m for by_run in results["seeds"].values() for r in by_run.values() for m in r}
    return [m for m in METHODS if m in have]


def markdown(results) -> str:
    methods = methods_of(results)
    seeds = list(results["seeds"])
    runs = list(next(iter(results["seeds"].values())))
    lines = [f"Seeds {', '.join(seeds)}; runs {', '.join(runs)}; figures on the held-out frames of each run "
             f"(all but its first {results['args']['calib_frames']}); mean ± standard deviation over seeds of the "
             "figures pooled over runs.", "",
             "| method | sensitivity (%) | specificity (%) | hits lost (sum over seeds) | misses kept (sum) | "
             "threshold (range) |", "|---|---:|---:|---:|---:|---|"]
    for m in methods:
        ps = per_seed(results, m)
        th = [t for p in ps for t in p["thresholds"]]
        lines.append(f"| {m} | {_ms([p['sensitivity'] for p in ps])} | {_ms([p['specificity'] for p in ps])} | "
                     f"{sum(p['lost'] for p in ps)} of {sum(p['hits'] for p in ps)} | "
                     f"{sum(p['kept_misses'] for p in ps)} of {sum(p['misses'] for p in ps)} | "
                     f"{min(th):.3g}-{max(th):.3g} |")
    lines += ["", "Sensitivity per run (%), mean ± sd over seeds:", "",
              "| method | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for m in methods:
        cells = [_ms([p["sensitivity"] for p in per_seed(results, m, [r])]) for r in runs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Specificity per run (%), mean ± sd over seeds:", "",
              "| method | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for m in methods:
        cells = [_ms([p["specificity"] for p in per_seed(results, m, [r])]) for r in runs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Hits kept per peak count (peakfinder8's), all runs and seeds pooled (kept/hits):", "",
              "| method | " + " | ".join(f"{b} peaks" for b in BINS) + " |", "|---|" + "---:|" * len(BINS)]
    for m in methods:
        bins = per_seed_bins(results, m)
        cells = []
        for b in BINS:
            kept, hits = sum(k for k, _ in bins[b]), sum(h for _, h in bins[b])
            cells.append(f"{kept}/{hits} ({100 * kept / hits:.1f}%)" if hits else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if "seconds" in results:
        lines += ["", f"({results['seconds'] / 60:.0f} min on this machine.)"]
    return "\n".join(lines) + "\n"


def figures(results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = methods_of(results)
    runs = list(next(iter(results["seeds"].values())))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(methods)
    for ax, key in zip(axes, ("sensitivity", "specificity")):
        for k, m in enumerate(methods):
            vals = [[p[key] for p in per_seed(results, m, [r])] for r in runs]
            mean = [np.nanmean(v) for v in vals]
            sd = [np.nanstd(v, ddof=1) if len(v) > 1 else 0 for v in vals]
            ax.bar(np.arange(len(runs)) - 0.4 + width * (k + 0.5), mean, width, yerr=sd, capsize=2, label=m)
        ax.set_xticks(np.arange(len(runs)), runs)
        ax.set_ylabel(f"{key} (held-out frames)")
        ax.set_ylim(0.8 if key == "sensitivity" else 0.0, 1.005)
        ax.grid(alpha=0.3, axis="y")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"mean ± sd over seeds {', '.join(results['seeds'])}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "methods.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for k, m in enumerate(methods):
        bins = per_seed_bins(results, m)
        mean = [np.nanmean([kk / h for kk, h in bins[b] if h]) if any(h for _, h in bins[b]) else np.nan
                for b in BINS]
        sd = [np.nanstd([kk / h for kk, h in bins[b] if h], ddof=1) if sum(1 for _, h in bins[b] if h) > 1 else 0
              for b in BINS]
        ax.bar(np.arange(len(BINS)) - 0.4 + width * (k + 0.5), mean, width, yerr=sd, capsize=2, label=m)
    ax.set_xticks(np.arange(len(BINS)), [f"{b} peaks" for b in BINS])
    ax.set_ylabel("sensitivity (hits kept)")
    ax.set_ylim(0.5, 1.005)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("the weak-hit tail: hits kept per peak count, mean ± sd over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "peak_bins.png", dpi=90)
    plt.close(fig)


def write_summary(results, out) -> None:
    out = Path(out)
    (out / "results.md").write_text(markdown(results))
    figures(results, out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    path = Path(sys.argv[1])
    write_summary(json.loads(path.read_text()), path.parent)
