"""Counting the veto's decisions on OM's collecting node (pure Python, no OM import).

Each processed frame carries a small record in ``processed_data["cnn_veto"]``
(see :func:`frame_record`); :class:`VetoStats` adds them up, and turns the
totals into the message broadcast on OM's data socket and the printed summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sfx_cnn_veto.core.audit import AuditCounts


def frame_record(
    *,
    mode: str,
    score: float = math.nan,
    cnn_hit: bool | None = None,
    vetoed: bool = False,
    peakfinder8: bool = True,
    error: str | None = None,
    cnn_ms: float = math.nan,
    peakfinder8_ms: float = math.nan,
    audited: bool = False,
) -> dict[str, Any]:
    """The per-frame record a processing rank attaches to ``processed_data``.

    ``vetoed``: the CNN called the frame a miss (veto mode); ``audited``: peakfinder8 ran on it anyway
    (the live audit, :mod:`sfx_cnn_veto.core.audit`), or on a kept frame the audit samples.
    """
    return {
        "mode": mode,
        "score": float(score),
        "cnn_hit": cnn_hit,
        "vetoed": bool(vetoed),
        "peakfinder8": bool(peakfinder8),
        "error": error,
        "cnn_ms": float(cnn_ms),
        "peakfinder8_ms": float(peakfinder8_ms),
        "audited": bool(audited),
    }


@dataclass
class VetoStats:
    """Running totals of the veto over all processing ranks.

    ``agree``/``cnn_hit_pf8_miss``/``cnn_miss_pf8_hit`` count only frames on
    which both the CNN (without error) and peakfinder8 ran: every frame in
    ``tag`` mode, the kept frames in ``veto`` mode.
    """

    mode: str
    model: str | None = None
    threshold: float | None = None
    frames: int = 0
    hits: int = 0  # OM's frame_is_hit
    vetoed: int = 0
    kept: int = 0
    errors: int = 0
    peakfinder8_calls: int = 0
    cnn_frames: int = 0  # frames the CNN scored without error
    cnn_hits: int = 0
    both_hit: int = 0
    both_miss: int = 0
    cnn_hit_pf8_miss: int = 0
    cnn_miss_pf8_hit: int = 0
    cnn_seconds: float = 0.0
    cnn_timed: int = 0  # frames with a CNN timing (the CNN was called)
    peakfinder8_seconds: float = 0.0
    last_error: str | None = None
    error_reasons: dict[str, int] = field(default_factory=dict)
    ranks: dict[int, dict[str, Any]] = field(default_factory=dict)
    audit_fraction: float = 0.0
    target_sensitivity: float = 0.98
    rescued: int = 0  # vetoed frames the audit's peakfinder8 calls hits: sent on as hits
    audit: AuditCounts | None = None

    def __post_init__(self) -> None:
        if self.audit is None and self.mode == "veto" and self.audit_fraction > 0:
            self.audit = AuditCounts(audit_fraction=self.audit_fraction, target_sensitivity=self.target_sensitivity)

    def add(self, record: dict[str, Any] | None, *, frame_is_hit: bool) -> None:
        """Count one frame (``record`` None: a frame processed without the veto layer's record)."""
        self.frames += 1
        self.hits += bool(frame_is_hit)
        if record is None:
            record = frame_record(mode="off")
        if record.get("vetoed"):
            self.vetoed += 1
        else:
            self.kept += 1
        ran_pf8 = bool(record.get("peakfinder8"))
        self.peakfinder8_calls += ran_pf8
        ms = record.get("peakfinder8_ms", math.nan)
        if ran_pf8 and ms == ms:
            self.peakfinder8_seconds += ms / 1000.0
        error = record.get("error")
        if error:
            self.errors += 1
            self.last_error = error
            key = error[:120]
            if key in self.error_reasons or len(self.error_reasons) < 20:
                self.error_reasons[key] = self.error_reasons.get(key, 0) + 1
        cnn_hit = record.get("cnn_hit")
        ms = record.get("cnn_ms", math.nan)
        if ms == ms:
            self.cnn_seconds += ms / 1000.0
            self.cnn_timed += 1
        if self.audit is not None and cnn_hit is not None and not error:
            audited = bool(record.get("audited"))
            vetoed = not cnn_hit
            self.audit.add(vetoed=vetoed, audited=audited, pf8_hit=bool(frame_is_hit) if audited else None)
            self.rescued += int(vetoed and audited and bool(frame_is_hit))
        if cnn_hit is not None and not error:
            self.cnn_frames += 1
            self.cnn_hits += bool(cnn_hit)
            if ran_pf8:
                if cnn_hit and frame_is_hit:
                    self.both_hit += 1
                elif not cnn_hit and not frame_is_hit:
                    self.both_miss += 1
                elif cnn_hit:
                    self.cnn_hit_pf8_miss += 1
                else:
                    self.cnn_miss_pf8_hit += 1

    def add_rank_report(self, rank: int, report: dict[str, Any]) -> None:
        """Keep a processing rank's own end-of-run counters (sent at shutdown)."""
        self.ranks[int(rank)] = dict(report)

    @property
    def compared(self) -> int:
        return self.both_hit + self.both_miss + self.cnn_hit_pf8_miss + self.cnn_miss_pf8_hit

    @property
    def agreement(self) -> float:
        return (self.both_hit + self.both_miss) / self.compared if self.compared else math.nan

    @property
    def cnn_ms_per_frame(self) -> float:
        return 1000.0 * self.cnn_seconds / self.cnn_timed if self.cnn_timed else math.nan

    @property
    def peakfinder8_ms_per_call(self) -> float:
        return 1000.0 * self.peakfinder8_seconds / self.peakfinder8_calls if self.peakfinder8_calls else math.nan

    def message(self, *, final: bool = False) -> dict[str, Any]:
        """The dictionary broadcast on OM's data socket (plain Python types only)."""
        return {
            "final": final,
            "mode": self.mode,
            "model": self.model,
            "threshold": self.threshold,
            "frames": self.frames,
            "hits": self.hits,
            "vetoed": self.vetoed,
            "kept": self.kept,
            "errors": self.errors,
            "peakfinder8_calls": self.peakfinder8_calls,
            "cnn_frames": self.cnn_frames,
            "cnn_hits": self.cnn_hits,
            "compared": self.compared,
            "both_hit": self.both_hit,
            "both_miss": self.both_miss,
            "cnn_hit_pf8_miss": self.cnn_hit_pf8_miss,
            "cnn_miss_pf8_hit": self.cnn_miss_pf8_hit,
            "agreement": self.agreement,
            "cnn_ms_per_frame": self.cnn_ms_per_frame,
            "peakfinder8_ms_per_call": self.peakfinder8_ms_per_call,
            "last_error": self.last_error,
            "error_reasons": dict(self.error_reasons),
            "ranks": {rank: dict(report) for rank, report in self.ranks.items()},
            "rescued": self.rescued,
            "audit": None if self.audit is None else self.audit.estimate(),
        }

    def alarm_line(self) -> str | None:
        """``cnn_veto ALARM: ...`` when the audit's upper bound on sensitivity is below the target, else None."""
        line = None if self.audit is None else self.audit.alarm_line()
        return None if line is None else f"cnn_veto {line}"

    def summary(self, *, final: bool = False) -> str:
        """One line, ``key=value`` pairs, for the console."""

        def fmt(x: float, spec: str) -> str:
            return "n/a" if x != x else format(x, spec)

        head = "cnn_veto final" if final else "cnn_veto"
        parts = [
            f"mode={self.mode}",
            f"frames={self.frames}",
            f"hits={self.hits}",
            f"vetoed={self.vetoed}",
            f"kept={self.kept}",
            f"errors={self.errors}",
            f"peakfinder8_calls={self.peakfinder8_calls}",
            f"cnn_hits={self.cnn_hits}",
        ]
        if self.compared:
            parts += [
                f"agreement={fmt(self.agreement, '.4f')}",
                f"compared={self.compared}",
                f"cnn_miss_pf8_hit={self.cnn_miss_pf8_hit}",
                f"cnn_hit_pf8_miss={self.cnn_hit_pf8_miss}",
            ]
        if self.audit is not None:
            est = self.audit.estimate()
            low, high = est["sensitivity_interval"]
            sens = est["sensitivity_estimate"]
            parts += [
                f"audited_vetoed={self.audit.audited_vetoed}",
                f"audited_vetoed_pf8_hits={self.audit.audited_vetoed_pf8_hits}",
                f"audited_kept={self.audit.audited_kept}",
                f"audited_kept_pf8_hits={self.audit.audited_kept_pf8_hits}",
                f"rescued={self.rescued}",
                f"sensitivity={'n/a' if sens is None else format(sens, '.4f')}",
                f"sensitivity_95={low:.4f}-{high:.4f}",
            ]
        parts += [
            f"cnn_ms_per_frame={fmt(self.cnn_ms_per_frame, '.2f')}",
            f"peakfinder8_ms_per_call={fmt(self.peakfinder8_ms_per_call, '.2f')}",
        ]
        text = f"{head}: " + " ".join(parts)
        if final and self.last_error:
            text += f" last_error={self.last_error!r}"
        return text
