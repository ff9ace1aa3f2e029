"""CrystFEL geometry files: one parser for every host (the crop map, ``label``, OM, psana, the simulator).

A detector's data reach us as a *raw slab*: panels laid side by side in one
array, in the order the DAQ writes them. A ``.geom`` file says where each
panel's pixels sit in the lab: panel ``p`` covers slab rows ``min_ss..max_ss``
and columns ``min_fs..max_fs``; its first pixel's outer corner is at
``(corner_x, corner_y)`` and one step along the fast (slow) scan moves by the
vector ``fs`` (``ss``), all in pixel units with the beam at ``x = y = 0``.

Pixel convention (the one used everywhere in this package): positions are
continuous, pixel ``i`` spans ``[i, i + 1)`` along each axis and its centre is
``i + 0.5``. So a panel's pixel ``(ss, fs)`` has its centre at
``corner + (fs - min_fs + 0.5) * fs_vec + (ss - min_ss + 0.5) * ss_vec``,
and a single panel with ``corner = (-cx, -cy)`` and axis-aligned ``+x``/``+y``
vectors has the beam at ``(row, col) = (cy, cx)``: the centre of an HxW frame
is ``(H/2, W/2)``.

What is read (CrystFEL 0.9 and 0.10 syntax): per panel ``min/max_fs/ss``,
``fs``/``ss`` (any direction, e.g. ``-0.003266x -0.999993y``),
``corner_x/y``, ``res``, ``data``, ``dim0..dim3`` (``%``, ``ss``, ``fs`` or a
panel index), ``mask``, ``mask_file``, ``mask_good``/``mask_bad`` (and 0.10's
``mask0_data``/``mask0_file``/``mask0_goodbits``/``mask0_badbits``),
``no_index``; ``bad_*`` regions in lab (``min_x``...) or slab
(``min_fs``..., optionally ``panel``) coordinates. Keys without a panel are
defaults for the panels named after them, as in CrystFEL. ``rigid_group*``,
``clen``, ``photon_energy``... are kept in :attr:`Geometry.globals`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError

_VECTOR_TERM = re.compile(r"([+-]?)\s*(\d*\.?\d*(?:[eE][+-]?\d+)?)\s*([xyz])")


@dataclass(frozen=True)
class Panel:
    """One panel: where its pixels are in the slab and in the lab."""

    name: str
    min_fs: int
    max_fs: int
    min_ss: int
    max_ss: int
    fs: tuple[float, float] = (1.0, 0.0)
    ss: tuple[float, float] = (0.0, 1.0)
    corner_x: float = 0.0
    corner_y: float = 0.0
    res: float | None = None
    data: str | None = None
    #: the per-event frame's leading panel indices (``dimN = 3`` keys), empty for a 2-D slab
    plane: tuple[int, ...] = ()
    #: ``(dataset, file or None, good bits or None, bad bits or None)``, or None
    mask: tuple[str, str | None, int | None, int | None] | None = None
    no_index: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(slow, fast)`` size in pixels."""
        return (self.max_ss - self.min_ss + 1, self.max_fs - self.min_fs + 1)

    def lab_positions(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of every pixel centre, shape :attr:`shape`, in pixel units times ``scale``."""
        ss, fs = np.mgrid[0:self.shape[0], 0:self.shape[1]].astype(np.float64) + 0.5
        x = self.corner_x + fs * self.fs[0] + ss * self.ss[0]
        y = self.corner_y + fs * self.fs[1] + ss * self.ss[1]
        return x * scale, y * scale

    def to_panel(self, x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Continuous ``(fs, ss)`` panel coordinates (0 at the first pixel's outer corner) of lab points."""
        matrix = np.array([[self.fs[0], self.ss[0]], [self.fs[1], self.ss[1]]], dtype=np.float64)
        det = float(np.linalg.det(matrix))
        if abs(det) < 1e-9:
            raise ConfigError(f"panel {self.name}: fs {self.fs} and ss {self.ss} are parallel")
        inverse = np.linalg.inv(matrix)
        dx = np.asarray(x, dtype=np.float64) / scale - self.corner_x
        dy = np.asarray(y, dtype=np.float64) / scale - self.corner_y
        return inverse[0, 0] * dx + inverse[0, 1] * dy, inverse[1, 0] * dx + inverse[1, 1] * dy


@dataclass(frozen=True)
class BadRegion:
    """A ``bad_*`` region: a lab rectangle (``x``/``y``) or a slab rectangle (``fs``/``ss``)."""

    name: str
    min_x: float | None = None
    max_x: float | None = None
    min_y: float | None = None
    max_y: float | None = None
    min_fs: int | None = None
    max_fs: int | None = None
    min_ss: int | None = None
    max_ss: int | None = None
    panel: str | None = None

    @property
    def in_lab(self) -> bool:
        return self.min_x is not None


@dataclass(frozen=True)
class Geometry:
    """A parsed CrystFEL geometry (see the module docstring)."""

    panels: tuple[Panel, ...]
    bad_regions: tuple[BadRegion, ...] = ()
    globals: dict[str, str] = field(default_factory=dict)
    source: str = ""

    # -- shape ---------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one event's raw slab: ``(max_ss + 1, max_fs + 1)``, with panel planes in front."""
        planes = [p.plane for p in self.panels]
        rows = max(p.max_ss for p in self.panels) + 1
        cols = max(p.max_fs for p in self.panels) + 1
        if not any(planes):
            return (rows, cols)
        depth = len(planes[0])
        lead = tuple(max(pl[i] for pl in planes) + 1 for i in range(depth))
        return lead + (rows, cols)

    @property
    def reference_res(self) -> float | None:
        """Pixels per metre of the lab grid the crop is taken on: the first panel's ``res``."""
        return self.panels[0].res

    def scale(self, panel: Panel) -> float:
        """Factor from ``panel``'s pixel units to the reference pixel (1 when the ``res`` are equal or unknown)."""
        ref = self.reference_res
        if ref is None or panel.res is None:
            return 1.0
        return ref / panel.res

    def check_frame(self, frame_shape: Sequence[int], *, source: str = "") -> None:
        """Refuse a slab smaller than the geometry's panels, naming both shapes."""
        want = self.frame_shape
        got = tuple(int(v) for v in frame_shape)
        if len(got) != len(want) or any(g < w for g, w in zip(got, want)):
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}frame of shape {got} does not fit geometry {self.source or '(given)'}, whose "
                f"{len(self.panels)} panels need a slab of {want}; is it the geometry of this detector?"
            )

    # -- where pixels are ----------------------------------------------------
    def flat_index(self, panel: Panel, ss: np.ndarray, fs: np.ndarray, frame_shape: Sequence[int]) -> np.ndarray:
        """Flat indices into a per-event frame of ``frame_shape`` of ``panel``'s pixels ``(ss, fs)`` (panel-relative)."""
        rows = np.asarray(ss) + panel.min_ss
        cols = np.asarray(fs) + panel.min_fs
        index = rows * int(frame_shape[-1]) + cols
        if panel.plane:
            plane = int(np.ravel_multi_index(panel.plane, tuple(frame_shape[:-2])))
            index = index + plane * int(frame_shape[-2]) * int(frame_shape[-1])
        return index

    def pixel_maps(self, frame_shape: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Lab ``(x, y)`` of every slab pixel's centre in reference pixels (NaN where no panel)."""
        shape = tuple(frame_shape) if frame_shape is not None else self.frame_shape
        x = np.full(int(np.prod(shape)), np.nan)
        y = np.full(int(np.prod(shape)), np.nan)
        for panel in self.panels:
            px, py = panel.lab_positions(self.scale(panel))
            ss, fs = np.mgrid[0:panel.shape[0], 0:panel.shape[1]]
            index = self.flat_index(panel, ss, fs, shape)
            x[index.ravel()] = px.ravel()
            y[index.ravel()] = py.ravel()
        return x.reshape(shape), y.reshape(shape)

    @property
    def single_panel(self) -> bool:
        return len(self.panels) == 1

    def beam_center(self) -> tuple[float, float] | None:
        """Beam ``(row, col)`` of a single, axis-aligned panel (``+x`` fast, ``+y`` slow), else None."""
        if not self.single_panel:
            return None
        p = self.panels[0]
        if not (np.allclose(p.fs, (1.0, 0.0)) and np.allclose(p.ss, (0.0, 1.0))):
            return None
        return (p.min_ss - p.corner_y, p.min_fs - p.corner_x)

    def good_pixels(self, frame_shape: Sequence[int] | None = None, data_file: str | None = None) -> np.ndarray:
        """Good-pixel mask (bool) of the slab: panels' masks, ``no_index`` panels and bad regions.

        Pixels outside every panel are bad. ``data_file`` is the file a mask
        with no ``mask_file`` is read from.
        """
        from sfx_cnn_veto.io.masks import mask_from_bits, read_mask_dataset

        shape = tuple(frame_shape) if frame_shape is not None else self.frame_shape
        good = np.zeros(int(np.prod(shape)), dtype=bool)
        masks: dict[tuple[str, str | None], np.ndarray] = {}
        for panel in self.panels:
            ss, fs = np.mgrid[0:panel.shape[0], 0:panel.shape[1]]
            index = self.flat_index(panel, ss, fs, shape).ravel()
            if panel.no_index:
                continue
            good[index] = True
            if panel.mask is not None:
                dataset, mask_file, good_bits, bad_bits = panel.mask
                path = mask_file or data_file
                if path is None:  # frames given in memory: the caller passes their mask (Veto(mask=...))
                    _warn_once(f"geometry {self.source}: panel masks ({dataset}) are read from each data file; "
                               "frames given in memory get only the mask passed with them")
                    continue
                key = (dataset, path)
                if key not in masks:
                    masks[key] = read_mask_dataset(path, dataset, shape)
                raw = masks[key].reshape(-1)[index]
                good[index] &= mask_from_bits(raw, good_bits, bad_bits)
        good = good.reshape(shape)
        self._apply_bad_regions(good)
        return good

    def _apply_bad_regions(self, good: np.ndarray) -> None:
        if not self.bad_regions:
            return
        x, y = self.pixel_maps(good.shape)
        rows = np.broadcast_to(np.arange(good.shape[-2])[:, None], good.shape[-2:])
        cols = np.broadcast_to(np.arange(good.shape[-1])[None, :], good.shape[-2:])
        for region in self.bad_regions:
            if region.in_lab:
                inside = ((x >= region.min_x) & (x <= region.max_x) & (y >= region.min_y) & (y <= region.max_y))
                good[inside] = False
                continue
            inside = ((cols >= region.min_fs) & (cols <= region.max_fs)
                      & (rows >= region.min_ss) & (rows <= region.max_ss))
            if region.panel is not None:
                panel = self.panel(region.panel)
                plane = good[panel.plane] if panel.plane else good
                own = np.zeros(plane.shape, dtype=bool)
                own[panel.min_ss:panel.max_ss + 1, panel.min_fs:panel.max_fs + 1] = True
                plane[inside & own] = False
            else:
                good[..., inside] = False

    def panel(self, name: str) -> Panel:
        for panel in self.panels:
            if panel.name == name:
                return panel
        raise ConfigError(f"geometry {self.source}: no panel {name!r}")

    def float_global(self, key: str) -> float | None:
        """A numeric global value (``clen``, ``photon_energy``, ``adu_per_photon``...), None if absent or a path."""
        try:
            return float(self.globals[key])
        except (KeyError, ValueError):
            return None


_WARNED: set[str] = set()


def _warn_once(text: str) -> None:
    import warnings

    if text not in _WARNED:
        _WARNED.add(text)
        warnings.warn(text, stacklevel=3)


# ---------------------------------------------------------------------------
# Parsing

def parse_vector(text: str, *, where: str = "") -> tuple[float, float]:
    """``"+0.0031x +1.0000y"`` -> ``(0.0031, 1.0)`` (a ``z`` term is ignored)."""
    compact = text.replace(" ", "")
    terms = _VECTOR_TERM.findall(compact)
    if not terms or "".join(s + c + a for s, c, a in terms) != compact:
        raise ConfigError(f"{where}: cannot read direction {text!r} (expected e.g. '+1.0x', '-0.0031x +1.0y')")
    out = {"x": 0.0, "y": 0.0, "z": 0.0}
    for sign, coef, axis in terms:
        value = float(coef) if coef not in ("", ".") else 1.0
        out[axis] += -value if sign == "-" else value
    return (out["x"], out["y"])


def _key_lines(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


_MASK0 = {"mask0_data": "mask", "mask0_file": "mask_file", "mask0_goodbits": "mask_good",
          "mask0_badbits": "mask_bad"}


def parse_geometry(text: str, *, source: str = "") -> Geometry:
    """Parse the text of a CrystFEL ``.geom`` file (see the module docstring)."""
    defaults: dict[str, str] = {}
    globals_: dict[str, str] = {}
    panels: dict[str, dict[str, str]] = {}
    bad: dict[str, dict[str, str]] = {}
    for key, value in _key_lines(text):
        if "/" not in key:
            key = _MASK0.get(key, key)
            globals_[key] = value
            defaults[key] = value
            continue
        prefix, _, name = key.partition("/")
        name = _MASK0.get(name, name)
        if prefix.startswith("bad"):
            bad.setdefault(prefix, {})[name] = value
            continue
        if prefix not in panels:
            panels[prefix] = dict(defaults)
        panels[prefix][name] = value
    if not panels:
        raise ConfigError(f"geometry {source or '(text)'}: no panels (expected lines like 'p0/min_fs = 0')")
    built = tuple(_panel(name, keys, source) for name, keys in panels.items())
    regions = tuple(_bad_region(name, keys, source) for name, keys in bad.items())
    return Geometry(built, regions, globals_, source)


def read_geometry(path: str) -> Geometry:
    """Read and parse a CrystFEL ``.geom`` file; a clear :class:`ConfigError` if it cannot be used."""
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot open geometry {path!r}: {exc.strerror or exc}") from exc
    return parse_geometry(text, source=str(path))


def _number(keys: dict[str, str], name: str, where: str, kind: type = float, default: Any = None) -> Any:
    if name not in keys:
        if default is None:
            raise ConfigError(f"{where}: missing {name}")
        return default
    try:
        value = float(keys[name])
        return int(value) if kind is int else value
    except ValueError as exc:
        raise ConfigError(f"{where}: {name} = {keys[name]!r} is not a number") from exc


def _bits(text: str | None) -> int | None:
    return None if text is None else int(text, 0)


def _dims(keys: dict[str, str], where: str) -> tuple[int, ...]:
    """The panel-index dimensions (``dimN = K``) before ``ss`` and ``fs``."""
    dims = {int(k[3:]): v for k, v in keys.items() if re.fullmatch(r"dim\d", k)}
    if not dims:
        return ()
    order = [dims[i] for i in sorted(dims)]
    layout = [v for v in order if v != "%"]
    if layout[-2:] != ["ss", "fs"]:
        raise ConfigError(f"{where}: dimensions {order}: expected ss and fs last")
    try:
        return tuple(int(v) for v in layout[:-2])
    except ValueError as exc:
        raise ConfigError(f"{where}: dimensions {order}: expected panel indices before ss and fs") from exc


def _panel(name: str, keys: dict[str, str], source: str) -> Panel:
    where = f"geometry {source or '(text)'}, panel {name}"
    mask = None
    if keys.get("mask"):
        mask = (keys["mask"], keys.get("mask_file") or None, _bits(keys.get("mask_good")),
                _bits(keys.get("mask_bad")))
    no_index = keys.get("no_index", "0").strip().lower() in ("1", "true", "yes")
    res = _number(keys, "res", where, default=math.nan)
    return Panel(
        name=name,
        min_fs=_number(keys, "min_fs", where, int), max_fs=_number(keys, "max_fs", where, int),
        min_ss=_number(keys, "min_ss", where, int), max_ss=_number(keys, "max_ss", where, int),
        fs=parse_vector(keys.get("fs", "+1.0x"), where=where),
        ss=parse_vector(keys.get("ss", "+1.0y"), where=where),
        corner_x=_number(keys, "corner_x", where, default=0.0),
        corner_y=_number(keys, "corner_y", where, default=0.0),
        res=None if math.isnan(res) else res,
        data=keys.get("data"),
        plane=_dims(keys, where),
        mask=mask,
        no_index=no_index,
    )


def _bad_region(name: str, keys: dict[str, str], source: str) -> BadRegion:
    where = f"geometry {source or '(text)'}, {name}"
    if "min_x" in keys:
        return BadRegion(name, *(_number(keys, k, where) for k in ("min_x", "max_x", "min_y", "max_y")))
    values = {k: _number(keys, k, where, int) for k in ("min_fs", "max_fs", "min_ss", "max_ss")}
    return BadRegion(name, panel=keys.get("panel"), **values)


# ---------------------------------------------------------------------------
# Writing and simple geometries

def single_panel_geometry(frame_shape: Sequence[int], center: Sequence[float] | None = None,
                          *, res: float | None = None) -> Geometry:
    """The geometry of one axis-aligned panel of ``frame_shape`` with the beam at ``center`` (row, col)."""
    height, width = int(frame_shape[-2]), int(frame_shape[-1])
    cy, cx = (height / 2.0, width / 2.0) if center is None else (float(center[0]), float(center[1]))
    panel = Panel("p0", 0, width - 1, 0, height - 1, corner_x=-cx, corner_y=-cy, res=res)
    return Geometry((panel,), source=f"single panel {height}x{width}")


def format_geometry(geometry: Geometry, *, header: dict[str, Any] | None = None) -> str:
    """CrystFEL ``.geom`` text of ``geometry`` (``header``: global keys such as ``clen``, ``data``, ``dim0``)."""
    lines = [f"{key} = {value}" for key, value in (header or {}).items()]
    for panel in geometry.panels:
        lines.append("")
        values = {
            "min_fs": panel.min_fs, "max_fs": panel.max_fs, "min_ss": panel.min_ss, "max_ss": panel.max_ss,
            "fs": _format_vector(panel.fs), "ss": _format_vector(panel.ss),
            "corner_x": f"{panel.corner_x:.6g}", "corner_y": f"{panel.corner_y:.6g}",
        }
        if panel.res is not None:
            values["res"] = f"{panel.res:.8g}"
        if panel.no_index:
            values["no_index"] = 1
        if panel.plane:  # (events, planes..., ss, fs)
            values["dim0"] = "%"
            for offset, index in enumerate(panel.plane):
                values[f"dim{offset + 1}"] = index
            values[f"dim{len(panel.plane) + 1}"] = "ss"
            values[f"dim{len(panel.plane) + 2}"] = "fs"
        lines += [f"{panel.name}/{key} = {value}" for key, value in values.items()]
    for region in geometry.bad_regions:
        lines.append("")
        names = ("min_x", "max_x", "min_y", "max_y") if region.in_lab else ("min_fs", "max_fs", "min_ss", "max_ss")
        lines += [f"{region.name}/{key} = {getattr(region, key)}" for key in names]
        if region.panel:
            lines.append(f"{region.name}/panel = {region.panel}")
    return "\n".join(lines).lstrip("\n") + "\n"


def write_geometry(path: str, geometry: Geometry, *, header: dict[str, Any] | None = None) -> None:
    """Write ``geometry`` as a CrystFEL ``.geom`` file."""
    with open(path, "w") as handle:
        handle.write(format_geometry(geometry, header=header))


def _format_vector(vector: tuple[float, float]) -> str:
    return f"{vector[0]:+.6f}x {vector[1]:+.6f}y"


def moved(geometry: Geometry, *, dx: float = 0.0, dy: float = 0.0) -> Geometry:
    """``geometry`` with every panel shifted by ``(dx, dy)`` pixels (a beam-centre correction)."""
    panels = tuple(replace(p, corner_x=p.corner_x + dx, corner_y=p.corner_y + dy) for p in geometry.panels)
    return replace(geometry, panels=panels)
