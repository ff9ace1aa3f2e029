"""Per-run calibration: the threshold that reaches a target sensitivity on a few labelled frames of a new run.

No training: the model's scores on a few hundred frames of the run, labelled
by peakfinder8 (``sfx-cnn-veto label``), fix the threshold, and a copy of the
model file carries it with where it came from (``calibration`` in the
metadata: the run, the counts, the sensitivity's 95% Wilson interval and the
threshold before). The same rule serves OM's ``mode: calibrate``
(:func:`calibrated_threshold` on scores and peakfinder8 labels in memory).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.training import metrics as M

#: the default target: the share of the run's hits the veto must keep
DEFAULT_TARGET = 0.99
#: the threshold never goes above the usual cut (as in training: the target lowers it, a small sample of
#: confident hits does not raise it to their lowest score)
THRESHOLD_CAP = 0.5


def _counts(predicted: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    cm = M.confusion(labels, predicted)
    hits, misses = cm["tp"] + cm["fn"], cm["tn"] + cm["fp"]
    return {"hits": hits, "hits_kept": cm["tp"], "misses": misses, "misses_vetoed": cm["tn"],
            "sensitivity": cm["tp"] / hits if hits else None,
            "sensitivity_interval": list(M.wilson_interval(cm["tp"], hits)),
            "specificity": cm["tn"] / misses if misses else None,
            "specificity_interval": list(M.wilson_interval(cm["tn"], misses))}


def calibrated_threshold(scores: Sequence[float], labels: Sequence[int], *, target: float = DEFAULT_TARGET,
                         previous: float | None = None, may_raise: bool = False) -> tuple[float, dict[str, Any]]:
    """The threshold for ``target`` sensitivity on labelled frames, and the record of how it was chosen.

    Parameters
    ----------
    scores : sequence of float
        The model's hit scores (NaN where a frame could not be scored: left out, it would be kept anyway).
    labels : sequence of int
        1 hit, 0 miss (peakfinder8's); ambiguous frames are not passed.
    target : float
        The sensitivity to reach on the labelled hits.
    previous : float, optional
        The threshold before, to report what it gave on the same frames.
    may_raise : bool
        Let the calibration raise the threshold above ``previous`` (fewer misses kept). Off by default:
        a few hundred frames hold a few dozen hits, and the lowest of them is no safe cut for the rest
        of the run (with n hits all kept, the next hit falls below it with probability about 1/(n + 1)).

    Returns
    -------
    threshold : float
        The highest threshold (at most 0.5, and at most ``previous`` unless ``may_raise``) that keeps at
        least ``target`` of the scored hits.
    record : dict
        ``target_sensitivity``, ``threshold``, ``previous_threshold``, ``events``, ``unscored``, the counts
        and 95% Wilson intervals at the new threshold (``hits``, ``hits_kept``, ``sensitivity``,
        ``sensitivity_interval``, ``misses``, ``misses_vetoed``, ``specificity``, ``specificity_interval``)
        and the same at the previous one (``before``).

    Raises
    ------
    ConfigError
        No scored hit among the frames: nothing to calibrate on.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    ok = np.isfinite(s)
    if not np.any(ok & (y == 1)):
        raise ConfigError(f"calibration: no scored hit among the {len(s)} labelled frames (peakfinder8 found none): "
                          "label more frames of the run, or frames with hits")
    for_target = M.threshold_for_sensitivity(s[ok], y[ok], target, cap=THRESHOLD_CAP)
    threshold = for_target if may_raise or previous is None else min(for_target, float(previous))
    record: dict[str, Any] = {"target_sensitivity": float(target), "threshold": float(threshold),
                              "for_target": float(for_target), "may_raise": bool(may_raise),
                              "previous_threshold": None if previous is None else float(previous),
                              "events": int(len(s)), "unscored": int(np.sum(~ok))}
    record.update(_counts(s[ok] >= threshold, y[ok]))
    if previous is not None:
        record["before"] = _counts(s[ok] >= previous, y[ok])
    return float(threshold), record


def calibration_warnings(record: dict[str, Any]) -> list[str]:
    """What the user should know about a calibration: too few hits to show the target, many misses kept."""
    out = []
    low = record["sensitivity_interval"][0]
    if low < record["target_sensitivity"]:
        n = record["hits"]
        out.append(f"{n} labelled hits cannot show a sensitivity of {record['target_sensitivity']:g}: the 95% "
                   f"interval's low end is {low:.3f}; label more frames of the run to narrow it")
    spe = record["specificity"]
    if spe is not None and spe < 0.9:
        out.append(f"at threshold {record['threshold']:.3g} the veto keeps {1 - spe:.0%} of this run's misses "
                   f"({record['misses'] - record['misses_vetoed']} of {record['misses']}): weak hits and misses "
                   "overlap on this run")
    return out


@dataclass
class Calibration:
    """The outcome of :func:`calibrate`: where the model went, and the metadata record."""

    output: str
    threshold: float
    record: dict[str, Any]


def _rows_for(labels_path: str, runs: Sequence[str] | None, first: int | None):
    from sfx_cnn_veto.training.labels import read_labels, runs_of, select_runs

    rows = select_runs(read_labels(labels_path), runs, what="--runs")
    if first is not None:
        if first <= 0:
            raise ConfigError(f"--first: expected a positive number of frames, got {first}")
        kept, seen = [], {}
        for row in rows:  # the first N frames of each run, in the labels' order (as a live calibration sees them)
            seen[row.run] = seen.get(row.run, 0) + 1
            if seen[row.run] <= first:
                kept.append(row)
        rows = kept
    labelled = [r for r in rows if r.label is not None]
    if not labelled:
        raise ConfigError(f"{labels_path}: no labelled (hit or miss) frame to calibrate on")
    return labelled, runs_of(labelled), len(rows)


def _check_output(model_path: str, output: str) -> None:
    if not output.endswith(".keras"):
        raise ConfigError(f"{output}: model files must end in '.keras'")
    if os.path.abspath(output) == os.path.abspath(model_path):
        raise ConfigError(f"{output}: the calibrated copy must not overwrite the model it came from")


def write_calibrated(model_path: str, output: str, metadata) -> str:
    """Copy ``model_path`` to ``output`` (``.keras``) with ``metadata`` replacing its own, atomically."""
    from sfx_cnn_veto.core.model import attach_metadata

    _check_output(model_path, output)
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(model_path, tmp)
        attach_metadata(tmp, metadata)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def calibrate(model_path: str, labels_path: str, output: str, *, target: float = DEFAULT_TARGET,
              runs: Sequence[str] | None = None, first: int | None = None, may_raise: bool = False, reader_options=None,
              batch_size: int = 64, mask=None, file_masks: bool = True, geometry=None) -> Calibration:
    """Score the labelled frames with the model, choose the threshold, write the calibrated copy.

    Parameters
    ----------
    model_path, labels_path, output : str
        The model, the run's labels CSV (``sfx-cnn-veto label``), the copy to write.
    target : float
        Sensitivity to reach on the labelled hits.
    runs : sequence of str, optional
        Runs of the labels file to use (default all; one is the usual case).
    first : int, optional
        Use only the first ``first`` frames of each run (labels' order), ambiguous ones included in the count.
    may_raise : bool
        Let the threshold go above the model's (see :func:`calibrated_threshold`).

    Returns
    -------
    Calibration
    """
    from sfx_cnn_veto.core.model import ModelMetadata
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.training.evaluate import score_rows

    if not 0.0 < target <= 1.0:
        raise ConfigError(f"--target-sensitivity: expected 0 < t <= 1, got {target}")
    _check_output(model_path, output)
    rows, run_names, n_frames = _rows_for(labels_path, runs, first)
    veto = Veto.load(model_path, batch_size=batch_size, mask=mask, file_masks=file_masks, geometry=geometry)
    scores, _, _, _ = score_rows(veto, rows, reader_options=reader_options, desc="calibrate")
    labels = np.array([r.label for r in rows], dtype=np.int64)
    old = veto.metadata
    threshold, record = calibrated_threshold(scores, labels, target=target, previous=old.threshold,
                                             may_raise=may_raise)
    record.update({"runs": run_names, "labels": os.path.abspath(labels_path), "frames": n_frames,
                   "ambiguous": n_frames - len(rows), "model": os.path.abspath(model_path),
                   "source": "sfx-cnn-veto calibrate",
                   "created": _dt.datetime.now(_dt.timezone.utc).isoformat()})
    if old.calibration:
        record["replaces"] = old.calibration
    meta = ModelMetadata(**{**asdict(old), "threshold": threshold, "calibration": record})
    write_calibrated(model_path, output, meta)
    return Calibration(output, threshold, record)


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def describe(record: dict[str, Any]) -> str:
    """One line: the run, the threshold before and after, the sensitivity with its interval and counts."""
    lo, hi = record["sensitivity_interval"]
    runs = ", ".join(record.get("runs") or ["?"])
    line = (f"calibrated on {runs} ({record['hits']} hits, {record['misses']} misses labelled): threshold "
            f"{record['threshold']:.4g}")
    if record.get("previous_threshold") is not None:
        line += f" (was {record['previous_threshold']:.4g})"
    line += (f" for sensitivity {record['target_sensitivity']:g}; there it keeps {record['hits_kept']}/"
             f"{record['hits']} hits ({_pct(record['sensitivity'])}, 95% interval {100 * lo:.1f}-{100 * hi:.1f}%) "
             f"and vetoes {record['misses_vetoed']}/{record['misses']} misses ({_pct(record['specificity'])})")
    before = record.get("before")
    if before:
        line += f"; before: {before['hits_kept']}/{before['hits']} hits ({_pct(before['sensitivity'])})"
    return line


def print_warnings(record: dict[str, Any]) -> None:
    for text in calibration_warnings(record):
        print(f"sfx-cnn-veto: warning: {text}", file=sys.stderr)
