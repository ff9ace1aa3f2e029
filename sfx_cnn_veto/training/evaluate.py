"""Evaluation: the paper's Table II per run, for the CNN and for a naive total-intensity cut.

Ambiguous events (empty label) are left out of scoring. Events the model
cannot score count as predicted hits (the veto fails open) and are listed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError, FrameReadError, VetoError
from sfx_cnn_veto.training import metrics as M
from sfx_cnn_veto.training.datasets import event_ref
from sfx_cnn_veto.training.labels import LabelRow, read_labels, runs_of, select_runs


@dataclass
class Scored:
    """Per-event results of one model on labelled rows."""

    rows: list[LabelRow]
    scores: np.ndarray          # NaN where not scored
    predicted: np.ndarray       # bool; True where not scored (fail open)
    intensity: np.ndarray       # crop sum (ADU); NaN where unreadable
    errors: list[str | None]
    threshold: float
    name: str = "model"
    metadata: Any = None

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.rows], dtype=np.int64)


def score_rows(veto, rows: Sequence[LabelRow], *, reader_options: dict[str, Any] | None = None,
               desc: str = "evaluate") -> tuple[np.ndarray, list[str | None], np.ndarray, np.ndarray]:
    """Score ``rows`` with a :class:`~sfx_cnn_veto.core.pipeline.Veto`, reading only the crop of each frame.

    Returns ``(scores, errors, predicted, intensity)``; the crop's raw sum is
    the naive baseline's feature.
    """
    from sfx_cnn_veto.cli_commands import progress
    from sfx_cnn_veto.io.store import FrameStore

    n = len(rows)
    intensity = np.full(n, np.nan)
    scores = np.full(n, np.nan)
    predicted = np.ones(n, dtype=bool)
    errors: list[str | None] = [None] * n
    with FrameStore(reader_options or {}) as store, progress(total=n, desc=desc) as bar:

        def pairs():
            for i, row in enumerate(rows):
                ref = event_ref(row)
                try:
                    cmap = veto.event_crop_map(store, ref)
                    block = store.read(ref, cmap.region)
                    intensity[i] = float(np.nansum(cmap.gather(block), dtype=np.float64))
                    yield i, block, veto.file_mask(ref.file, cmap.frame_shape), cmap  # the file's mask: cached
                except ConfigError:
                    raise
                except VetoError as exc:
                    yield i, exc
                except Exception as exc:  # noqa: BLE001 - never lose an event
                    yield i, FrameReadError(f"{ref}: {type(exc).__name__}: {exc}")

        for i, decision in veto.stream(pairs()):
            scores[i] = decision.score
            predicted[i] = decision.is_hit
            errors[i] = decision.error
            bar.update(1)
    return scores, errors, predicted, intensity


def crop_intensities(rows: Sequence[LabelRow], *, crop_shape, crop_center, reader_options=None,
                     desc: str = "intensity") -> np.ndarray:
    """Raw crop sums of ``rows`` (NaN where unreadable)."""
    from sfx_cnn_veto.cli_commands import progress
    from sfx_cnn_veto.core.crop import crop_region
    from sfx_cnn_veto.io.store import FrameStore

    out = np.full(len(rows), np.nan)
    with FrameStore(reader_options or {}) as store, progress(total=len(rows), desc=desc) as bar:
        for i, row in enumerate(rows):
            ref = event_ref(row)
            try:
                shape = store.frame_shape(ref)
                out[i] = float(np.nansum(store.read(ref, crop_region(shape, crop_shape, crop_center)),
                                         dtype=np.float64))
            except Exception:  # noqa: BLE001 - counted as unreadable
                pass
            bar.update(1)
    return out


def table(rows: Sequence[LabelRow], predicted: np.ndarray, runs: Sequence[str]) -> dict[str, Any]:
    """``{"runs": {RUN: record}, "overall": record}`` (records of :func:`metrics.table_row`)."""
    labels = np.array([r.label for r in rows], dtype=np.int64)
    out: dict[str, Any] = {"runs": {}}
    names = np.array([r.run for r in rows])
    for run in runs:
        sel = names == run
        out["runs"][run] = M.table_row(M.confusion(labels[sel], predicted[sel]))
    out["overall"] = M.table_row(M.confusion(labels, predicted))
    return out


#: peak-count bins of the hits (inclusive bounds; None: no upper bound): where weak hits are lost.
#: Indexing usually needs about 15-20 peaks.
PEAK_BINS: tuple[tuple[str, int, int | None], ...] = (("11-15", 11, 15), ("16-20", 16, 20), ("21-50", 21, 50),
                                                       (">50", 51, None))


def _peak_bin(n: int | None) -> str:
    if n is None:
        return "no count"
    for name, low, high in PEAK_BINS:
        if n >= low and (high is None or n <= high):
            return name
    return f"<={PEAK_BINS[0][1] - 1}"  # hits by another rule than the paper's (percentile labels)


def _bin_record(kept: np.ndarray) -> dict[str, Any]:
    n, k = int(kept.size), int(kept.sum())
    return {"hits": n, "kept": k, "lost": n - k, "sensitivity": k / n if n else None,
            "sensitivity_interval": list(M.wilson_interval(k, n)) if n else None}


def peak_bin_table(rows: Sequence[LabelRow], predicted: np.ndarray, runs: Sequence[str]) -> dict[str, Any]:
    """Sensitivity per peak-count bin of the hits, over all runs and per run.

    Returns
    -------
    dict
        ``{"bins": [names], "overall": {bin: record}, "runs": {run: {bin: record}}}``; a record is
        ``hits, kept, lost, sensitivity, sensitivity_interval`` (95% Wilson; ``None`` without hits).
        Every bin of :data:`PEAK_BINS` is present; hits outside them (fewer than 11 peaks, no count)
        get bins of their own.
    """
    hits = [(i, r) for i, r in enumerate(rows) if r.label == 1]
    names = [name for name, _, _ in PEAK_BINS]
    extra = sorted({_peak_bin(r.num_peaks) for _, r in hits} - set(names))
    names = extra + names
    bins = np.array([_peak_bin(r.num_peaks) for _, r in hits])
    kept = np.array([bool(predicted[i]) for i, _ in hits], dtype=bool)
    run_of = np.array([r.run for _, r in hits])
    out: dict[str, Any] = {"bins": names, "overall": {}, "runs": {}}
    for name in names:
        out["overall"][name] = _bin_record(kept[bins == name] if len(hits) else kept)
    for run in runs:
        sel = run_of == run
        out["runs"][run] = {name: _bin_record(kept[sel & (bins == name)] if len(hits) else kept) for name in names}
    return out


@dataclass
class Evaluation:
    runs: list[str]
    model: Scored
    table: dict[str, Any]
    intensity_threshold: float
    intensity_runs: list[str]
    intensity_table: dict[str, Any]
    train_runs: list[str] = field(default_factory=list)
    peak_bins: dict[str, Any] = field(default_factory=dict)
    compare: list[tuple[str, Scored, dict[str, Any]]] = field(default_factory=list)


def evaluate_model(model_path: str, rows: Sequence[LabelRow], runs: Sequence[str], *, threshold: float | None = None,
                   reader_options=None, batch_size: int = 64, name: str | None = None,
                   mask=None, file_masks: bool = True, geometry=None) -> Scored:
    from sfx_cnn_veto.core.pipeline import Veto

    veto = Veto.load(model_path, threshold=threshold, batch_size=batch_size, mask=mask, file_masks=file_masks,
                     geometry=geometry)
    scores, errors, predicted, intensity = score_rows(veto, rows, reader_options=reader_options,
                                                      desc=f"score {os.path.basename(model_path)}")
    return Scored(list(rows), scores, predicted, intensity, errors, veto.threshold,
                  name or os.path.splitext(os.path.basename(model_path))[0], veto.metadata)


def evaluate(model_path: str, labels_path: str, *, runs: Sequence[str] | None = None,
             compare_models: Sequence[str] = (), intensity_runs: Sequence[str] | None = None,
             threshold: float | None = None, reader_options=None, batch_size: int = 64,
             mask=None, file_masks: bool = True, geometry=None) -> Evaluation:
    """Score every labelled event of ``runs`` (default: all) with the model and the naive baseline."""
    all_rows = read_labels(labels_path)
    chosen = select_runs(all_rows, runs, what="--runs")
    scored_rows = [r for r in chosen if r.label is not None]
    if not scored_rows:
        raise ConfigError(f"{labels_path}: no labelled (hit or miss) event in runs {', '.join(runs or runs_of(all_rows))}")
    run_names = runs_of(scored_rows)
    result = evaluate_model(model_path, scored_rows, run_names, threshold=threshold,
                            reader_options=reader_options, batch_size=batch_size, name="model",
                            mask=mask, file_masks=file_masks, geometry=geometry)
    cnn_table = table(scored_rows, result.predicted, run_names)
    meta = result.metadata
    train_runs = list((meta.training or {}).get("train_runs") or []) if meta is not None else []

    # naive total-intensity cut, chosen on the training runs
    have = set(runs_of(all_rows))
    if intensity_runs is None:
        intensity_runs = [r for r in train_runs if r in have]
        if not intensity_runs:
            intensity_runs = run_names
            print("sfx-cnn-veto: warning: the model's training runs are not in the labels file; the "
                  "intensity threshold is chosen on the evaluated runs (optimistic)", file=sys.stderr)
    else:
        select_runs(all_rows, intensity_runs, what="--intensity-runs")
    ref_rows = [r for r in all_rows if r.run in set(intensity_runs) and r.label is not None]
    index = {id(r): i for i, r in enumerate(scored_rows)}
    if all(id(r) in index for r in ref_rows):
        ref_values = np.array([result.intensity[index[id(r)]] for r in ref_rows])
    else:
        ref_values = crop_intensities(ref_rows, crop_shape=meta.crop_shape, crop_center=meta.crop_center,
                                      reader_options=reader_options, desc="intensity (training runs)")
    cut = M.best_balanced_threshold(ref_values, [r.label for r in ref_rows])
    naive_pred = ~(result.intensity < cut)  # NaN (unreadable) -> hit, failing open like the CNN
    naive_table = table(scored_rows, naive_pred, run_names)

    ev = Evaluation(run_names, result, cnn_table, cut, list(intensity_runs), naive_table, train_runs,
                    peak_bin_table(scored_rows, result.predicted, run_names))
    for path in compare_models:
        other = evaluate_model(path, scored_rows, run_names, reader_options=reader_options, batch_size=batch_size,
                               name=os.path.splitext(os.path.basename(path))[0], mask=mask, file_masks=file_masks,
                               geometry=geometry)
        ev.compare.append((path, other, table(scored_rows, other.predicted, run_names)))
    return ev


def _json_ready(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        json.dump(_json_ready(data), handle, indent=2, allow_nan=False)
        handle.write("\n")


def write_scores_csv(path: str, ev: Evaluation) -> None:
    s = ev.model
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        header = ["file", "event", "run", "label", "score", "predicted", "crop_intensity", "error"]
        header += [f"score_{name}" for _, other, _ in ev.compare for name in [other.name]]
        writer.writerow(header)
        for i, row in enumerate(s.rows):
            line = [row.file, row.event or "", row.run, row.label,
                    "" if math.isnan(s.scores[i]) else f"{s.scores[i]:.6f}", int(s.predicted[i]),
                    "" if math.isnan(s.intensity[i]) else f"{s.intensity[i]:.6g}", s.errors[i] or ""]
            line += ["" if math.isnan(o.scores[i]) else f"{o.scores[i]:.6f}" for _, o, _ in ev.compare]
            writer.writerow(line)


def write_report(ev: Evaluation, directory: str, *, labels_path: str, model_path: str) -> dict[str, str]:
    """Write metrics.json, intensity_metrics.json, report.md, scores.csv and the PNGs; returns what was written."""
    from sfx_cnn_veto.training import report as R

    os.makedirs(directory, exist_ok=True)
    written: dict[str, str] = {}
    written["metrics"] = os.path.join(directory, "metrics.json")
    write_json(written["metrics"], {**ev.table, "peak_bins": ev.peak_bins})
    written["intensity_metrics"] = os.path.join(directory, "intensity_metrics.json")
    write_json(written["intensity_metrics"], ev.intensity_table)
    written["scores"] = os.path.join(directory, "scores.csv")
    write_scores_csv(written["scores"], ev)
    figures = R.write_figures(ev, directory)
    written.update(figures)
    for path, other, tab in ev.compare:
        sub = os.path.join(directory, "compare", other.name)
        os.makedirs(sub, exist_ok=True)
        write_json(os.path.join(sub, "metrics.json"), tab)
    if ev.compare:
        written["compare"] = os.path.join(directory, "compare.md")
        with open(written["compare"], "w") as handle:
            handle.write(R.compare_markdown(ev, model_path))
    written["report"] = os.path.join(directory, "report.md")
    with open(written["report"], "w", encoding="utf-8", errors="backslashreplace") as handle:  # odd file names
        handle.write(R.report_markdown(ev, labels_path=labels_path, model_path=model_path, figures=figures))
    return written
