"""Crop-map timings for the benchmark: building a detector's :class:`~sfx_cnn_veto.core.crop.CropMap` once,
and taking one frame's crop through it (the per-frame cost the veto adds for a multi-panel raw slab).

``crop_map_timings()`` times a single-panel frame (a rectangle: the crop is a copy) against the
simulator's multi-panel layouts (:mod:`sfx_cnn_veto.simulate.panels`); pass other geometries
(e.g. ``read_geometry("cspad.geom")``) by name.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np

from sfx_cnn_veto.core.crop import DEFAULT_CROP, CropMapper


def default_layouts(frame_shape: Sequence[int] = (700, 700)) -> dict[str, Any]:
    """The layouts timed by default: ``None`` is a single-panel frame of ``frame_shape``."""
    from sfx_cnn_veto.simulate.panels import cspad_like_geometry, eight_panel_geometry, jungfrau4m_geometry

    return {
        f"single panel {frame_shape[0]}x{frame_shape[1]}": None,
        "eight panels": eight_panel_geometry(frame_shape),
        "CSPAD-like, 64 ASICs": cspad_like_geometry(frame_shape),
        "JUNGFRAU 4M-like, 8 modules": jungfrau4m_geometry(),
    }


def crop_map_timings(layouts: Mapping[str, Any] | None = None, *, crop: Sequence[int] = DEFAULT_CROP,
                     frame_shape: Sequence[int] = (700, 700), repeats: int = 50, seed: int = 0) -> list[dict]:
    """One row per layout: panels, slab shape, crop-map build time (ms), crop time per frame (us, median
    of ``repeats``), and the crop's fraction in gaps or bad pixels."""
    layouts = default_layouts(frame_shape) if layouts is None else layouts
    rng = np.random.default_rng(seed)
    rows = []
    for name, geometry in layouts.items():
        shape = tuple(frame_shape) if geometry is None else geometry.frame_shape
        frame = rng.normal(10.0, 3.0, shape).astype(np.float32)
        start = time.perf_counter()
        cmap = CropMapper(crop, geometry=geometry)(shape)
        build = time.perf_counter() - start
        times = []
        for _ in range(max(int(repeats), 1)):
            start = time.perf_counter()
            cmap(frame)
            times.append(time.perf_counter() - start)
        rows.append({
            "layout": name,
            "panels": 1 if geometry is None else len(geometry.panels),
            "slab": list(shape),
            "build_ms": round(build * 1e3, 3),
            "crop_us": round(float(np.median(times)) * 1e6, 1),
            "gap_fraction": round(cmap.bad_fraction, 4),
        })
    return rows


def timings_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`crop_map_timings` as a Markdown table."""
    lines = ["| layout | panels | slab | crop map build (ms) | crop per frame (us) | crop in gaps |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['layout']} | {r['panels']} | {'x'.join(map(str, r['slab']))} | {r['build_ms']:.1f} | "
                     f"{r['crop_us']:.0f} | {r['gap_fraction']:.1%} |")
    return "\n".join(lines)


def real_geometry_path() -> str | None:
    """The real 64-panel geometry beside the clone (``../shared/real/geometry/jungfrau4M.geom``: the LCLS CSPAD), if there."""
    import os
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "shared" / "real" / "geometry" / "jungfrau4M.geom"
    return str(path) if os.path.exists(path) else None


def bench_crop_map(geometry_path: str | None, crop: Sequence[int] = DEFAULT_CROP, *, repeats: int = 200,
                   seed: int = 0) -> dict[str, Any]:
    """Per-frame cost of the crop-map gather from a raw multi-panel slab: the ``crop_map_ms`` of the bench.

    ``from_slab``: the crop of a full raw slab in memory (OM, psana: the block
    copied out of the slab, then gathered); ``from_block``: from the block as
    the score path reads it from a file. Without ``geometry_path``, the
    simulator's CSPAD-like 64-ASIC layout (named so in ``layout``).
    """
    from sfx_cnn_veto.bench.timing import stats

    if geometry_path is not None:
        from sfx_cnn_veto.io.geometry import read_geometry

        geometry, layout = read_geometry(geometry_path), geometry_path
    else:
        from sfx_cnn_veto.simulate.panels import cspad_like_geometry

        geometry, layout = cspad_like_geometry((1750, 1750)), "simulated CSPAD-like 64 ASICs (no real geometry found)"
    shape = geometry.frame_shape
    frame = np.random.default_rng(seed).normal(10.0, 3.0, shape).astype(np.float32)
    start = time.perf_counter()
    cmap = CropMapper(crop, geometry=geometry)(shape)
    build = time.perf_counter() - start
    block = np.ascontiguousarray(cmap.block(frame))
    out: dict[str, Any] = {"layout": layout, "panels": len(geometry.panels), "slab": list(shape),
                           "block": list(cmap.block_shape), "crop": list(cmap.shape),
                           "build_ms": build * 1e3, "gap_fraction": cmap.bad_fraction}
    for name, func in (("from_slab", lambda: cmap(frame)), ("from_block", lambda: cmap.gather(block))):
        func()
        seconds = []
        for _ in range(max(int(repeats), 1)):
            start = time.perf_counter()
            func()
            seconds.append(time.perf_counter() - start)
        out[name] = stats(seconds)
    return out
