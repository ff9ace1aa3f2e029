"""The live audit: how many hits is the veto throwing away?

Every host (``filter-lst``, OM's veto mode, the psana adapter, the Python API)
runs peakfinder8 on a small, deterministic fraction of the frames, whatever
the CNN said, and turns the counts into an estimate of the veto's sensitivity
(the fraction of real hits it keeps) with a 95% interval. This module holds
the parts they share: which events are audited, the counts, the estimator,
the alarm rule, and :class:`Audit`, the per-frame step of the Python API.

Selection
---------
An event is audited when :func:`audit_draw` of its identity (the ``.lst``
line ``path //N`` in ``filter-lst``, the psana timestamp, OM's event id) is
below ``audit_fraction``. The draw is a hash, so serial, MPI and resumed
runs audit the same events, and the audited set at 2% lies inside the one
at 5%. The same draw picks frames the CNN vetoes and frames it keeps: the
audit is a uniform sample of each.

Estimator
---------
With ``V`` vetoed frames of which ``a_v`` were audited and ``h_v`` of those
are peakfinder8 hits, and ``K`` kept frames, ``a_k`` audited, ``h_k`` hits:

* missed hits  ``M = V * h_v / a_v``  (real hits among the vetoed frames);
* kept hits    ``H = K * h_k / a_k``  (real hits among the kept frames);
* sensitivity  ``S = H / (H + M)``; miss rate ``1 - S``.

The interval: a Wilson score interval for each of the two fractions
``h_v / a_v`` and ``h_k / a_k``, each at 97.5% (``z = 2.241``), so that both
hold together with at least 95% probability (Bonferroni). ``S`` rises with
the kept fraction and falls with the vetoed one, so its interval is
``[S(kept low, vetoed high), S(kept high, vetoed low)]``, at least 95%. The
reported per-fraction intervals (``vetoed_pf8_hit_fraction_interval``, ...)
are the plain 95% Wilson ones. With nothing vetoed the sensitivity is 1; a
group audited in full (fraction 1) has its exact fraction, no interval.
The Wilson interval treats the audit as a binomial sample (a frame audited
or not independently of its content, which the hash makes so); with a
fraction well below 1 the finite-population correction is negligible.

Alarm
-----
``alarm`` is true when the interval's upper end lies below
``target_sensitivity`` (default 0.98): even the most favourable reading of
the audit says the veto loses too many hits. Few audited frames give a wide
interval and no alarm; the counts are reported beside it.

Frames the audit finds to be hits are **kept** by every host: the audit also
rescues hits. A frame the CNN could not score (an error) is kept unscored
and is neither vetoed nor kept here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from typing import Any, Callable

from sfx_cnn_veto.errors import ConfigError

#: Default fraction of frames audited.
DEFAULT_FRACTION = 0.02
#: Default sensitivity below which the alarm fires.
DEFAULT_TARGET = 0.98
#: peakfinder8 peaks that make a hit by default (the labelling rule's ``--hit-above 10``).
DEFAULT_MIN_PEAKS = 11
#: z of a two-sided 95% interval.
Z95 = 1.959963984540054
#: z of a two-sided 97.5% interval (two of them hold together at >= 95%).
Z975 = 2.241402727604947


def audit_draw(identity: str) -> float:
    """A uniform number in [0, 1) fixed by the event's identity alone.

    Parameters
    ----------
    identity : str
        The event's identity: ``path //N`` as in the list, a psana timestamp, OM's event id.

    Returns
    -------
    float
        The same number on every rank, in every session, in every host.
    """
    data = ("sfx-cnn-veto audit\0" + str(identity)).encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def is_audited(identity: str, fraction: float) -> bool:
    """Whether the event ``identity`` is audited at ``fraction`` (see :func:`audit_draw`)."""
    return fraction > 0 and audit_draw(identity) < fraction


def check_fraction(fraction: float, *, name: str = "audit_fraction") -> float:
    """``fraction`` as a float in [0, 1], or :class:`ConfigError` naming ``name``."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number in [0, 1], got {fraction!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}: expected a number in [0, 1], got {fraction!r}")
    return value


def add_audit_arguments(parser: Any, *, peakfinder: str, picked_by: str, json_beside: str,
                        geometry: bool = False) -> Any:
    """The live audit's command-line options, spelled and defaulted the same in every command.

    ``peakfinder`` names the peak finder (``peakfinder8``, ``psana's peakfinder8``), ``picked_by``
    what identifies an event (``line``, ``timestamp``), ``json_beside`` where ``audit.json`` goes by
    default; ``geometry`` adds ``--audit-geometry``. Returns the argument group.
    """
    audit = parser.add_argument_group(f"live audit ({peakfinder} on a sample of the events; see the README)")
    audit.add_argument("--audit-fraction", type=float, default=DEFAULT_FRACTION, metavar="F",
                       help=f"run {peakfinder} on this fraction of the events, picked by a hash of each "
                            f"{picked_by} (default {DEFAULT_FRACTION}; 0: no audit); audited misses it calls hits "
                            "are kept")
    if geometry:
        audit.add_argument("--audit-geometry", default=None, metavar="FILE.geom",
                           help="geometry for the audit's peakfinder8 (default: --geometry, else LIST.geom)")
    audit.add_argument("--audit-min-peaks", type=int, default=DEFAULT_MIN_PEAKS, metavar="N",
                       help=f"peaks that make a peakfinder8 hit (default {DEFAULT_MIN_PEAKS}, "
                            "as label's --hit-above 10)")
    audit.add_argument("--target-sensitivity", type=float, default=DEFAULT_TARGET, metavar="S",
                       help=f"the audit's ALARM fires when the sensitivity's 95%% interval lies below this "
                            f"(default {DEFAULT_TARGET})")
    audit.add_argument("--audit-json", default=None, metavar="PATH",
                       help=f"where to write the audit (default: audit.json beside {json_beside})")
    return audit


def audit_json_path(explicit: str | None, beside: str) -> str:
    """``--audit-json`` when given, else ``audit.json`` in the directory of the output ``beside``."""
    import os

    return explicit or os.path.join(os.path.dirname(os.path.abspath(beside)), "audit.json")


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial fraction; ``(0, 1)`` with no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def _fraction_bounds(successes: int, audited: int, population: int) -> tuple[float, float]:
    """The 97.5% Wilson bounds of a group's hit fraction; exact when the whole group was audited."""
    if audited > 0 and audited >= population:
        return successes / audited, successes / audited
    return wilson(successes, audited, Z975)


def _sensitivity(kept_hits: float, missed_hits: float, *, empty: float) -> float:
    total = kept_hits + missed_hits
    return kept_hits / total if total > 0 else empty


@dataclass
class AuditCounts:
    """The audit's counts, added frame by frame and merged across ranks."""

    audit_fraction: float = DEFAULT_FRACTION
    target_sensitivity: float = DEFAULT_TARGET
    vetoed: int = 0
    audited_vetoed: int = 0
    audited_vetoed_pf8_hits: int = 0
    kept: int = 0
    audited_kept: int = 0
    audited_kept_pf8_hits: int = 0
    audit_errors: int = 0  # audited frames peakfinder8 could not count

    _COUNTS = ("vetoed", "audited_vetoed", "audited_vetoed_pf8_hits", "kept", "audited_kept",
               "audited_kept_pf8_hits", "audit_errors")

    def add(self, *, vetoed: bool, audited: bool = False, pf8_hit: bool | None = None) -> None:
        """Count one scored frame: vetoed or kept by the CNN; audited with peakfinder8's verdict (None: failed)."""
        if vetoed:
            self.vetoed += 1
        else:
            self.kept += 1
        if not audited:
            return
        if pf8_hit is None:
            self.audit_errors += 1
        elif vetoed:
            self.audited_vetoed += 1
            self.audited_vetoed_pf8_hits += bool(pf8_hit)
        else:
            self.audited_kept += 1
            self.audited_kept_pf8_hits += bool(pf8_hit)

    def merge(self, other: "AuditCounts | dict[str, Any]") -> None:
        """Add another rank's counts (an :class:`AuditCounts` or its :meth:`counts`)."""
        data = other if isinstance(other, dict) else other.counts()
        for name in self._COUNTS:
            setattr(self, name, getattr(self, name) + int(data.get(name, 0)))

    def counts(self) -> dict[str, int]:
        """The plain counts (what a rank sends on)."""
        return {name: getattr(self, name) for name in self._COUNTS}

    # -- the estimate -----------------------------------------------------------
    def estimate(self) -> dict[str, Any]:
        """Counts, estimates, intervals and the alarm, as plain Python types (``audit.json``).

        ``sensitivity_estimate`` is None when the audit saw no hit at all (or audited
        no vetoed or no kept frame while both exist); the interval is always given.
        """
        V, K = self.vetoed, self.kept
        av, hv, ak, hk = self.audited_vetoed, self.audited_vetoed_pf8_hits, self.audited_kept, self.audited_kept_pf8_hits
        pv = hv / av if av else None
        pk = hk / ak if ak else None
        missed = V * pv if pv is not None else (0.0 if V == 0 else None)
        kept_hits = K * pk if pk is not None else (0.0 if K == 0 else None)
        if V == 0:
            sens, interval = 1.0, (1.0, 1.0)
        else:
            lv, uv = _fraction_bounds(hv, av, V)
            lk, uk = _fraction_bounds(hk, ak, K)
            interval = (_sensitivity(K * lk, V * uv, empty=0.0), _sensitivity(K * uk, V * lv, empty=1.0))
            sens = None
            if missed is not None and kept_hits is not None and kept_hits + missed > 0:
                sens = kept_hits / (kept_hits + missed)
        alarm = interval[1] < self.target_sensitivity
        out: dict[str, Any] = {
            "audit_fraction": self.audit_fraction,
            **self.counts(),
            "estimated_missed_hits": missed,
            "estimated_kept_hits": kept_hits,
            "vetoed_pf8_hit_fraction": pv,
            "vetoed_pf8_hit_fraction_interval": list(wilson(hv, av)),
            "kept_pf8_hit_fraction": pk,
            "kept_pf8_hit_fraction_interval": list(wilson(hk, ak)),
            "sensitivity_estimate": sens,
            "sensitivity_interval": [interval[0], interval[1]],
            "miss_rate_estimate": None if sens is None else 1.0 - sens,
            "miss_rate_interval": [1.0 - interval[1], 1.0 - interval[0]],
            "target_sensitivity": self.target_sensitivity,
            "alarm": bool(alarm),
        }
        return out

    @property
    def alarm(self) -> bool:
        return bool(self.estimate()["alarm"])

    def summary(self) -> str:
        """One line: the counts, the estimate and its interval."""
        e = self.estimate()
        sens = "n/a" if e["sensitivity_estimate"] is None else f"{e['sensitivity_estimate']:.4f}"
        low, high = e["sensitivity_interval"]
        return (f"audit: {self.audited_vetoed_pf8_hits} of {self.audited_vetoed} audited vetoed frames and "
                f"{self.audited_kept_pf8_hits} of {self.audited_kept} audited kept frames are peakfinder8 hits "
                f"({self.vetoed} vetoed, {self.kept} kept, fraction {self.audit_fraction:g}); "
                f"sensitivity {sens} (95% interval {low:.4f}-{high:.4f}, target {self.target_sensitivity:g})")

    def alarm_line(self) -> str | None:
        """The ALARM line when the interval's upper end is below the target, else None."""
        e = self.estimate()
        if not e["alarm"]:
            return None
        missed = e["estimated_missed_hits"]
        return (f"ALARM: the veto keeps at most {100 * e['sensitivity_interval'][1]:.1f}% of the hits "
                f"(target {100 * self.target_sensitivity:g}%): {self.audited_vetoed_pf8_hits} of "
                f"{self.audited_vetoed} audited vetoed frames are peakfinder8 hits"
                + ("" if missed is None else f", about {missed:.0f} hits vetoed")
                + "; lower the threshold (sfx-cnn-veto calibrate) or switch the veto off")

    def report_lines(self, host: str, *, rescued: int = 0, kept_in: str = "") -> list[str]:
        """The lines a host logs at the end: :meth:`summary` (with the rescued frames) and the ALARM line.

        Parameters
        ----------
        host : str
            The prefix of each line (``filter-lst``, ``psana``).
        rescued : int
            Vetoed frames kept because the audit's peakfinder8 calls them hits.
        kept_in : str
            Where those frames were kept (the hits list), named in the line.
        """
        where = f", kept in {kept_in}" if kept_in else ", kept"
        extra = f"; {rescued} audited misses are peakfinder8 hits{where}" if rescued else ""
        lines = [f"{host}: {self.summary()}{extra}"]
        alarm = self.alarm_line()
        if alarm:
            lines.append(f"{host}: {alarm}")
        return lines

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AuditCounts":
        """Counts back from :meth:`estimate`'s output (or any dict holding the fields)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def write_audit_json(path: str, counts: AuditCounts) -> str:
    """Write :meth:`AuditCounts.estimate` as ``audit.json`` (``PATH.part``, renamed when complete).

    The one writer of every host's ``audit.json``, so the keys are the same everywhere.
    """
    import json

    from sfx_cnn_veto.io import files as atomic

    text = json.dumps(counts.estimate(), indent=1, allow_nan=False) + "\n"
    with atomic.writing([path]) as handles:
        handles[path].write(text)
    return path


@dataclass(frozen=True)
class AuditResult:
    """One frame's audit: whether it was audited, peakfinder8's count, and whether to keep the frame."""

    audited: bool
    peaks: int | None
    pf8_hit: bool | None
    keep: bool
    rescued: bool  # vetoed by the CNN, kept because peakfinder8 calls it a hit
    error: str | None = None


class Audit:
    """The audit step of the Python API: ``audit(identity, frame, decision) -> AuditResult``.

    Parameters
    ----------
    counter : callable
        ``counter(frame) -> number of peaks`` (a labeler from
        :func:`sfx_cnn_veto.manager.labelers`, OM's or psana's peakfinder8).
    fraction : float
        Fraction of frames audited (default 0.02).
    min_peaks : int
        Peaks that make a peakfinder8 hit (default 11).
    target_sensitivity : float
        The alarm's target (default 0.98).

    Examples
    --------
    >>> audit = Audit(counter, fraction=0.02)                     # doctest: +SKIP
    >>> for ref, frame, decision in ...:                          # doctest: +SKIP
    ...     if audit(str(ref), frame, decision).keep: write(ref)
    >>> audit.counts.estimate()["sensitivity_interval"]           # doctest: +SKIP
    """

    def __init__(self, counter: Callable[[Any], int], *, fraction: float = DEFAULT_FRACTION,
                 min_peaks: int = DEFAULT_MIN_PEAKS, target_sensitivity: float = DEFAULT_TARGET) -> None:
        self.counter = counter
        self.fraction = check_fraction(fraction)
        self.min_peaks = int(min_peaks)
        self.counts = AuditCounts(audit_fraction=self.fraction, target_sensitivity=float(target_sensitivity))

    def __call__(self, identity: Any, frame: Any, decision: Any) -> AuditResult:
        """Audit one decided frame (a frame read lazily: ``frame`` may be a callable returning it)."""
        if getattr(decision, "error", None):
            return AuditResult(False, None, None, True, False)  # undecided: kept, not counted
        vetoed = not decision.is_hit
        if not is_audited(str(identity), self.fraction):
            self.counts.add(vetoed=vetoed)
            return AuditResult(False, None, None, not vetoed, False)
        try:
            peaks = int(self.counter(frame() if callable(frame) else frame))
        except Exception as exc:  # noqa: BLE001 - the audit never drops or fails a frame
            self.counts.add(vetoed=vetoed, audited=True, pf8_hit=None)
            return AuditResult(True, None, None, not vetoed, False, f"{type(exc).__name__}: {exc}")
        hit = peaks >= self.min_peaks
        self.counts.add(vetoed=vetoed, audited=True, pf8_hit=hit)
        return AuditResult(True, peaks, hit, (not vetoed) or hit, vetoed and hit)
