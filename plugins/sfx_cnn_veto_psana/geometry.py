"""psana's detector geometry as the crop map's :class:`~sfx_cnn_veto.io.geometry.Geometry`.

psana describes a multi-panel detector by the position of every pixel centre:
``det.raw._pixel_coords(cframe=1)`` gives ``x, y, z`` arrays (micrometres)
shaped like the data, ``(segments, rows, cols)``. The crop map wants panels
that are regular grids. :func:`geometry_from_pixel_coords` cuts each segment
into *uniform tiles*: maximal blocks of pixels whose centres step by exactly
one pixel (the geometry's pixel size) along both axes. A segment splits where
the pitch jumps (gaps between ASICs, psana's wide pixels at ASIC edges), and
each tile becomes one :class:`~sfx_cnn_veto.io.geometry.Panel` with
``plane=(segment,)``, so the crop map indexes the ``(segments, ss, fs)`` array
psana returns, one gather per event, without assembling an image.

Coordinate frames (checked in psana 4.3.4's source, see
``examples/psana/README.md``): psana's default frame (``cframe=0``) is the
image-matrix frame, x along image rows (down), y along columns;
``cframe=1`` is the LAB frame, +y up, +z along the beam, x = y cross z.
CrystFEL's lab frame is the same right-handed frame (+z along the beam,
+y up), so LAB-frame coordinates divided by the pixel size are CrystFEL
``x``/``y`` in pixels, with the beam (psana's origin) at x = y = 0. psana's own
psana-to-CrystFEL converter
(``psana/pscalib/geometry/UtilsConvert.py::geometry_to_crystfel``) converts in
that frame too (its default ``cframe=CFRAME_LAB``). The crop (row i at
y = i + 0.5 - H/2, as everywhere in this package) is psana's own
``det.raw.image`` (``cframe=0``) turned by 180 degrees, not mirrored
(``tests/test_psana_panels.py`` checks it pixel by pixel).

A pixel wider than the pixel size sits alone between two cuts (psana's
JUNGFRAU:V2 puts its 150 um ASIC-edge pixels at their true centres, 1.5 and 2
pixels from their neighbours). It becomes a one-pixel tile as wide as the
distance to a neighbour of known width says (2 pixels for JUNGFRAU), so the
crop reads it over its whole area. (psana's own pixel
areas, ``GeometryAccess.get_pixel_areas``, cannot be used for this: for
JUNGFRAU:V2 they are built from ``np.arange`` and grow along the module.)
"""

from __future__ import annotations

import os

import numpy as np

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.geometry import Geometry, Panel

#: Largest difference, in pixels, between psana's pixel centres and the tiles' that is accepted.
TOLERANCE = 0.01


def lab_from_psana_frame(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LAB-frame ``(x, y)`` of psana-frame (``cframe=0``) coordinates.

    The same transformation as psana's ``GeometryAccess.coords_psana_to_lab_frame``:
    ``x_lab = -y_psana``, ``y_lab = -x_psana``.
    """
    return -np.asarray(y), -np.asarray(x)


def geometry_from_pixel_coords(
    x: np.ndarray,
    y: np.ndarray,
    pixel_size_um: float,
    *,
    source: str = "psana pixel coordinates",
    tolerance: float = TOLERANCE,
) -> Geometry:
    """The :class:`Geometry` whose panels are the uniform tiles of psana's pixel centres.

    Parameters
    ----------
    x, y : ndarray, shape (segments, ss, fs) or (ss, fs)
        LAB-frame pixel-centre coordinates in micrometres
        (``det.raw._pixel_coords(cframe=1)``), beam at ``x = y = 0``.
    pixel_size_um : float
        The regular pixel size (``GeometryAccess.get_pixel_scale_size()``);
        the crop is taken on a grid of this pitch.
    source : str
        Names the geometry in messages.
    tolerance : float
        Largest accepted difference, in pixels, between a pixel centre and
        where its tile puts it.

    Returns
    -------
    Geometry
        One panel per tile, ``plane=(segment,)``, ``res = 1e6 / pixel_size_um``;
        its :attr:`~Geometry.frame_shape` is ``x.shape`` (2-D input: one plane).

    Raises
    ------
    ConfigError
        If the arrays differ in shape, hold non-finite values, or a segment's
        centres are not a set of regular tiles (the message says which).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim not in (2, 3) or min(x.shape) < 1:
        raise ConfigError(f"{source}: expected x and y of one shape (segments, ss, fs), got {x.shape} and {y.shape}")
    if x.ndim == 2:
        x, y = x[None], y[None]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ConfigError(f"{source}: pixel coordinates contain NaN or infinite values")
    pixel = float(pixel_size_um)
    if not pixel > 0:
        raise ConfigError(f"{source}: pixel size must be positive, got {pixel_size_um}")
    px, py = x / pixel, y / pixel
    panels: list[Panel] = []
    for segment in range(px.shape[0]):
        panels += segment_tiles(segment, px[segment], py[segment], res=1e6 / pixel, tolerance=tolerance,
                                source=source)
    geometry = Geometry(tuple(panels), source=source)
    check_reproduces(geometry, px, py, tolerance=tolerance)
    return geometry


def segment_tiles(segment: int, x: np.ndarray, y: np.ndarray, *, res: float | None = None,
                  tolerance: float = TOLERANCE, source: str = "") -> list[Panel]:
    """The uniform tiles of one segment (pixel-unit centres ``x``, ``y`` of shape ``(ss, fs)``) as panels."""
    fs_tiles = line_tiles(x[0, :], y[0, :], tolerance)
    ss_tiles = line_tiles(x[:, 0], y[:, 0], tolerance)
    if fs_tiles is None or ss_tiles is None:
        raise ConfigError(f"{source}: segment {segment} has no two neighbouring pixels one pixel apart; "
                          "is the pixel size right?")
    panels = []
    for s0, s1, ss_vec in ss_tiles:
        for f0, f1, fs_vec in fs_tiles:
            if fs_vec is None or ss_vec is None:  # a segment one pixel wide: square pixels, axis-aligned
                fs_vec = fs_vec or (1.0, 0.0)
                ss_vec = ss_vec or (-fs_vec[1], fs_vec[0])
            corner_x = x[s0, f0] - 0.5 * (fs_vec[0] + ss_vec[0])
            corner_y = y[s0, f0] - 0.5 * (fs_vec[1] + ss_vec[1])
            panels.append(Panel(f"p{segment}a{len(panels)}", f0, f1, s0, s1, fs=fs_vec, ss=ss_vec,
                                corner_x=float(corner_x), corner_y=float(corner_y), res=res, plane=(segment,)))
    return panels


def line_tiles(x: np.ndarray, y: np.ndarray, tolerance: float = TOLERANCE):
    """Cut a line of pixel centres (pixel units) into tiles: ``[(first, last, step vector), ...]``.

    A tile is a maximal run of centres one pixel apart, all in one direction;
    its vector is its mean step. A pixel alone between two cuts (a wide pixel)
    gets the line's direction and the width that makes it touch a neighbour
    whose width is known (the smaller, when both sides give one: a gap only
    makes the estimate larger); 1 when none does. Returns None for a line of
    two or more pixels with no regular step (a wrong pixel size); the vector
    is None for a line of one pixel.
    """
    steps = np.stack([np.diff(x), np.diff(y)], axis=1)
    regular = np.abs(np.hypot(steps[:, 0], steps[:, 1]) - 1.0) <= tolerance
    if not regular.any():
        return None if len(x) > 1 else [(0, 0, None)]
    typical = np.median(steps[regular], axis=0)
    regular &= np.hypot(*(steps - typical).T) <= 2 * tolerance  # one pixel apart but another way: a cut
    unit = typical / np.hypot(*typical)
    bounds, start = [], 0
    for i, ok in enumerate(regular):
        if not ok:
            bounds.append((start, i))
            start = i + 1
    bounds.append((start, len(x) - 1))
    width = np.full(len(x), np.nan)
    for first, last in bounds:
        if last > first:
            width[first:last + 1] = np.hypot(x[last] - x[first], y[last] - y[first]) / (last - first)
    tiles = []
    for first, last in bounds:
        if last > first:
            n = last - first
            tiles.append((first, last, (float((x[last] - x[first]) / n), float((y[last] - y[first]) / n))))
            continue
        width[first] = _wide_pixel_width(first, x, y, unit, width, tolerance)
        tiles.append((first, last, (float(unit[0] * width[first]), float(unit[1] * width[first]))))
    return tiles


def _wide_pixel_width(i: int, x: np.ndarray, y: np.ndarray, unit: np.ndarray, width: np.ndarray,
                      tolerance: float) -> float:
    """Width of an isolated pixel ``i``: touching its neighbours of known width (2d - w), the smaller."""
    guesses = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(x) and np.isfinite(width[j]):
            distance = abs((x[i] - x[j]) * unit[0] + (y[i] - y[j]) * unit[1])
            guess = 2.0 * distance - width[j]
            if guess >= 1.0 - tolerance:
                guesses.append(guess)
    return float(min(guesses)) if guesses else 1.0


def check_reproduces(geometry: Geometry, x: np.ndarray, y: np.ndarray, *, tolerance: float = TOLERANCE) -> None:
    """Refuse tiles that do not put every pixel centre where psana does (a segment that is not a grid)."""
    mx, my = geometry.pixel_maps(x.shape)
    error = np.hypot(mx - x, my - y)
    worst = float(np.nanmax(error)) if np.isfinite(error).any() else np.inf
    if not worst <= tolerance or np.isnan(error).any():
        segment = int(np.unravel_index(np.nanargmax(np.where(np.isnan(error), np.inf, error)), x.shape)[0])
        raise ConfigError(
            f"{geometry.source}: the pixel centres of segment {segment} are not a set of regular tiles "
            f"(off by up to {worst:.3g} pixels); this detector's geometry cannot be used for the crop: "
            "pass its CrystFEL geometry (geometry=FILE.geom)"
        )


def detector_geometry(detector, *, source: str | None = None) -> Geometry | None:
    """The crop map's geometry of a psana2 detector from its own pixel coordinates, or None if it has none.

    Reads ``det.raw._pixel_coords(cframe=1)`` (LAB frame, micrometres, shaped
    like ``det.raw.raw(evt)``) and ``det.raw._det_geo().get_pixel_scale_size()``.
    Offline (``skip_calib_load="all"``) psana falls back to the detector
    type's default geometry file (``pscalib/geometry/data/geometry-def-*.data``);
    detectors without one (an Opal camera) give None.
    """
    raw = getattr(detector, "raw", None)
    if raw is None or not hasattr(raw, "_pixel_coords") or not hasattr(raw, "_det_geo"):
        return None
    try:
        geo = raw._det_geo()
        coords = None if geo is None else raw._pixel_coords(cframe=1)
        pixel = None if geo is None else geo.get_pixel_scale_size()
    except Exception:  # noqa: BLE001 - psana raises when a detector has no geometry file: no geometry
        return None
    if coords is None or pixel is None or coords[0] is None:
        return None
    name = source or f"psana geometry of {getattr(raw, '_det_name', 'the detector')}"
    return geometry_from_pixel_coords(coords[0], coords[1], float(pixel), source=name)



def is_psana_geometry_file(path: str) -> bool:
    """Whether ``path`` looks like a psana geometry constants file (``*.data``; CrystFEL's are ``*.geom``)."""
    return str(path).endswith(".data")


def read_psana_geometry(path: str) -> Geometry:
    """The crop map's geometry from a psana geometry constants file (``calib/.../geometry/*.data``).

    Read with psana's own ``GeometryAccess(path)``; pixel coordinates in the
    LAB frame (``get_pixel_coords(cframe=1)``), pixel size from
    ``get_pixel_scale_size()``. For psana1 and psana2 alike (the file format
    is shared), and for refined constants that offline psana2 does not load
    (``skip_calib_load="all"`` leaves it the detector type's default geometry).
    """
    try:
        from psana.pscalib.geometry.GeometryAccess import GeometryAccess
    except ImportError as exc:
        from sfx_cnn_veto.errors import MissingDependencyError

        raise MissingDependencyError(f"reading psana geometry {path} needs psana2 (pip install psana): {exc}") from exc
    if not os.path.isfile(path):
        raise ConfigError(f"psana geometry {path!r}: no such file")
    try:
        geo = GeometryAccess(str(path))
        x, y, _ = geo.get_pixel_coords(cframe=1)
        pixel = geo.get_pixel_scale_size()
    except Exception as exc:  # noqa: BLE001 - psana's parser raises anything on a malformed file
        raise ConfigError(f"psana geometry {path!r} cannot be read by psana's GeometryAccess "
                          f"({type(exc).__name__}: {exc})") from exc
    if x.ndim > 3:  # e.g. (quads, segments, ss, fs): psana's data arrays are (segments, ss, fs)
        x, y = x.reshape((-1,) + x.shape[-2:]), y.reshape((-1,) + y.shape[-2:])
    return geometry_from_pixel_coords(x, y, float(pixel), source=str(path))
