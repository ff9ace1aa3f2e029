"""Confusion matrices and the paper's Table II figures (sensitivity, specificity, accuracy)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def confusion(labels: Sequence[int], predicted: Sequence[bool | int]) -> dict[str, int]:
    """``tp, fp, tn, fn`` with hit = 1 the positive class."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predicted, dtype=bool)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} differ in length")
    return {
        "tp": int(np.sum((y == 1) & p)),
        "fp": int(np.sum((y == 0) & p)),
        "tn": int(np.sum((y == 0) & ~p)),
        "fn": int(np.sum((y == 1) & ~p)),
    }


def _ratio(n: int, d: int) -> float | None:
    return float(n) / d if d else None


def table_row(cm: dict[str, int]) -> dict[str, float | int | None]:
    """The metrics.json record of one run: events, hit_fraction, sensitivity, specificity, accuracy, tp, fp, tn, fn.

    Undefined ratios (no hits, no misses) are ``None`` (``null`` in JSON).
    """
    tp, fp, tn, fn = cm["tp"], cm["fp"], cm["tn"], cm["fn"]
    events = tp + fp + tn + fn
    return {
        "events": events,
        "hit_fraction": _ratio(tp + fn, events),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, events),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def wilson_interval(successes: int, trials: int, *, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for the default ``z``); ``(0, 1)`` without trials.

    Parameters
    ----------
    successes, trials : int
        E.g. hits kept and hits.
    z : float
        The normal quantile (1.96: 95%).
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"Wilson interval: expected 0 <= successes <= trials, got {successes} of {trials}")
    from sfx_cnn_veto.core.audit import wilson

    return wilson(successes, trials, z)


def threshold_for_sensitivity(scores: Sequence[float], labels: Sequence[int], target: float,
                              *, cap: float | None = 0.5) -> float:
    """The highest threshold whose sensitivity on ``(scores, labels)`` is at least ``target``.

    A frame is a hit when ``score >= threshold``. With ``cap`` the threshold
    never exceeds it: the target only ever lowers the usual 0.5 cut, it does
    not raise it to the lowest validation hit's score (which would overfit
    the validation set). Without hits, returns ``cap`` (or 0.5).
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity: expected 0 < t <= 1, got {target}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    hits = np.sort(s[(y == 1) & np.isfinite(s)])
    if hits.size == 0:
        return float(cap if cap is not None else 0.5)
    allowed = int(math.floor((1.0 - target) * hits.size + 1e-9))  # hits we may lose
    threshold = float(hits[allowed])
    if cap is not None:
        threshold = min(threshold, float(cap))
    return threshold


def threshold_for_specificity(scores: Sequence[float], labels: Sequence[int], target: float) -> float:
    """The lowest threshold at which at least ``target`` of the misses score below it (0 without misses)."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target specificity: expected 0 <= t <= 1, got {target}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    misses = np.sort(s[(y == 0) & np.isfinite(s)])
    need = int(math.ceil(target * misses.size - 1e-9))  # misses that must score below the threshold
    if need == 0:
        return 0.0
    return float(np.nextafter(misses[need - 1], np.inf))


def roc_curve(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates over all thresholds, and the area under the curve."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    if npos == 0 or nneg == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y == 1)[distinct]
    fps = np.cumsum(y == 0)[distinct]
    tpr = np.r_[0.0, tps / npos]
    fpr = np.r_[0.0, fps / nneg]
    auc = float(np.trapz(tpr, fpr))
    return fpr, tpr, auc


def best_balanced_threshold(values: Sequence[float], labels: Sequence[int]) -> float:
    """The cut on ``values`` (hit when ``value >= cut``) maximizing balanced accuracy (the naive baseline's)."""
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    ok = np.isfinite(v)
    v, y = v[ok], y[ok]
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    if v.size == 0 or npos == 0 or nneg == 0:
        return float(np.median(v)) if v.size else 0.0
    cuts = np.unique(v)
    order = np.argsort(v)
    vs, ys = v[order], y[order]
    # for cut c: predicted hit if v >= c; count hits/misses strictly below c
    below_pos = np.searchsorted(vs, cuts, side="left")
    cum_pos = np.r_[0, np.cumsum(ys == 1)]
    cum_neg = np.r_[0, np.cumsum(ys == 0)]
    fn = cum_pos[below_pos]
    tn = cum_neg[below_pos]
    bal = 0.5 * ((npos - fn) / npos + tn / nneg)
    return float(cuts[int(np.argmax(bal))])
