"""Markdown tables and matplotlib figures (Agg) for training and evaluation reports."""

from __future__ import annotations

import math
import os
import re
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto.training import metrics as M


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _frac(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


# ---------------------------------------------------------------------------
# Training curves

def plot_curves(history: dict[str, list[float]], path: str, *, best_epoch: int | None = None, title: str = "") -> str:
    plt = _plt()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history["loss"], label="train (augmented, class-weighted)")
    ax1.plot(epochs, history["val_loss"], label="validation (class-balanced)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(epochs, history["accuracy"], label="train")
    ax2.plot(epochs, history["val_accuracy"], label="validation (threshold 0.5)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    for ax in (ax1, ax2):
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"training curves {title}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# Evaluation figures

def plot_confusion(cm: dict[str, int], path: str, *, title: str) -> str:
    """The paper's FIG. 5: a 2x2 confusion matrix (rows true, columns predicted), counts and row fractions."""
    plt = _plt()
    mat = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]], dtype=np.float64)
    rows = mat.sum(axis=1, keepdims=True)
    norm = np.divide(mat, rows, out=np.zeros_like(mat), where=rows > 0)
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(mat[i, j])}\n{100 * norm[i, j]:.1f}%", ha="center", va="center",
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks([0, 1], ["miss", "hit"])
    ax.set_yticks([0, 1], ["miss", "hit"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("label (peakfinder8)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_score_histogram(scores: np.ndarray, labels: np.ndarray, threshold: float, path: str, *, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(0, 1, 41)
    ok = np.isfinite(scores)
    for value, name, color in ((0, "miss", "tab:red"), (1, "hit", "tab:blue")):
        sel = ok & (labels == value)
        if sel.any():
            ax.hist(scores[sel], bins=bins, alpha=0.6, label=f"{name} ({int(sel.sum())})", color=color)
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("hit score")
    ax.set_ylabel("events")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: str, *, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})" if not math.isnan(auc) else f"{name} (one class)")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_peak_bins(bins: dict[str, Any], path: str, *, title: str) -> str:
    """Sensitivity per peak-count bin of the hits (all runs, and each run), with 95% Wilson intervals."""
    plt = _plt()
    names = [b for b in bins["bins"] if bins["overall"][b]["hits"]] or list(bins["bins"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    runs = list(bins["runs"])
    width = 0.8 / (len(runs) + 1)
    for k, (name, table) in enumerate([("all runs", bins["overall"])] + [(r, bins["runs"][r]) for r in runs]):
        recs = [table[b] for b in names]
        values = np.array([np.nan if r["sensitivity"] is None else r["sensitivity"] for r in recs])
        low = np.array([np.nan if r["sensitivity"] is None else r["sensitivity"] - r["sensitivity_interval"][0]
                        for r in recs])
        high = np.array([np.nan if r["sensitivity"] is None else r["sensitivity_interval"][1] - r["sensitivity"]
                         for r in recs])
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, values, width, label=name, color="k" if k == 0 else None, alpha=0.8 if k == 0 else 0.6)
        if k == 0:
            ax.errorbar(pos, values, yerr=[np.clip(low, 0, None), np.clip(high, 0, None)], fmt="none",
                        ecolor="grey", capsize=3)
            for p, r in zip(pos, recs):
                ax.text(p, 0.02, f"{r['kept']}/{r['hits']}", ha="center", va="bottom", fontsize=7, color="white",
                        rotation=90)
    ax.set_xticks(x, [f"{b} peaks" for b in names])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("sensitivity (hits kept)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_figures(ev, directory: str) -> dict[str, str]:
    s = ev.model
    labels = s.labels
    names = np.array([r.run for r in s.rows])
    out: dict[str, str] = {}
    curves = []
    for run in ev.runs:
        sel = names == run
        rec = ev.table["runs"][run]
        out[f"confusion_{run}"] = plot_confusion(
            rec, os.path.join(directory, f"confusion_{_safe(run)}.png"),
            title=f"{run}: acc {_frac(rec['accuracy'])}, sen {_frac(rec['sensitivity'])}, spe {_frac(rec['specificity'])}")
        out[f"scores_{run}"] = plot_score_histogram(
            s.scores[sel], labels[sel], s.threshold, os.path.join(directory, f"scores_{_safe(run)}.png"),
            title=f"{run}: CNN hit scores")
        fpr, tpr, auc = M.roc_curve(s.scores[sel], labels[sel])
        curves.append((run, fpr, tpr, auc))
    rec = ev.table["overall"]
    out["confusion_overall"] = plot_confusion(
        rec, os.path.join(directory, "confusion_overall.png"),
        title=f"all runs: acc {_frac(rec['accuracy'])}, sen {_frac(rec['sensitivity'])}")
    fpr, tpr, auc = M.roc_curve(s.scores, labels)
    curves.append(("all runs", fpr, tpr, auc))
    fpr, tpr, auc = M.roc_curve(s.intensity, labels)
    curves.append(("naive crop intensity, all runs", fpr, tpr, auc))
    out["roc"] = plot_roc(curves, os.path.join(directory, "roc.png"), title="ROC per run (CNN)")
    if ev.peak_bins:
        out["peak_bins"] = plot_peak_bins(ev.peak_bins, os.path.join(directory, "peak_bins.png"),
                                          title="CNN sensitivity per peak count of the hits (peakfinder8)")
    return out


# ---------------------------------------------------------------------------
# Markdown

def _set_of(run: str, train_runs: Sequence[str]) -> str:
    return "train" if run in train_runs else "unseen"


def table_markdown(tab: dict[str, Any], runs: Sequence[str], train_runs: Sequence[str] = ()) -> str:
    """The paper's Table II: run, set, # events, % hit, sensitivity, specificity, accuracy (percent)."""
    lines = ["| Run | Set | # events | % hit | Sen. (%) | Spe. (%) | Acc. (%) | TP | FP | TN | FN |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        r = tab["runs"][run]
        lines.append(f"| {run} | {_set_of(run, train_runs)} | {r['events']} | {_pct(r['hit_fraction'])} | "
                     f"{_pct(r['sensitivity'])} | {_pct(r['specificity'])} | {_pct(r['accuracy'])} | "
                     f"{r['tp']} | {r['fp']} | {r['tn']} | {r['fn']} |")
    r = tab["overall"]
    lines.append(f"| **all** | | {r['events']} | {_pct(r['hit_fraction'])} | {_pct(r['sensitivity'])} | "
                 f"{_pct(r['specificity'])} | {_pct(r['accuracy'])} | {r['tp']} | {r['fp']} | {r['tn']} | {r['fn']} |")
    return "\n".join(lines) + "\n"


def peak_bins_markdown(bins: dict[str, Any]) -> str:
    """Sensitivity per peak-count bin of the hits: all runs with counts and 95% interval, then per run."""
    names = list(bins["bins"])
    runs = list(bins["runs"])
    head = "| Peaks | hits | kept | lost | Sen. (%) | 95% interval (%) |" + "".join(f" {r} |" for r in runs)
    sep = "|---|---:|---:|---:|---:|---|" + "---:|" * len(runs)
    lines = [head, sep]
    for name in names:
        r = bins["overall"][name]
        interval = ("n/a" if r["sensitivity_interval"] is None
                    else f"{100 * r['sensitivity_interval'][0]:.1f}-{100 * r['sensitivity_interval'][1]:.1f}")
        cells = "".join(f" {_pct(bins['runs'][run][name]['sensitivity'])} ({bins['runs'][run][name]['lost']} lost) |"
                        if bins['runs'][run][name]['hits'] else " - |" for run in runs)
        lines.append(f"| {name} | {r['hits']} | {r['kept']} | {r['lost']} | {_pct(r['sensitivity'])} | {interval} |"
                     + cells)
    return "\n".join(lines) + "\n"


def calibration_line(meta) -> str | None:
    """The model's per-run calibration in one line, or None when it has none."""
    if meta is None or not getattr(meta, "calibration", None):
        return None
    from sfx_cnn_veto.training.calibrate import describe

    return describe(meta.calibration)


def _describe(meta) -> str:
    if meta is None:
        return "?"
    text = f"`{meta.architecture}` + `{meta.normalize}`, threshold {meta.threshold:.3g}"
    if getattr(meta, "calibration", None):
        text += f" calibrated on {', '.join(meta.calibration.get('runs') or ['?'])}"
    return text


def compare_markdown(ev, model_path: str) -> str:
    """Side by side: the evaluated model, each --compare-model, and the naive intensity cut (accuracy)."""
    models = [("model", ev.model, ev.table)] + [(o.name, o, t) for _, o, t in ev.compare]
    head = "| Run | Set | # events | % hit |"
    sep = "|---|---|---:|---:|"
    for name, _, _ in models:
        head += f" {name} Sen. | {name} Spe. | {name} Acc. |"
        sep += "---:|---:|---:|"
    head += " intensity Acc. |"
    sep += "---:|"
    lines = [head, sep]
    for run in ev.runs + ["all"]:
        first = ev.table["overall"] if run == "all" else ev.table["runs"][run]
        line = (f"| {'**all**' if run == 'all' else run} | {'' if run == 'all' else _set_of(run, ev.train_runs)} | "
                f"{first['events']} | {_pct(first['hit_fraction'])} |")
        for _, _, tab in models:
            r = tab["overall"] if run == "all" else tab["runs"][run]
            line += f" {_pct(r['sensitivity'])} | {_pct(r['specificity'])} | {_pct(r['accuracy'])} |"
        r = ev.intensity_table["overall"] if run == "all" else ev.intensity_table["runs"][run]
        line += f" {_pct(r['accuracy'])} |"
        lines.append(line)
    legend = ["", "Models:"]
    legend.append(f"- **model**: `{model_path}` ({_describe(ev.model.metadata)})")
    for path, other, _ in ev.compare:
        legend.append(f"- **{other.name}**: `{path}` ({_describe(other.metadata)})")
    legend.append(f"- **intensity**: naive cut on the crop's total intensity at {ev.intensity_threshold:.6g} ADU, "
                  f"chosen for the best balanced accuracy on runs {', '.join(ev.intensity_runs)}")
    legend.append("")
    legend.append("Percentages; Sen. = TP/(TP+FN), Spe. = TN/(TN+FP), Acc. = (TP+TN)/events; ambiguous events "
                  "left out; events a model cannot score count as predicted hits.")
    return "\n".join(lines) + "\n" + "\n".join(legend) + "\n"


def report_markdown(ev, *, labels_path: str, model_path: str, figures: dict[str, str]) -> str:
    s = ev.model
    meta = s.metadata
    parts = [f"# Evaluation of `{os.path.basename(model_path)}`", ""]
    parts.append(f"- model: `{model_path}` ({_describe(meta)})")
    parts.append(f"- labels: `{labels_path}` (ambiguous events left out)")
    if ev.train_runs:
        parts.append(f"- trained on runs: {', '.join(ev.train_runs)}")
    calibration = calibration_line(meta)
    if calibration:
        parts.append(f"- {calibration}")
    parts += ["", "## CNN (the paper's Table II)", "", table_markdown(ev.table, ev.runs, ev.train_runs)]
    if ev.peak_bins:
        parts += ["## Hits kept per peak count (the weak-hit tail)", "",
                  "Sensitivity of the CNN on the hits of each peak-count bin (peakfinder8's count; indexing usually "
                  "needs about 15-20 peaks), all runs with the 95% Wilson interval, then per run.", "",
                  peak_bins_markdown(ev.peak_bins)]
    parts += ["## Naive total-intensity threshold", "",
              f"A frame is a hit when its crop's total intensity is at least {ev.intensity_threshold:.6g} ADU "
              f"(the best balanced accuracy on runs {', '.join(ev.intensity_runs)}).", "",
              table_markdown(ev.intensity_table, ev.runs, ev.train_runs)]
    if ev.compare:
        parts += ["## Side by side", "", compare_markdown(ev, model_path)]
    errors = [(r, e) for r, e in zip(s.rows, s.errors) if e]
    parts += ["## Events the model could not score", ""]
    if errors:
        parts.append(f"{len(errors)} event(s), counted as predicted hits (fail open):")
        parts.append("")
        for row, err in errors[:50]:
            parts.append(f"- `{row.file} {row.event or ''}` ({row.run}): {err}")
        if len(errors) > 50:
            parts.append(f"- ... and {len(errors) - 50} more (see scores.csv)")
    else:
        parts.append("None: every labelled event was scored.")
    parts += ["", "## Figures", ""]
    for key, path in figures.items():
        parts.append(f"- {key}: ![{key}]({os.path.basename(path)})")
    parts.append("")
    return "\n".join(parts)
