"""The ``cnn_veto`` parameter group of an OM ``monitor.yaml`` (no OM or TensorFlow import).

Example
-------
.. code-block:: yaml

    cnn_veto:
      model: /path/model.keras   # null = the model shipped with sfx-cnn-veto
      mode: veto                 # veto | tag | off
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
MODES = ("veto", "tag", "off")

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
    mode : {"veto", "tag", "off"}
        ``veto``: frames the CNN calls misses skip peakfinder8 and are
        reported as non-hits. ``tag``: the CNN and peakfinder8 both run; the
        collector reports their agreement. ``off``: stock OM behaviour.
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

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @classmethod
    def from_group(cls, group: Mapping[str, Any] | None, *, check_model: bool = True) -> "CnnVetoConfig":
        """Validate a ``cnn_veto`` group (None or missing: the group is required)."""
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
            raise ConfigError(
                f"{GROUP}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(_DEFAULTS)}"
            )
        values = {**_DEFAULTS, **dict(group)}

        mode = values["mode"]
        if mode is False:  # YAML 1.1 reads a bare `off` as false
            mode = "off"
        if not isinstance(mode, str) or mode.lower() not in MODES:
            raise ConfigError(f"{GROUP}.mode: expected one of {', '.join(MODES)}, got {mode!r}")
        mode = mode.lower()

        threshold = values["threshold"]
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise ConfigError(f"{GROUP}.threshold: expected null or a number in [0, 1], got {threshold!r}")
            threshold = float(threshold)
            if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
                raise ConfigError(f"{GROUP}.threshold: expected null or a number in [0, 1], got {threshold}")

        def positive_int(key: str, *, allow_none: bool = False, allow_zero: bool = False) -> int | None:
            value = values[key]
            if value is None and allow_none:
                return None
            lowest = 0 if allow_zero else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                what = "a non-negative" if allow_zero else "a positive"
                raise ConfigError(
                    f"{GROUP}.{key}: expected {'null or ' if allow_none else ''}{what} integer, got {value!r}"
                )
            return value

        threads = positive_int("threads", allow_none=True)
        summary_interval = positive_int("summary_interval", allow_zero=True)
        broadcast_interval = positive_int("broadcast_interval")

        for key in ("backend", "broadcast_tag"):
            if not isinstance(values[key], str) or not values[key]:
                raise ConfigError(f"{GROUP}.{key}: expected a non-empty string, got {values[key]!r}")
        decisions_file = values["decisions_file"]
        if decisions_file is not None and (not isinstance(decisions_file, str) or not decisions_file):
            raise ConfigError(f"{GROUP}.decisions_file: expected null or a file path, got {decisions_file!r}")

        mask = values["mask"]
        if mask is True or (mask is not None and mask is not False and (not isinstance(mask, str) or not mask)):
            raise ConfigError(f"{GROUP}.mask: expected null, false or a mask file FILE.h5:/DATASET, got {mask!r}")

        geometry = values["geometry"]
        if geometry is not None and (not isinstance(geometry, str) or not geometry):
            raise ConfigError(
                f"{GROUP}.geometry: expected null (the monitor's crystallography.geometry_file) "
                f"or a CrystFEL .geom path, got {geometry!r}"
            )

        fractions = {}
        for key in ("audit_fraction", "target_sensitivity"):
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{GROUP}.{key}: expected a number in [0, 1], got {value!r}")
            fractions[key] = float(value)

        model = values["model"]
        if model is not None and (not isinstance(model, str) or not model):
            raise ConfigError(f"{GROUP}.model: expected a path to a .keras file, got {model!r}")
        if mode == "off":
            model = None if model is None else os.path.abspath(model)
        else:
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
        return cls(
            model=model,
            mode=mode,
            threshold=threshold,
            backend=values["backend"],
            threads=threads,
            summary_interval=summary_interval,
            broadcast_interval=broadcast_interval,
            broadcast_tag=values["broadcast_tag"],
            decisions_file=None if decisions_file is None else os.path.abspath(decisions_file),
            mask=mask,
            geometry=None if geometry is None else os.path.abspath(geometry),
            **fractions,
        )
