"""The detector geometry of the ``cnn_veto`` step: OM's own geometry file, read by the package's parser.

OM's crystallography monitor reads a CrystFEL geometry
(``crystallography.geometry_file``) and hands each processing rank the raw
slab (``detector_data``) of every event: for a multi-panel detector (CSPAD,
JUNGFRAU, ePix10k, AGIPD) panels side by side, some turned, the beam nowhere
near the slab's centre. The veto reads the same geometry through
:func:`sfx_cnn_veto.io.geometry.read_geometry` (one parser for every host),
so its crop is taken around the beam of the assembled image, with the gaps
between panels masked; ``cnn_veto.geometry`` overrides the file.

No OM or TensorFlow import here: the collector and ``sfx-cnn-veto om-config``
use it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.geometry import Geometry, read_geometry
from sfx_cnn_veto_om.config import GROUP, CnnVetoConfig

#: Where the monitor's own geometry is named in ``monitor.yaml``.
OM_GEOMETRY_KEY = "crystallography.geometry_file"


@dataclass(frozen=True)
class VetoGeometry:
    """The parsed geometry, its file and the ``monitor.yaml`` key that named it."""

    geometry: Geometry
    path: str
    key: str


def geometry_source(config: CnnVetoConfig, groups: Any) -> tuple[str, str]:
    """``(path, key)`` of the geometry the veto uses: ``cnn_veto.geometry``, else OM's ``geometry_file``.

    Parameters
    ----------
    config : CnnVetoConfig
        The validated ``cnn_veto`` group.
    groups : object
        OM's ``MonitorParameters`` (its ``get_parameter_group(group=...)``), or
        a mapping of ``monitor.yaml``'s groups.

    Raises
    ------
    ConfigError
        If neither names a geometry file.
    """
    if config.geometry:
        return config.geometry, f"{GROUP}.geometry"
    crystallography = _group(groups, "crystallography")
    path = crystallography.get("geometry_file") if crystallography else None
    if not isinstance(path, str) or not path:
        raise ConfigError(
            f"{GROUP}: no geometry: set {OM_GEOMETRY_KEY} (OM needs it anyway) or {GROUP}.geometry "
            "to the detector's CrystFEL .geom file"
        )
    return os.path.abspath(path), OM_GEOMETRY_KEY  # relative to where OM starts, as OM opens it


def load_veto_geometry(config: CnnVetoConfig, groups: Any) -> VetoGeometry:
    """Read the geometry named by :func:`geometry_source` (a :class:`ConfigError` naming the key if unusable)."""
    path, key = geometry_source(config, groups)
    try:
        geometry = read_geometry(path)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    return VetoGeometry(geometry, path, key)


def beam_text(geometry: Geometry) -> str:
    """Where the beam (lab ``x = y = 0``) falls on the raw slab, for the start-up line."""
    center = geometry.beam_center()
    if center is not None:
        return f"beam at slab (row, col) = ({center[0]:g}, {center[1]:g})"
    x, y = geometry.pixel_maps()
    distance = np.hypot(x, y)
    if not np.isfinite(distance).any():  # pragma: no cover - a parsed geometry always has pixels
        return "beam: no panel pixels"
    nearest = np.unravel_index(int(np.nanargmin(distance)), distance.shape)
    row, col = int(nearest[-2]), int(nearest[-1])
    panel = next((p.name for p in geometry.panels
                  if p.plane == tuple(int(v) for v in nearest[:-2])
                  and p.min_ss <= row <= p.max_ss and p.min_fs <= col <= p.max_fs), "?")
    return (f"beam at lab x = y = 0, {float(distance[nearest]):.1f} px from the centre of "
            f"slab pixel {tuple(int(v) for v in nearest)} (panel {panel})")


def crop_bad_fractions(geometry: Geometry, crop_shape: Sequence[int],
                       mask: np.ndarray | None) -> tuple[float, float | None]:
    """``(gaps, with_mask)``: the fraction of the crop that no panel covers or the geometry marks bad,
    and the fraction bad once ``mask`` (the slab's good pixels) is gathered too (None without a mask).

    The same :class:`~sfx_cnn_veto.core.crop.CropMapper` as the veto's own preprocessing, and the
    same refusal of a mask that marks most of the crop bad (:class:`ConfigError`: is it inverted?).
    """
    from sfx_cnn_veto.core.crop import CropMapper
    from sfx_cnn_veto.core.pipeline import check_mask_fraction

    cmap = CropMapper(crop_shape, geometry=geometry)(geometry.frame_shape)
    if mask is None:
        return cmap.bad_fraction, None
    mask = np.asarray(mask) != 0
    if mask.shape != cmap.frame_shape:
        raise ConfigError(f"bad-pixel map of shape {mask.shape} does not match the geometry's slab "
                          f"{cmap.frame_shape}")
    crop_good = cmap.crop_good(mask)
    check_mask_fraction(crop_good, cmap)
    return cmap.bad_fraction, float(1.0 - crop_good.mean())


def status_line(veto_geometry: VetoGeometry, crop_shape: Sequence[int], *, mask: np.ndarray | None,
                mask_used: bool) -> str:
    """The one start-up line: which geometry, its panels and beam, and how much of the crop is bad.

    Never raises: a geometry that cannot give a crop, or a bad-pixel map the
    veto refuses, is reported here as an ``OM Warning`` (each frame then fails
    open with the same reason).
    """
    geometry = veto_geometry.geometry
    shape = "x".join(str(v) for v in geometry.frame_shape)
    head = (f"cnn_veto: geometry {veto_geometry.path} (from {veto_geometry.key}): "
            f"{len(geometry.panels)} panel(s), slab {shape}")
    crop = "x".join(str(int(v)) for v in crop_shape)
    try:
        gaps, with_mask = crop_bad_fractions(geometry, crop_shape, mask if mask_used else None)
        beam = beam_text(geometry)
    except Exception as exc:  # noqa: BLE001 - a start-up report must not stop the monitor
        return (f"OM Warning: {head}: {type(exc).__name__}: {exc}; "
                "every frame goes to peakfinder8 (fail open)")
    if not mask_used:
        masked = "bad-pixel map not used (the model was trained without masks)"
    elif with_mask is None:
        masked = "no bad-pixel map"
    else:
        masked = f"{with_mask:.1%} bad with the bad-pixel map"
    return f"{head}, {beam}; crop {crop}: {gaps:.1%} gaps or geometry-bad, {masked}"


def veto_mask_spec(config: CnnVetoConfig, groups: Any) -> str | None:
    """The veto's bad-pixel map ``FILE[:DATASET]``: ``cnn_veto.mask``, by default OM's peakfinder8
    ``bad_pixel_map`` (slab layout like the data, 1 = good, as OM reads it); None for none."""
    if config.mask is False:
        return None
    if isinstance(config.mask, str):
        return config.mask
    pf8 = _group(groups, "peakfinder8_peak_detection") or {}
    filename = pf8.get("bad_pixel_map_filename")
    if not filename:
        return None
    dataset = pf8.get("bad_pixel_map_hdf5_path")
    return f"{filename}:{dataset}" if dataset else filename


def startup_line(config: CnnVetoConfig, groups: Any, veto_geometry: VetoGeometry, metadata: Any) -> str:
    """:func:`status_line` for the model's crop, with the bad-pixel map the veto will use (never raises)."""
    spec = veto_mask_spec(config, groups) if metadata.use_mask else None
    mask = None
    if spec is not None:
        try:
            from sfx_cnn_veto.io.masks import load_mask_file

            mask = load_mask_file(spec)
        except Exception as exc:  # noqa: BLE001 - reported; the ranks fail open the same way
            return f"OM Warning: cnn_veto: bad-pixel map {spec} unreadable ({type(exc).__name__}: {exc})"
    return status_line(veto_geometry, metadata.crop_shape, mask=mask, mask_used=bool(metadata.use_mask))


def _group(groups: Any, name: str) -> dict | None:
    if isinstance(groups, dict):
        return groups.get(name)
    try:
        return groups.get_parameter_group(group=name)
    except Exception:  # noqa: BLE001 - OM raises OmMissingParameterGroupError
        return None
