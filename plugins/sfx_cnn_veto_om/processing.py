"""OM processing layer: OM's crystallography monitor with a CNN veto before peakfinder8.

Enable it in ``monitor.yaml`` (and start OM with ``sfx-om-monitor``, which can
load a processing layer from outside OM)::

    om:
      processing_layer: sfx_cnn_veto_om.processing.CnnVetoCrystallographyProcessing
    cnn_veto:
      model: /path/model.keras
      mode: veto      # veto | tag | calibrate | off
      threshold: null
      geometry: null  # null = crystallography.geometry_file (OM's own)

Geometry
--------
OM hands each rank the raw slab of an event (``detector_data``); for a
multi-panel detector its centre is not the beam. The veto reads the monitor's
CrystFEL geometry (``crystallography.geometry_file``, or ``cnn_veto.geometry``)
with the package's parser and crops around the beam of the assembled image,
panel gaps masked; OM's peakfinder8 ``bad_pixel_map`` (slab layout, like the
data) is gathered through the same crop map. The collector prints one line
at start: the geometry, its panels, where the beam falls, how much of the
crop is bad.

Modes
-----
veto
    Frames the CNN calls misses skip peakfinder8 (the time saved) and go on as
    non-hits with an empty peak list. Frames the CNN calls hits, and frames it
    cannot score (fail open), go through peakfinder8 as in stock OM.
    The live audit: a fraction ``audit_fraction`` (default 0.02) of the frames,
    picked by a hash of OM's event id, goes through peakfinder8 whatever the
    CNN said; a vetoed frame it calls a hit goes on as a hit (rescued). The
    collector turns the counts into an estimate of the veto's sensitivity
    with a 95% interval (:mod:`sfx_cnn_veto.core.audit`), broadcast under
    ``audit`` in the veto's message and printed in the summary, with an
    ``ALARM`` line when the interval lies below ``target_sensitivity``.
tag
    The CNN and peakfinder8 both run on every frame; OM's hit decision stays
    peakfinder8's; the collector reports their agreement.
calibrate
    As ``tag`` for the run's first ``calibration_frames`` frames; then the
    collector sets the threshold from peakfinder8's labels of those frames,
    logs it, and the ranks switch to ``veto`` (:mod:`sfx_cnn_veto_om.calibration`).
off
    Stock OM (no model is loaded); peakfinder8 calls are still counted.

Everything else is OM's own ``CrystallographyProcessing``: hit-rate plots,
frame sending to the GUIs, the CrystFEL responder. Each frame's score and
decision travel in ``processed_data["cnn_veto"]``; the collector broadcasts
running counts under the tag ``cnn_veto`` on OM's data socket and prints a
summary every ``summary_interval`` frames and at shutdown.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from typing import Any, Dict, List, Tuple, Union

import numpy as np
from om.lib.parameters import MonitorParameters
from om.lib.rich_console import get_current_timestamp
from om.processing_layer.crystallography import CrystallographyProcessing

from sfx_cnn_veto.core.audit import is_audited
from sfx_cnn_veto.errors import VetoError
from sfx_cnn_veto_om.calibration import FEEDBACK_KEY, RunCalibration
from sfx_cnn_veto_om.config import GROUP, CnnVetoConfig
from sfx_cnn_veto_om.geometry import VetoGeometry, load_veto_geometry, startup_line, veto_mask_spec
from sfx_cnn_veto_om.stats import VetoStats, frame_record

#: Key of the per-frame record in ``processed_data``; of a rank's final report.
RECORD_KEY = "cnn_veto"
RANK_REPORT_KEY = "cnn_veto_rank_report"


#: The collector's decisions file (``cnn_veto.decisions_file``): one row per event, OM's event id first.
DECISIONS_COLUMNS = ["event_id", "rank", "mode", "score", "cnn_hit", "vetoed", "peakfinder8", "num_peaks",
                     "frame_is_hit", "cnn_ms", "error", "audited"]


def decision_row(received: Dict[str, Any], rank: int, mode: str) -> List[Any]:
    """The decisions-file row (:data:`DECISIONS_COLUMNS`) of one event the collector received from ``rank``."""
    record = received.get(RECORD_KEY) or {}
    peaks = received.get("peak_list") or {}
    return [
        received.get("event_id"),
        rank,
        record.get("mode", mode),
        _num(record.get("score")),
        "" if record.get("cnn_hit") is None else int(bool(record.get("cnn_hit"))),
        int(bool(record.get("vetoed"))),
        int(bool(record.get("peakfinder8"))),
        len(peaks.get("intensity", ())),
        int(bool(received["frame_is_hit"])),
        _num(record.get("cnn_ms")),
        record.get("error") or "",
        int(bool(record.get("audited"))),
    ]


def _empty_peak_list() -> Dict[str, Any]:
    return {
        "num_peaks": 0,
        "fs": [],
        "ss": [],
        "intensity": [],
        "num_pixels": [],
        "max_pixel_intensity": [],
        "snr": [],
    }


class _GatedPeakFinder:
    """Wraps OM's ``CrystallographyPeakFinding``: counts and times real calls, or skips one.

    OM's ``process_data`` calls ``self._peak_detection.find_peaks``; putting this
    gate there lets the parent's code run unchanged (frame sending, binning,
    pump-probe) while a vetoed frame gets an empty peak list without
    peakfinder8 being called.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.skip_next = False
        self.calls = 0
        self.skipped = 0
        self.seconds = 0.0
        self.last_ran = False
        self.last_ms = math.nan

    def find_peaks(self, detector_data: Any) -> Dict[str, Any]:
        if self.skip_next:
            self.skip_next = False
            self.skipped += 1
            self.last_ran = False
            self.last_ms = math.nan
            return _empty_peak_list()
        start = time.perf_counter()
        result = self.inner.find_peaks(detector_data=detector_data)
        elapsed = time.perf_counter() - start
        self.calls += 1
        self.seconds += elapsed
        self.last_ran = True
        self.last_ms = 1000.0 * elapsed
        return result

    def __getattr__(self, name: str) -> Any:  # anything else OM may use
        return getattr(self.inner, name)


class CnnVetoCrystallographyProcessing(CrystallographyProcessing):
    """OM's crystallography monitor plus the ``cnn_veto`` step (see the module docstring)."""

    def __init__(self, *, monitor_parameters: MonitorParameters) -> None:
        super().__init__(monitor_parameters=monitor_parameters)
        # Runs on every rank, collector included: validate only (no TensorFlow here).
        self._veto_config: CnnVetoConfig = CnnVetoConfig.from_group(_group_or_none(monitor_parameters))
        self._veto: Any = None
        self._veto_load_error: Union[str, None] = None
        # The crop's geometry: read once here on every rank, so a bad file stops the monitor at start.
        self._veto_geometry: Union[VetoGeometry, None] = None
        if self._veto_config.enabled:
            self._veto_geometry = load_veto_geometry(self._veto_config, monitor_parameters)

    def _veto_mask_spec(self) -> Union[str, None]:
        """``mask`` of the group; by default peakfinder8's bad pixel map (1 = good), as OM reads it."""
        return veto_mask_spec(self._veto_config, self._monitor_params)

    # -- processing ranks -----------------------------------------------------
    def initialize_processing_node(self, *, node_rank: int, node_pool_size: int) -> None:
        super().initialize_processing_node(node_rank=node_rank, node_pool_size=node_pool_size)
        self._gate = _GatedPeakFinder(self._peak_detection)
        self._peak_detection = self._gate
        self._cnn_calls = 0
        self._model_loads = 0
        self._cnn_seconds = 0.0
        self._cnn_errors = 0
        self._vetoed = 0
        self._frames = 0
        cfg = self._veto_config
        self._live_mode = cfg.mode  # calibrate -> veto when the collector's threshold arrives
        if not cfg.enabled:
            return
        threads = cfg.threads or _share_of_cores(node_pool_size)
        start = time.perf_counter()
        try:
            from sfx_cnn_veto.core.pipeline import Veto

            veto = Veto.load(cfg.model, threshold=cfg.threshold, backend=cfg.backend, batch_size=1, threads=threads,
                             geometry=self._veto_geometry.geometry, mask=self._veto_mask_spec(), file_masks=False)
            warm_up(veto, self._veto_geometry.geometry.frame_shape)
            self._veto = veto
            self._model_loads += 1
        except Exception as exc:  # noqa: BLE001 - fail open: this rank peak-finds every frame
            self._veto_load_error = f"model not loaded on rank {node_rank} ({type(exc).__name__}: {exc})"
            _say(
                f"OM Warning: cnn_veto: {self._veto_load_error}; "
                "this rank runs peakfinder8 on every frame (fail open)."
            )
        else:
            _say(
                f"cnn_veto: rank {node_rank} loaded {os.path.basename(cfg.model)} "
                f"(mode {cfg.mode}, threshold {self._veto.threshold:g}, {threads} thread(s), "
                f"{len(self._veto_geometry.geometry.panels)}-panel geometry) "
                f"in {time.perf_counter() - start:.1f} s"
            )
        sys.stdout.flush()

    def _score(self, frame: Any) -> Tuple[float, bool, Union[str, None], float]:
        """(score, cnn_hit, error, ms) for one frame; never raises (fail open)."""
        if self._veto is None:
            return math.nan, True, self._veto_load_error or "model not loaded", math.nan
        start = time.perf_counter()
        try:
            decision = self._veto.decide([frame])[0]
            score, is_hit, error = decision.score, decision.is_hit, decision.error
        except Exception as exc:  # noqa: BLE001 - never crash the monitor
            score, is_hit, error = math.nan, True, f"{type(exc).__name__}: {exc}"
        ms = 1000.0 * (time.perf_counter() - start)
        if error is None and not math.isfinite(score):
            error = f"classifier returned a non-finite score ({score})"
        if error is not None:
            is_hit = True  # fail open: peak-find as if no veto existed
        self._cnn_calls += 1
        self._cnn_seconds += ms / 1000.0
        return float(score), bool(is_hit), error, ms

    def process_data(
        self, *, node_rank: int, node_pool_size: int, data: Dict[str, Any]
    ) -> Tuple[Dict[str, Any], int]:
        cfg = self._veto_config
        self._frames += 1
        if FEEDBACK_KEY in data:
            self._calibrated(float(data[FEEDBACK_KEY]))
        score, cnn_hit, error, cnn_ms = math.nan, None, None, math.nan
        veto_frame = audited = False
        if cfg.enabled:
            score, cnn_hit, error, cnn_ms = self._score(data["detector_data"])
            if error is not None:
                self._cnn_errors += 1
            veto_frame = self._live_mode == "veto" and not cnn_hit and error is None
            audited = (self._live_mode == "veto" and error is None
                       and is_audited(str(data.get("event_id")), cfg.audit_fraction))
        self._gate.skip_next = veto_frame and not audited
        try:
            processed_data, rank = super().process_data(
                node_rank=node_rank, node_pool_size=node_pool_size, data=data
            )
        finally:
            self._gate.skip_next = False
        if veto_frame:
            self._vetoed += 1
            if not audited:
                processed_data["frame_is_hit"] = False  # never a hit with zero peaks
            # audited: peakfinder8 ran and OM's own hit rule stands (a hit it finds is rescued)
        processed_data[RECORD_KEY] = frame_record(
            mode=self._live_mode,
            score=score,
            cnn_hit=None if error is not None or not cfg.enabled else cnn_hit,
            vetoed=veto_frame,
            peakfinder8=self._gate.last_ran,
            error=error,
            cnn_ms=cnn_ms,
            peakfinder8_ms=self._gate.last_ms,
            audited=audited,
        )
        return processed_data, rank

    def _calibrated(self, threshold: float) -> None:
        """The collector's calibrated threshold arrived: use it, and veto from now on."""
        if self._veto is not None:
            self._veto.threshold = threshold
        self._live_mode = "veto"

    def end_processing_on_processing_node(
        self, *, node_rank: int, node_pool_size: int
    ) -> Union[Dict[str, Any], None]:
        super().end_processing_on_processing_node(node_rank=node_rank, node_pool_size=node_pool_size)
        # Sent to the collector (OM passes it to collect_data): the rank's own counters.
        return {
            RANK_REPORT_KEY: {
                "frames": self._frames,
                "peakfinder8_calls": self._gate.calls,
                "peakfinder8_skipped": self._gate.skipped,
                "cnn_calls": self._cnn_calls,
                "model_loads": self._model_loads,
                "cnn_errors": self._cnn_errors,
                "vetoed": self._vetoed,
                "cnn_seconds": self._cnn_seconds,
                "peakfinder8_seconds": self._gate.seconds,
                "model_error": self._veto_load_error,
            }
        }

    # -- collecting rank ------------------------------------------------------
    def initialize_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        super().initialize_collecting_node(node_rank=node_rank, node_pool_size=node_pool_size)
        cfg = self._veto_config
        threshold = cfg.threshold
        metadata = None
        if cfg.model:
            from sfx_cnn_veto.core.model import VetoModel

            metadata = VetoModel.read_metadata(cfg.model)
            if threshold is None:
                threshold = metadata.threshold
        self._veto_stats = VetoStats(mode=cfg.mode, model=cfg.model, threshold=threshold,
                                     audit_fraction=cfg.audit_fraction, target_sensitivity=cfg.target_sensitivity)
        self._calibration = (RunCalibration(cfg.calibration_frames, cfg.calibration_target, threshold)
                             if cfg.mode == "calibrate" and threshold is not None else None)
        self._decisions_handle: Any = None
        self._decisions_writer: Any = None
        if cfg.decisions_file:
            os.makedirs(os.path.dirname(cfg.decisions_file) or ".", exist_ok=True)
            self._decisions_handle = open(cfg.decisions_file, "w", newline="")
            self._decisions_writer = csv.writer(self._decisions_handle)
            self._decisions_writer.writerow(DECISIONS_COLUMNS)
        _say(
            f"cnn_veto: mode {cfg.mode}"
            + (f", model {cfg.model}" if cfg.model else "")
            + f"; counts broadcast with tag '{cfg.broadcast_tag}'"
        )
        if cfg.enabled and metadata is not None:
            _say(startup_line(cfg, self._monitor_params, self._veto_geometry, metadata))
        sys.stdout.flush()

    def collect_data(
        self,
        *,
        node_rank: int,
        node_pool_size: int,
        processed_data: Tuple[Dict[str, Any], int],
    ) -> Union[Dict[int, Dict[str, Any]], None]:
        received, rank = processed_data
        if RANK_REPORT_KEY in received:  # a processing rank's end-of-run report, not an event
            self._veto_stats.add_rank_report(rank, received[RANK_REPORT_KEY])
            return None
        feedback = super().collect_data(
            node_rank=node_rank, node_pool_size=node_pool_size, processed_data=processed_data
        )
        try:
            self._count(received, rank)
        except Exception as exc:  # noqa: BLE001 - statistics must never stop the monitor
            _say(f"OM Warning: cnn_veto statistics: {type(exc).__name__}: {exc}")
        if self._calibration is not None and not self._calibration.done:
            feedback = self._calibrate(received, feedback)
        return feedback

    def _calibrate(self, received: Dict[str, Any], feedback: Any) -> Any:
        """``mode: calibrate``: count the frame; once the threshold is chosen, log it and send it to all ranks."""
        calibration = self._calibration
        failures = calibration.failures
        peaks = len((received.get("peak_list") or {}).get("intensity", ()))
        if not calibration.add(received.get(RECORD_KEY), peaks):
            if calibration.failures != failures:
                _say(f"OM Warning: cnn_veto calibration: {calibration.failure}")
            return feedback
        from sfx_cnn_veto.training.calibrate import calibration_warnings

        _say(calibration.log_line())
        for text in calibration_warnings(calibration.record):
            _say(f"OM Warning: cnn_veto calibration: {text}")
        stats = self._veto_stats
        stats.mode, stats.threshold = "veto", calibration.threshold
        self._data_broadcast_socket.send_data(tag=self._veto_config.broadcast_tag,
                                              message={**stats.message(), "calibration": calibration.record})
        feedback = dict(feedback or {})
        feedback[0] = {**feedback.get(0, {}), FEEDBACK_KEY: calibration.threshold}
        return feedback

    def _count(self, received: Dict[str, Any], rank: int) -> None:
        cfg = self._veto_config
        stats = self._veto_stats
        record = received.get(RECORD_KEY)
        frame_is_hit = bool(received["frame_is_hit"])
        stats.add(record, frame_is_hit=frame_is_hit)
        if self._decisions_writer is not None:
            self._decisions_writer.writerow(decision_row(received, rank, cfg.mode))
        if stats.frames % cfg.broadcast_interval == 0:
            self._data_broadcast_socket.send_data(tag=cfg.broadcast_tag, message=stats.message())
        if cfg.summary_interval and stats.frames % cfg.summary_interval == 0:
            _say(stats.summary())
            alarm = stats.alarm_line()
            if alarm:
                _say(alarm)

    def end_processing_on_collecting_node(self, *, node_rank: int, node_pool_size: int) -> None:
        super().end_processing_on_collecting_node(node_rank=node_rank, node_pool_size=node_pool_size)
        stats = self._veto_stats
        if self._decisions_handle is not None:
            self._decisions_handle.close()
        _say(stats.summary(final=True))
        alarm = stats.alarm_line()
        if alarm:
            _say(alarm)
        for rank in sorted(stats.ranks):
            report = stats.ranks[rank]
            _say(
                f"cnn_veto rank {rank}: frames={report.get('frames')} "
                f"peakfinder8_calls={report.get('peakfinder8_calls')} "
                f"peakfinder8_skipped={report.get('peakfinder8_skipped')} "
                f"cnn_calls={report.get('cnn_calls')} cnn_errors={report.get('cnn_errors')}"
                + (f" model_error={report['model_error']!r}" if report.get("model_error") else "")
            )
        try:
            # OM's PUB socket queues at most one message per subscriber and OM exits
            # right after this: let the queue drain, then send the final counts twice.
            for pause in (0.2, 0.3):
                time.sleep(pause)
                self._data_broadcast_socket.send_data(
                    tag=self._veto_config.broadcast_tag, message=stats.message(final=True)
                )
            time.sleep(0.3)
        except Exception as exc:  # noqa: BLE001
            _say(f"OM Warning: cnn_veto final broadcast failed: {type(exc).__name__}: {exc}")


def warm_up(veto: Any, frame_shape: Tuple[int, ...]) -> None:
    """Decide one synthetic frame of the detector's shape now, so the first real event is not slow.

    The first decision builds the crop map and compiles (or loads) the
    normalization and network kernels: 0.5-1.3 s per rank in the OM example,
    which counted as the first frame's ``cnn_ms``. The frame is Poisson noise
    with a few bright pixels (a constant frame would take the normalization's
    fallback and leave its compiled pass cold). It counts nowhere.
    """
    rng = np.random.default_rng(0)
    frame = rng.poisson(1.0, size=tuple(frame_shape)).astype(np.float32)
    frame.reshape(-1)[:: 997] += 50.0
    veto.decide([frame])


def _say(text: str) -> None:
    """One unwrapped console line with OM's timestamp (rich would wrap it at 80 columns)."""
    print(f"{get_current_timestamp()} {text}", flush=True)


def _group_or_none(monitor_parameters: MonitorParameters) -> Any:
    try:
        return monitor_parameters.get_parameter_group(group=GROUP)
    except Exception:  # noqa: BLE001 - OM raises OmMissingParameterGroupError
        return None


def _share_of_cores(node_pool_size: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, node_pool_size - 1))


def _num(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if value != value else f"{value:.6g}"


__all__ = ["CnnVetoCrystallographyProcessing", "VetoError"]
