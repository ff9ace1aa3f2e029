"""Pictures of frames: the whole frame and the network's crop, side by side, log-scaled.

``render_frame(frame, path, ...)`` is the library call (the demo uses it for
its gallery of hits, misses and mistakes); ``sfx-cnn-veto show FILE //N`` reads
one event, optionally scores it with a model, and writes a PNG.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Mapping, Sequence

import numpy as np

from sfx_cnn_veto.core.crop import DEFAULT_CROP, crop_region
from sfx_cnn_veto.core.normalize import noise_scale


def display_scale(frame: np.ndarray) -> np.ndarray:
    """``log10(1 + max(frame - median - 2 sigma, 0))`` with a robust sigma (MAD): the
    read-noise floor and panel offsets go dark; photons, spots and rings stand out."""
    frame = np.asarray(frame, dtype=np.float32)
    finite = np.isfinite(frame)
    values = frame[finite][::7] if finite.any() else np.zeros(1, np.float32)
    base, sigma = (float(v) for v in noise_scale(values, subsample=1))
    floor = base + 2.0 * sigma
    return np.log10(1.0 + np.clip(np.where(finite, frame, base) - floor, 0.0, None))


def render_frame(
    frame: np.ndarray,
    path: str,
    *,
    crop_shape: Sequence[int] = DEFAULT_CROP,
    crop_center: Sequence[float] | None = None,
    title: str = "",
    decision: Any = None,
    truth: Mapping[str, Any] | None = None,
    dpi: int = 80,
    what: str = "frame",
) -> str:
    """Write a PNG of ``frame`` (left, with the crop outlined) and its crop (right).

    Parameters
    ----------
    frame : 2-D array
    path : output PNG file
    crop_shape, crop_center : the network's crop (default: 350x350 at the frame centre)
    title : first line of the title (e.g. ``"run90.cxi //3"``)
    decision : a :class:`~sfx_cnn_veto.core.pipeline.Decision`, shown with its score
    truth : a truth record (``crystal``, ``n_crystals``, ``n_spots`` ...), shown if given
    what : the left panel's name (``"frame"``; :func:`render_slab` says how it was assembled)
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    frame = np.asarray(frame)
    rows, cols = crop_region(frame.shape, crop_shape, crop_center)
    shown = display_scale(frame)
    crop = display_scale(frame[rows, cols])      # its own median: the crop is darker than the rings
    # a large frame is max-binned for the left panel, so one-pixel spots stay visible
    factor = max(1, int(np.ceil(max(frame.shape) / 480.0)))
    binned = _max_bin(shown, factor)
    vmax = max(float(np.percentile(shown, 99.97)), 2.0)
    vmax_crop = max(float(np.percentile(crop, 99.9)), 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), dpi=dpi)
    height, width = frame.shape
    axes[0].imshow(binned, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest", origin="upper",
                   extent=(-0.5, binned.shape[1] * factor - 0.5, binned.shape[0] * factor - 0.5, -0.5))
    axes[0].add_patch(Rectangle((cols.start - 0.5, rows.start - 0.5), cols.stop - cols.start,
                                rows.stop - rows.start, fill=False, edgecolor="cyan", linewidth=1.0))
    binning = f", {factor}x{factor} max-binned" if factor > 1 else ""
    axes[0].set_title(f"{what} {height}x{width} (log ADU above the noise floor{binning})", fontsize=10)
    axes[1].imshow(crop, cmap="magma", vmin=0.0, vmax=vmax_crop, interpolation="nearest", origin="upper",
                   extent=(cols.start - 0.5, cols.stop - 0.5, rows.stop - 0.5, rows.start - 0.5))
    axes[1].set_title(f"crop {crop.shape[0]}x{crop.shape[1]} (what the network sees)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("fast scan (pixel)")
        ax.set_ylabel("slow scan (pixel)")
    lines = [title] if title else []
    if decision is not None:
        if getattr(decision, "error", None):
            lines.append(f"decision: kept as hit (undecided: {decision.error})")
        else:
            lines.append(f"decision: {'HIT' if decision.is_hit else 'miss'}   score {decision.score:.3f}")
    if truth:
        parts = []
        if "crystal" in truth:
            n = int(truth.get("n_crystals", truth["crystal"]))
            parts.append("crystal" + (f" x{n}" if n > 1 else "") if int(truth["crystal"]) else "no crystal")
        for key in ("strength", "n_spots"):
            if key in truth:
                parts.append(f"{key} {truth[key]}")
        if str(truth.get("strong_background", "0")) == "1":
            parts.append("strong background")
        lines.append("truth: " + ", ".join(parts))
    if lines:
        fig.suptitle("\n".join(lines), fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    _to_palette(path)
    return path


def render_slab(frame: np.ndarray, geometry, path: str, *, crop_shape: Sequence[int] = DEFAULT_CROP,
                **kwargs: Any) -> str:
    """Write a PNG of a raw slab ``frame`` assembled by its ``geometry`` (:func:`~sfx_cnn_veto.core.crop.assemble`,
    gaps blank), the crop outlined around the beam, and the crop (what the network sees); as :func:`render_frame`.
    """
    from sfx_cnn_veto.core.crop import assemble

    image, beam = assemble(frame, geometry)
    what = f"assembled from {len(geometry.panels)} panel{'s' if len(geometry.panels) > 1 else ''}"
    return render_frame(image, path, crop_shape=crop_shape, crop_center=beam, what=what, **kwargs)


def _to_palette(path: str) -> None:
    """Re-save a PNG with a 256-colour palette (about half the size; the colour map has 256 colours)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return
    if not path.lower().endswith(".png"):
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def _max_bin(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    height, width = image.shape
    padded = np.zeros((-(-height // factor) * factor, -(-width // factor) * factor), image.dtype)
    padded[:height, :width] = image
    return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).max(axis=(1, 3))


def truth_for(path: str, event: str | None) -> dict | None:
    """The row of ``<file>.truth.csv`` (written by ``simulate``) for ``event``, if there is one."""
    stem = path[:-4] if path.endswith(".cxi") else os.path.splitext(path)[0]
    truth_path = stem + ".truth.csv"
    if not os.path.exists(truth_path):
        return None
    wanted = event or "//0"
    with open(truth_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("event") == wanted:
                return row
    return None
