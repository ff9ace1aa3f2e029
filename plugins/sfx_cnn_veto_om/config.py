"""The ``cnn_veto`` parameter group of an OM ``monitor.yaml`` (no OM or TensorFlow import).

Example
-------
.. code-block:: yaml

    cnn_veto:
      model: /path/model.keras   # null = the model shipped with sfx-cnn-veto
      mode: veto                 # veto | tag | calibrate | off
      calibration_frames: 200    # calibrate: peakfinder8 on every frame of the first N, then veto
      calibration_target: 0.99   # calibrate: the sensitivity the threshold is set for
      threshold: null            # null = the model's own threshold
      mask: null                 # null = peakfinder8's bad_pixel_map; false = none; or FILE.h5:/DATASET
      geometry: null             # null = OM's crystallography.geometry_file; or a CrystFEL .geom
      audit_fraction: 0.02       # veto mode: peakfinder8 still runs on this fraction of vetoed frames
      target_sensitivity: 0.98   # the summary's ALARM line: the audit's upper bound is below this

Parsed once into a frozen :class:`CnnVetoConfig`; unknown keys and bad values
raise :class:`~sfx_cnn_veto.errors.ConfigError` naming the key, what was
expected and what was received.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from sfx_cnn_veto.errors import ConfigError

GROUP = "cnn_veto"
MODES = ("veto", "tag", "off", "calibrate")

_DEFAULTS: dict[str, Any] = {
    "model": None,
    "mode": "veto",
    "threshold": None,
    "backend": "auto",
    "threads": None,
    "summary_interval": 100,
    "broadcast_interval": 10,
    "broadcast_tag": "cnn_veto",
    "decisions_file": None,
    "mask": None,
    "geometry": None,
    "audit_fraction": 0.02,
    "target_sensitivity": 0.98,
    "calibration_frames": 200,
    "calibration_target": 0.99,
}


@dataclass(frozen=True)
class CnnVetoConfig:
    """The validated ``cnn_veto`` group.

    Attributes
    ----------
    model : str or None
        Path of the ``.keras`` model (relative paths resolve against the
        directory OM is started from, like OM's ``geometry_file``). None in
        ``off`` mode.
    mode : {"veto", "tag", "calibrate", "off"}
        ``veto``: frames the CNN calls misses skip peakfinder8 and are
        reported as non-hits. ``tag``: the CNN and peakfinder8 both run; the
        collector reports their agreement. ``calibrate``: as ``tag`` for the
        run's first ``calibration_frames`` frames, then the threshold is set
        from them (peakfinder8's labels) and the ranks switch to ``veto``.
        ``off``: stock OM behaviour.
    threshold : float or None
        Decision threshold in [0, 1]; None keeps the model's.
    backend : str
        Classifier backend (``sfx-cnn-veto plugins`` lists them). ``auto``
        (default): numba's fused kernels when they reproduce Keras on a check
        batch at load, else keras.
    threads : int or None
        Threads for the network on each processing rank; None shares the
        machine's cores among the processing ranks.
    summary_interval : int
        The collector prints a summary every this many frames (0: only at the end).
    broadcast_interval : int
        The collector broadcasts the counts every this many frames.
    broadcast_tag : str
        Tag of the counts on OM's ZMQ data socket.
    decisions_file : str or None
        If set, the collector writes one CSV row per event there.
    mask : str, False or None
        Good-pixel mask (nonzero = good) ``FILE.h5:/DATASET`` for models
        trained with masks; None uses the monitor's peakfinder8
        ``bad_pixel_map`` (OM's convention, 1 = good), False none.
    geometry : str or None
        CrystFEL geometry the crop is taken with (absolute path); None uses
        the monitor's own ``crystallography.geometry_file``. The geometry puts
        the beam at ``x = y = 0``: the crop follows it, on any panel layout.
    audit_fraction : float
        Veto mode: the fraction of frames (picked by a hash of OM's event id,
        :mod:`sfx_cnn_veto.core.audit`) that go through peakfinder8 whatever
        the CNN said. An audited vetoed frame peakfinder8 calls a hit goes on
        as a hit. 0 turns the audit off.
    target_sensitivity : float
        The summary prints an ALARM line when the audit's 95% upper bound on
        the veto's sensitivity is below this.
    calibration_frames : int
        ``calibrate`` mode: frames (as the collector receives them) whose
        peakfinder8 labels set the threshold.
    calibration_target : float
        ``calibrate`` mode: the sensitivity on those frames' hits the
        threshold is chosen for (``sfx-cnn-veto calibrate``'s rule).
    """

    model: str | None
    mode: str = "veto"
    threshold: float | None = None
    backend: str = "auto"
    threads: int | None = None
    summary_interval: int = 100
    broadcast_interval: int = 10
    broadcast_tag: str = "cnn_veto"
    decisions_file: str | None = None
    mask: str | bool | None = None
    geometry: str | None = None
    audit_fraction: float = 0.02
    target_sensitivity: float = 0.98
    calibration_frames: int = 200
    calibration_target: float = 0.99

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @classmethod
    def from_group(cls, group: Mapping[str, Any] | None, *, check_model: bool = True) -> "CnnVetoConfig":
        """Validate a ``cnn_veto`` group (None or missing: the group is required)."""
        values = _group_values(group)
        mode = _mode(values["mode"])
        for key in ("backend", "broadcast_tag"):
            if not isinstance(values[key], str) or not values[key]:
                raise ConfigError(f"{GROUP}.{key}: expected a non-empty string, got {values[key]!r}")
        target = values["calibration_target"]
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < float(target) <= 1.0:
            raise ConfigError(f"{GROUP}.calibration_target: expected a sensitivity in (0, 1], got {target!r}")
        mask = values["mask"]
        if mask is True or (mask is not None and mask is not False and (not isinstance(mask, str) or not mask)):
            raise ConfigError(f"{GROUP}.mask: expected null, false or a mask file FILE.h5:/DATASET, got {mask!r}")
        decisions_file = _optional_path(values, "decisions_file", "null or a file path")
        geometry = _optional_path(values, "geometry", "null (the monitor's crystallography.geometry_file) "
                                                      "or a CrystFEL .geom path")
        return cls(
            model=_model(values["model"], mode, check_model=check_model),
            mode=mode,
            threshold=_threshold(values["threshold"]),
            backend=values["backend"],
            threads=_count(values, "threads", allow_none=True),
            summary_interval=_count(values, "summary_interval", allow_zero=True),
            broadcast_interval=_count(values, "broadcast_interval"),
            broadcast_tag=values["broadcast_tag"],
            decisions_file=decisions_file,
            mask=mask,
            geometry=geometry,
            audit_fraction=_fraction(values, "audit_fraction"),
            target_sensitivity=_fraction(values, "target_sensitivity"),
            calibration_frames=_count(values, "calibration_frames"),
            calibration_target=float(target),
        )


def _group_values(group: Mapping[str, Any] | None) -> dict[str, Any]:
    """The group's values over the defaults; a missing group or an unknown key is an error."""
    if group is None:
        raise ConfigError(
            f"monitor.yaml has no '{GROUP}' parameter group; add one, e.g. "
            f"'{GROUP}: {{model: model.keras, mode: veto}}' (mode: {' | '.join(MODES)})"
        )
    if not isinstance(group, Mapping):
        raise ConfigError(f"{GROUP}: expected a mapping of parameters, got {type(group).__name__}")
    group = {k: v for k, v in group.items() if k != "name"}  # OM adds name: <group> to every group
    unknown = sorted(set(group) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"{GROUP}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(_DEFAULTS)}")
    return {**_DEFAULTS, **dict(group)}


def _mode(mode: Any) -> str:
    if mode is False:  # YAML 1.1 reads a bare `off` as false
        mode = "off"
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ConfigError(f"{GROUP}.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode.lower()


def _threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(f"{GROUP}.threshold: expected null or a number in [0, 1], got {threshold!r}")
    threshold = float(threshold)
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"{GROUP}.threshold: expected null or a number in [0, 1], got {threshold}")
    return threshold


def _count(values: Mapping[str, Any], key: str, *, allow_none: bool = False, allow_zero: bool = False) -> int | None:
    value = values[key]
    if value is None and allow_none:
        return None
    lowest = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        what = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"{GROUP}.{key}: expected {'null or ' if allow_none else ''}{what} integer, got {value!r}")
    return value


def _fraction(values: Mapping[str, Any], key: str) -> float:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{GROUP}.{key}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _optional_path(values: Mapping[str, Any], key: str, expected: str) -> str | None:
    value = values[key]
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{GROUP}.{key}: expected {expected}, got {value!r}")
    return os.path.abspath(value)


def _model(model: Any, mode: str, *, check_model: bool) -> str | None:
    """The model's absolute path (the shipped one by default; none needed with mode off), checked to be a model."""
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigError(f"{GROUP}.model: expected a path to a .keras file, got {model!r}")
    if mode == "off":
        return None if model is None else os.path.abspath(model)
    if model is None:
        from sfx_cnn_veto.core.model import default_model_path

        model = default_model_path()
        if model is None:
            raise ConfigError(
                f"{GROUP}.model: no model given and no default model is installed; "
                "set it to a .keras file trained with 'sfx-cnn-veto train'"
            )
    model = os.path.abspath(model)
    if check_model:
        from sfx_cnn_veto.core.model import VetoModel

        VetoModel.read_metadata(model)  # ModelFormatError: missing, not a zip, no metadata
    return model
