"""OM's ``mode: calibrate``: the run's first frames set the threshold, then the monitor vetoes (no OM import).

The processing ranks run the CNN and peakfinder8 on every frame (as in ``tag``
mode) until the collector has received ``calibration_frames`` frames. The
collector labels them with the paper's rule on peakfinder8's peak counts
(fewer than 2 peaks: miss, more than 10: hit, the rest left out), picks the
threshold with the same rule as ``sfx-cnn-veto calibrate``
(:func:`sfx_cnn_veto.training.calibrate.calibrated_threshold`), logs it, and
sends it to every processing rank through OM's feedback channel (``collect_data``'s
return value, key 0 = all ranks). A rank that receives it sets the threshold and
vetoes from its next frame on. Without a single hit among the frames, the
collector warns and tries again every ``calibration_frames`` further frames;
until then nothing is vetoed (peakfinder8 runs on every frame: nothing lost).
"""

from __future__ import annotations

import math
from typing import Any

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.training.labels import PAPER_HIT_ABOVE, PAPER_MISS_BELOW

#: Key of the feedback message carrying the calibrated threshold to the processing ranks.
FEEDBACK_KEY = "cnn_veto_calibrated_threshold"


class RunCalibration:
    """Collector side: the scores and peakfinder8 counts of the run's first frames -> one threshold.

    Parameters
    ----------
    frames : int
        Frames to collect before choosing (and again after each failed try).
    target : float
        Sensitivity on the labelled hits.
    previous : float
        The model's (or the configured) threshold: calibration only ever lowers it.
    """

    def __init__(self, frames: int, target: float, previous: float) -> None:
        self.frames = int(frames)
        self.target = float(target)
        self.previous = float(previous)
        self.scores: list[float] = []
        self.peaks: list[int] = []
        self.seen = 0
        self.threshold: float | None = None
        self.record: dict[str, Any] | None = None
        self.failure: str | None = None
        self.failures = 0

    @property
    def done(self) -> bool:
        return self.threshold is not None

    def add(self, record: dict[str, Any] | None, num_peaks: int) -> bool:
        """Count one frame scored in ``calibrate`` mode; True when the threshold was just chosen."""
        if self.done or not record or record.get("mode") != "calibrate" or not record.get("peakfinder8"):
            return False
        self.seen += 1
        score = record.get("score", math.nan)
        if record.get("error") is None and score == score:
            self.scores.append(float(score))
            self.peaks.append(int(num_peaks))
        if self.seen % self.frames:
            return False
        return self._choose()

    def _choose(self) -> bool:
        from sfx_cnn_veto.training.calibrate import calibrated_threshold

        labelled = [(s, 1 if n > PAPER_HIT_ABOVE else 0) for s, n in zip(self.scores, self.peaks)
                    if n < PAPER_MISS_BELOW or n > PAPER_HIT_ABOVE]
        try:
            threshold, record = calibrated_threshold([s for s, _ in labelled], [y for _, y in labelled],
                                                     target=self.target, previous=self.previous)
        except ConfigError as exc:
            self.failures += 1
            self.failure = f"{exc}; peakfinder8 keeps running on every frame, next try after {self.frames} more"
            return False
        record.update({"frames": self.seen, "ambiguous": len(self.scores) - len(labelled),
                       "source": "OM mode calibrate", "runs": ["the run's first frames"]})
        self.threshold, self.record, self.failure = threshold, record, None
        return True

    def log_line(self) -> str:
        """What the collector prints once the threshold is chosen."""
        from sfx_cnn_veto.training.calibrate import describe

        text = describe(self.record).replace("calibrated on the run's first frames",
                                             f"calibrated on the run's first {self.seen} frames")
        return f"cnn_veto: {text}; switching to veto mode"
