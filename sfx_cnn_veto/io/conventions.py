"""Detector file conventions: where a CBF or NeXus file keeps its beam centre and its bad-pixel mask.

Pixel convention of this package: positions are continuous, pixel ``(r, c)``
covers ``[r, r + 1) x [c, c + 1)``, so its centre is ``(r + 0.5, c + 0.5)``
and the centre of an ``H x W`` frame is ``(H / 2, W / 2)``. Positions are
``(row, col)`` = (slow scan, fast scan).

PILATUS miniCBF, header line ``# Beam_xy (x, y) pixels``
    DECTRIS' PILATUS CBF header specification (dectris.com, "PILATUS CBF"
    header documentation): keyword, two values, unit ``pixels``, split on
    spaces and the space-equivalent characters ``#=:,()``. ``x`` runs along
    the fast scan (the columns of the array), ``y`` along the slow scan (the
    rows). The origin is the outer corner of the first pixel: dxtbx builds
    its PILATUS detector with the beam at ``(Beam_x * pixel_x, Beam_y *
    pixel_y)`` mm from the corner of pixel (0, 0)
    (``dxtbx/format/FormatCBFMiniPilatus.py``, ``_detector``), and writes
    ``Beam_xy`` back as its ``get_beam_centre_px``, whose pixel (0, 0) spans
    0..1 (``dxtbx/format/FormatCBFMini.py``, ``as_file``). That is this
    package's convention: ``(row, col) = (y, x)``, no half-pixel shift.
NeXus / EIGER master files, ``/entry/instrument/detector/beam_center_x`` and ``beam_center_y``
    NXdetector (NeXus base class): "the x (y) position where the direct beam
    would hit the detector", in pixels or a length given by the field's
    ``units`` attribute; DECTRIS writes ``units = "pixel"``, ``x`` along the
    fast scan, and the same corner origin (dxtbx and pyFAI both take
    ``beam_center * pixel_size`` as the distance from the detector's edge).
    So again ``(row, col) = (beam_center_y, beam_center_x)``. A length unit
    (``m``, ``mm``, ``um``) is divided by ``x_pixel_size``/``y_pixel_size``.
NeXus / EIGER ``/entry/instrument/detector/pixel_mask``
    Nonzero = bad (DECTRIS' bits: 1 gap, 2 dead, 4 under-responding, 8
    over-responding, 16 noisy; any set bit excludes the pixel). Read by
    :func:`sfx_cnn_veto.io.masks.own_mask`.

Nothing is cached: each call reads a few kilobytes (the CBF text header, two
HDF5 scalars).
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import warnings

from sfx_cnn_veto.errors import FrameReadError

#: Where a NeXus (EIGER master) file keeps its detector's bad pixels; nonzero = bad.
NEXUS_PIXEL_MASK = "/entry/instrument/detector/pixel_mask"
#: The NeXus detector group holding ``beam_center_x``/``beam_center_y``.
NEXUS_DETECTOR = "/entry/instrument/detector"

CBF_SUFFIXES = (".cbf", ".cbf.gz", ".cbf.bz2")
NEXUS_SUFFIXES = (".h5", ".hdf5", ".nxs", ".nx5", ".cxi")

#: The text header of a miniCBF ends where its binary section starts; read at most this much.
_CBF_HEADER_BYTES = 1 << 16
_CBF_BINARY = b"--CIF-BINARY-FORMAT-SECTION--"
_SPACE_EQUIVALENT = re.compile(r"[#=:,()\s]+")
_LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "microns": 1e-6, "nm": 1e-9}


def own_beam_center(path: str) -> tuple[float, float] | None:
    """The beam centre ``(row, col)`` a data file states (this package's pixel convention), or None.

    Parameters
    ----------
    path : str
        A PILATUS miniCBF (``Beam_xy`` header line) or a NeXus/EIGER master
        file (``beam_center_x``/``beam_center_y`` of its detector). Other
        formats, and files without the information, give None.

    Returns
    -------
    (float, float) or None
        ``(row, col)``: see the module docstring for the conversion and its sources.

    Raises
    ------
    FrameReadError
        If the file cannot be read (its frames could not be either).
    """
    path = os.fspath(path)
    name = path.lower()
    if name.endswith(CBF_SUFFIXES):
        xy = cbf_beam_xy(path)
    elif name.endswith(NEXUS_SUFFIXES):
        xy = nexus_beam_xy(path)
    else:
        return None
    if xy is None:
        return None
    x, y = xy
    return (y, x)


def _cbf_header(path: str) -> bytes:
    opener = gzip.open if path.lower().endswith(".gz") else bz2.open if path.lower().endswith(".bz2") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(_CBF_HEADER_BYTES)
    except OSError as exc:
        raise FrameReadError(f"{path}: cannot read the CBF header ({exc})") from exc
    return head.split(_CBF_BINARY, 1)[0]


def cbf_beam_xy(path: str) -> tuple[float, float] | None:
    """``(x, y)`` of a miniCBF's ``# Beam_xy (x, y) pixels`` line, as written (fast, slow); None if absent."""
    for raw in _cbf_header(path).splitlines():
        line = raw.decode("ascii", "replace")
        if "Beam_xy" not in line:
            continue
        tokens = [t for t in _SPACE_EQUIVALENT.split(line) if t]
        if len(tokens) < 3 or tokens[0] != "Beam_xy":
            continue
        try:
            x, y = float(tokens[1]), float(tokens[2])
        except ValueError:
            warnings.warn(f"{path}: unreadable Beam_xy header line {line.strip()!r}; not used", stacklevel=2)
            return None
        unit = tokens[3] if len(tokens) > 3 else "pixels"
        if unit not in ("pixels", "pixel"):
            warnings.warn(f"{path}: Beam_xy in {unit!r}, expected pixels; not used", stacklevel=2)
            return None
        return x, y
    return None


def _unit(node) -> str:
    unit = node.attrs.get("units", b"")
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    return str(unit).strip()


def _pixels(group, name: str, size_name: str, path: str) -> float | None:
    """``group[name]`` in pixels: as is when its unit is pixels (or none), else divided by ``group[size_name]``."""
    import numpy as np

    node = group[name]
    value = float(np.asarray(node[()]).reshape(-1)[0])
    unit = _unit(node)
    if unit.lower() in ("", "pixel", "pixels", "px"):
        return value
    if unit in _LENGTH_UNITS and size_name in group:
        size_node = group[size_name]
        size_unit = _unit(size_node) or "m"
        if size_unit in _LENGTH_UNITS:
            size = float(np.asarray(size_node[()]).reshape(-1)[0]) * _LENGTH_UNITS[size_unit]
            if size > 0:
                return value * _LENGTH_UNITS[unit] / size
    warnings.warn(f"{path}: {group.name}/{name} in {unit!r} and no usable {size_name}; beam centre not used",
                  stacklevel=3)
    return None


def nexus_beam_xy(path: str) -> tuple[float, float] | None:
    """``(beam_center_x, beam_center_y)`` of a NeXus file's detector, in pixels; None if absent."""
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as handle:
            group = handle.get(NEXUS_DETECTOR)
            if group is None or "beam_center_x" not in group or "beam_center_y" not in group:
                return None
            x = _pixels(group, "beam_center_x", "x_pixel_size", path)
            y = _pixels(group, "beam_center_y", "y_pixel_size", path)
    except OSError as exc:
        raise FrameReadError(f"{path}: cannot read the NeXus beam centre ({exc})") from exc
    if x is None or y is None:
        return None
    return x, y
