"""Pictures of frames: the whole frame and the network's crop, side by side, log-scaled.

``render_frame(frame, path, ...)`` is the library call; ``show_event(veto, store,
ref, path)`` decides one event of a file exactly as ``score`` does (the file's
own mask, its beam centre, the geometry: :meth:`Veto.stream_events`) and draws
it with the network's real input (the crop masked and normalized) beside it.
``sfx-cnn-veto show FILE //N`` and the demo's gallery use it.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Mapping, Sequence

import numpy as np

from sfx_cnn_veto.core.crop import DEFAULT_CROP, Region, crop_region
from sfx_cnn_veto.core.normalize import noise_scale
from sfx_cnn_veto.errors import ConfigError, VetoError


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
    region: Region | None = None,
    network_input: np.ndarray | None = None,
    input_note: str = "",
    title: str = "",
    decision: Any = None,
    truth: Mapping[str, Any] | None = None,
    dpi: int = 80,
    what: str = "frame",
) -> str:
    """Write a PNG of ``frame`` (left, with the crop outlined) and of what the network gets (right).

    Parameters
    ----------
    frame : 2-D array
    path : output PNG file
    crop_shape, crop_center : the network's crop (default: 350x350 at the frame centre)
    region : ``(rows, cols)`` of the crop in ``frame``; overrides ``crop_shape`` and ``crop_center``
    network_input : the network's input for this frame (the crop masked and normalized,
        :func:`network_input`); drawn on the right. Without it the right panel is the raw crop.
    input_note : how ``network_input`` was made (e.g. ``"masked, despeckle"``), for its title
    title : first line of the title (e.g. ``"run90.cxi //3"``)
    decision : a :class:`~sfx_cnn_veto.core.pipeline.Decision`, shown with its score
    truth : a truth record (``crystal``, ``n_crystals``, ``n_spots`` ...), shown if given
    what : the left panel's name (``"frame"``; :func:`render_slab` says how it was assembled)
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frame = np.asarray(frame)
    rows, cols = region if region is not None else crop_region(frame.shape, crop_shape, crop_center)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), dpi=dpi)
    _draw_frame(axes[0], frame, rows, cols, what)
    extent = (cols.start - 0.5, cols.stop - 0.5, rows.stop - 0.5, rows.start - 0.5)
    if network_input is None:
        crop = display_scale(frame[rows, cols])      # its own median: the crop is darker than the rings
        axes[1].imshow(crop, cmap="magma", vmin=0.0, vmax=max(float(np.percentile(crop, 99.9)), 2.0),
                       interpolation="nearest", origin="upper", extent=extent)
        axes[1].set_title(f"crop {crop.shape[0]}x{crop.shape[1]} (raw; no network input)", fontsize=10)
    else:
        shown = np.asarray(network_input, dtype=np.float32).reshape(rows.stop - rows.start, cols.stop - cols.start)
        low, high = _input_range(shown)
        axes[1].imshow(shown, cmap="magma", vmin=low, vmax=high, interpolation="nearest", origin="upper",
                       extent=extent)
        note = f": {input_note}" if input_note else ""
        axes[1].set_title(f"network input {shown.shape[0]}x{shown.shape[1]} (what it sees{note})", fontsize=10)
    for ax in axes:
        ax.set_xlabel("fast scan (pixel)")
        ax.set_ylabel("slow scan (pixel)")
    lines = ([title] if title else []) + _caption(decision, truth)
    if lines:
        fig.suptitle("\n".join(lines), fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    _to_palette(path)
    return path


def _draw_frame(ax, frame: np.ndarray, rows: slice, cols: slice, what: str) -> None:
    """The whole frame, log-scaled, max-binned when large (one-pixel spots stay visible), the crop outlined."""
    from matplotlib.patches import Rectangle

    shown = display_scale(frame)
    factor = max(1, int(np.ceil(max(frame.shape) / 480.0)))
    binned = _max_bin(shown, factor)
    vmax = max(float(np.percentile(shown, 99.97)), 2.0)
    height, width = frame.shape
    ax.imshow(binned, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest", origin="upper",
              extent=(-0.5, binned.shape[1] * factor - 0.5, binned.shape[0] * factor - 0.5, -0.5))
    ax.add_patch(Rectangle((cols.start - 0.5, rows.start - 0.5), cols.stop - cols.start,
                           rows.stop - rows.start, fill=False, edgecolor="cyan", linewidth=1.0))
    binning = f", {factor}x{factor} max-binned" if factor > 1 else ""
    ax.set_title(f"{what} {height}x{width} (log ADU above the noise floor{binning})", fontsize=10)


def _input_range(image: np.ndarray) -> tuple[float, float]:
    """Colour limits for the network input: its median to its 99.9th percentile (spots stand out)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(np.median(finite)), float(np.percentile(finite, 99.9))
    return low, high if high > low else low + 1.0


def _caption(decision: Any, truth: Mapping[str, Any] | None) -> list[str]:
    """Title lines for the decision and the simulator's truth."""
    lines = []
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
    return lines


def render_slab(frame: np.ndarray, geometry, path: str, *, crop_shape: Sequence[int] = DEFAULT_CROP,
                **kwargs: Any) -> str:
    """Write a PNG of a raw slab ``frame`` assembled by its ``geometry`` (:func:`~sfx_cnn_veto.core.crop.assemble`,
    gaps blank), the crop outlined around the beam, and the crop (what the network sees); as :func:`render_frame`.
    """
    from sfx_cnn_veto.core.crop import assemble

    image, beam = assemble(frame, geometry)
    what = f"assembled from {len(geometry.panels)} panel{'s' if len(geometry.panels) > 1 else ''}"
    return render_frame(image, path, crop_shape=crop_shape, crop_center=beam, what=what, **kwargs)


def network_input(veto, store, ref) -> tuple[np.ndarray, Any]:
    """The network's input for an event of a file, made as :meth:`Veto.stream_events` makes it, and its crop map.

    The crop map (the geometry's, or the rectangle around the given or the
    file's own beam centre), the good-pixel mask (the given one, else the
    file's own) and the model's normalization.

    Raises
    ------
    VetoError
        When the event cannot be preprocessed (its decision then carries the reason).
    """
    cmap = veto.event_crop_map(store, ref)
    block = np.array(store.read(ref, cmap.region))      # a fresh array: preprocessing may write into it
    good = veto.file_mask(ref.file, cmap.frame_shape)
    if good is None and veto.uses_mask:
        good = veto.mask
    return veto.preprocess(block, good=good, cmap=cmap, owned=True), cmap


def show_event(veto, store, ref, path: str, *, title: str = "", truth: Mapping[str, Any] | None = None,
               **kwargs: Any) -> Any:
    """Decide one event of a file as ``score`` does, draw it with the network's input, return the Decision.

    Parameters
    ----------
    veto : :class:`~sfx_cnn_veto.core.pipeline.Veto`
    store : :class:`~sfx_cnn_veto.io.store.FrameStore`
    ref : :class:`~sfx_cnn_veto.io.events.EventRef` of one event (``ref.event`` set, or a single-frame file)
    path : output PNG
    title, truth, kwargs : as :func:`render_frame`
    """
    decision = next(iter(veto.stream_events([(ref, None)], store, prefetch=0)))[1]
    frame = np.asarray(store.read(ref))
    image, note = None, ""
    try:
        image, cmap = network_input(veto, store, ref)
        note = ("masked, " if veto.uses_mask else "") + veto.metadata.normalize
    except ConfigError:
        raise
    except VetoError:
        cmap = None                                       # the decision says why it is undecided
    geometry = veto.preprocess.geometry
    if geometry is not None:
        return _show_slab(frame, geometry, path, veto.crop_shape, image, note, title=title, decision=decision,
                          truth=truth, **kwargs)
    region = cmap.region if cmap is not None else None
    render_frame(frame, path, crop_shape=veto.crop_shape, crop_center=veto.preprocess.center, region=region,
                 network_input=image, input_note=note, title=title, decision=decision, truth=truth, **kwargs)
    return decision


def _show_slab(frame, geometry, path, crop_shape, image, note, *, decision, **kwargs: Any) -> Any:
    """:func:`show_event` for a raw slab: the assembled image, the crop outlined around the beam."""
    from sfx_cnn_veto.core.crop import assemble

    assembled, beam = assemble(frame, geometry)
    what = f"assembled from {len(geometry.panels)} panel{'s' if len(geometry.panels) > 1 else ''}"
    render_frame(assembled, path, crop_shape=crop_shape, crop_center=beam, what=what, network_input=image,
                 input_note=note, decision=decision, **kwargs)
    return decision


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
