"""Training data: crops read from files (only the crop, as at inference), augmentation, splits.

Frames are read as a hyperslab around the model's crop (with a margin when
the crop centre is jittered), kept raw (ADU, float32) in memory, and
normalized per batch by the very same NumPy function used at inference
(looked up through ``sfxveto_preprocessing_steps``), after augmentation.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from sfx_cnn_veto import manager
from sfx_cnn_veto.core.crop import CropMapper
from sfx_cnn_veto.core.normalize import despeckle_raw, noise_scale
from sfx_cnn_veto.errors import ConfigError, FrameReadError, VetoError
from sfx_cnn_veto.io.events import EventRef
from sfx_cnn_veto.io.masks import fill_masked
from sfx_cnn_veto.training.labels import LabelRow

log = logging.getLogger(__name__)


def event_ref(row: LabelRow) -> EventRef:
    return EventRef(row.file, row.event, row.file)


def normalizer(method: str, params: dict[str, Any] | None = None, pm=None) -> Callable[[np.ndarray], np.ndarray]:
    """The registered normalize step ``method`` with its parameters bound."""
    steps = manager.preprocessing_steps(pm)
    key = f"normalize:{method}"
    if key not in steps:
        names = sorted(k.split(":", 1)[1] for k in steps if k.startswith("normalize:"))
        raise ConfigError(f"normalize method {method!r} is not registered (have: {', '.join(names)})")
    func = steps[key].func
    params = dict(params or {})
    return lambda frame: func(frame, **params)


@dataclass
class CropSet:
    """Raw crops (``(N, H + 2m, W + 2m)`` float32) of labelled events, with the rows they came from."""

    crops: np.ndarray
    labels: np.ndarray
    rows: list[LabelRow]
    margin: int
    crop_shape: tuple[int, int]
    skipped: list[tuple[LabelRow, str]] = field(default_factory=list)
    #: the distinct per-event frame shapes the crops were read from
    frame_shapes: list[tuple[int, ...]] = field(default_factory=list)
    #: :meth:`bragg_spots` of the hits asked so far
    _spots: dict[int, "BraggSpots"] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def bragg_spots(self, i: int) -> "BraggSpots":
        """The Bragg spots of crop ``i`` (:class:`BraggSpots`), computed once."""
        i = int(i)
        if i not in self._spots:
            self._spots[i] = BraggSpots.of(self.crops[i])
        return self._spots[i]

    def centre(self) -> np.ndarray:
        """The un-jittered crops ``(N, H, W)`` (views)."""
        m = self.margin
        h, w = self.crop_shape
        return self.crops[:, m:m + h, m:m + w]


def read_crops(
    rows: Sequence[LabelRow],
    *,
    crop_shape: Sequence[int],
    center: Sequence[float] | None = None,
    margin: int = 0,
    reader_options: dict[str, Any] | None = None,
    desc: str = "read",
    mask_for: Callable[[str, tuple[int, int]], np.ndarray | None] | None = None,
    geometry=None,
) -> CropSet:
    """Read the ``crop_shape`` window (plus ``margin`` on each side) of every labelled row.

    The window is a :class:`~sfx_cnn_veto.core.crop.CropMap` of the frames, as at
    inference: around ``center`` (default: the frame centre), or, with a
    ``geometry`` (:class:`~sfx_cnn_veto.io.geometry.Geometry`), around the beam on
    the assembled detector, the frames being raw slabs; its gaps and the
    geometry's bad pixels are masked like bad pixels.

    Rows without a label are skipped; rows that cannot be read are skipped
    with a warning and listed in ``skipped`` (training cannot use them; the
    evaluation counts such events as predicted hits instead).

    ``mask_for(file, frame_shape)`` gives a file's good-pixel mask (or None);
    the bad pixels of a window are set to the median of its good ones, as
    the veto does at inference (:func:`~sfx_cnn_veto.io.masks.fill_masked`).
    """
    from sfx_cnn_veto.cli_commands import progress
    from sfx_cnn_veto.io.store import FrameStore

    h, w = int(crop_shape[0]), int(crop_shape[1])
    big = (h + 2 * margin, w + 2 * margin)
    labelled = [r for r in rows if r.label is not None]
    mapper = CropMapper(big, geometry=geometry, center=center)
    crops = np.empty((len(labelled),) + big, dtype=np.float32)
    good_rows: list[LabelRow] = []
    skipped: list[tuple[LabelRow, str]] = []
    shapes: list[tuple[int, ...]] = []
    with FrameStore(reader_options or {}) as store, progress(total=len(labelled), desc=desc) as bar:
        for row in labelled:
            ref = event_ref(row)
            try:
                shape = tuple(store.frame_shape(ref))
                cmap = mapper(shape, data_file=ref.file)
                window = crops[len(good_rows)]
                block = store.read(ref, cmap.region) if cmap.region is not None else store.read(ref)
                window[...] = cmap.gather(block)
                good = cmap.crop_good(mask_for(ref.file, shape) if mask_for is not None else None)
                if good is not None:
                    if not good.any():
                        raise FrameReadError("every pixel of the crop is masked")
                    fill_masked(window, good)
                good_rows.append(row)
                if shape not in shapes:
                    shapes.append(shape)
            except VetoError as exc:
                skipped.append((row, str(exc)))
                print(f"sfx-cnn-veto: warning: {ref}: {exc} (left out)", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop training
                skipped.append((row, f"{type(exc).__name__}: {exc}"))
                print(f"sfx-cnn-veto: warning: {ref}: {type(exc).__name__}: {exc} (left out)", file=sys.stderr)
            bar.update(1)
    crops = crops[: len(good_rows)]
    labels = np.array([r.label for r in good_rows], dtype=np.int64)
    return CropSet(crops, labels, good_rows, int(margin), (h, w), skipped, sorted(shapes))


def holdout_split(rows: Sequence[LabelRow], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Reproducible stratified split of labelled rows: ``(train indices, held-out indices)``.

    The order depends only on ``seed`` and the rows' ``(file, event)`` keys, not
    on the order of the labels file.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"hold-out fraction: expected 0 < f < 1, got {fraction}")
    rng = np.random.default_rng(seed)
    train: list[int] = []
    held: list[int] = []
    for label in (0, 1):
        idx = [i for i, r in enumerate(rows) if r.label == label]
        idx.sort(key=lambda i: rows[i].key)
        idx = [idx[j] for j in rng.permutation(len(idx))]
        n_held = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.extend(idx[:n_held])
        train.extend(idx[n_held:])
    return sorted(train), sorted(held)


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to raw crops before normalization (training only).

    ``shift``: crop centre jitter (pixels, at most the read margin);
    ``flips``: random flips and 90-degree rotations (square crops);
    ``gain``: multiplicative gain range; ``offset``: additive pedestal range
    in units of the crop's noise scale; ``hot_pixels``: up to this many single
    pixels set far above the background (so the network cannot learn a run's
    fixed hot-pixel pattern, or mistake hot pixels for Bragg peaks);
    ``hot_clusters``: up to this many pairs and 2x2 blocks of hot pixels
    (single hot pixels vanish in ``despeckle``; adjacent ones do not, and a run
    with more hot pixels has some: they must not read as Bragg spots);
    ``background``: range of extra background, as a multiple of the crop's own
    smooth background, with its photon noise; ``weaken``: range (log-uniform)
    of a factor on the signal above the smooth background, with noise added
    back so the noise level stays (weaker crystals, lower flux); ``p_raw``:
    the fraction of samples that get the raw-frame changes (the others get
    only shifts and flips of their cached normalized crop, which is cheaper).

    ``weak_hits``: the probability that a hit is replaced by a *weak hit*
    made from it (:func:`weak_hit`): its Bragg spots, scaled down by a factor
    ``a``, laid onto a miss of the training set (a real background, with its
    photon speckle and detector pattern). ``a`` is drawn log-uniformly so that
    the hit keeps at least ``weak_min_peaks`` of its labelled peaks
    (``num_peaks * a``: a crystal ``a`` times weaker shows about ``a`` times as
    many peaks above a peak finder's threshold), so the label stays right.
    Training runs seldom have hits with fewer than ~30 peaks; this fills the
    gap between them and the paper's 10-peak boundary.
    """

    shift: int = 0
    flips: bool = True
    gain: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)
    hot_pixels: int = 0
    hot_clusters: int = 0
    background: tuple[float, float] = (0.0, 0.0)
    weaken: tuple[float, float] = (1.0, 1.0)
    p_raw: float = 1.0
    weak_hits: float = 0.0
    weak_min_peaks: float = 11.0

    @classmethod
    def parse(cls, text: str, *, margin: int) -> "Augmentation":
        """``"none"``, ``"default"`` or ``"shift=8,flips=1,gain=0.5:2,hot_pixels=200,background=0:4"``."""
        text = (text or "none").strip()
        if text == "none":
            return cls(flips=False)
        if text == "default":
            return cls.default(margin)
        values: dict[str, Any] = {}
        for item in text.split(","):
            key, _, value = item.partition("=")
            key = key.strip()
            if key not in cls.__dataclass_fields__:
                raise ConfigError(
                    f"augmentation: unknown key {key!r} (expected some of {', '.join(cls.__dataclass_fields__)})"
                )
            if key in ("gain", "offset", "background", "weaken"):
                lo, _, hi = value.partition(":")
                values[key] = (float(lo), float(hi or lo))
            elif key == "flips":
                values[key] = value.strip().lower() in ("1", "true", "yes", "on")
            elif key in ("p_raw", "weak_hits", "weak_min_peaks"):
                values[key] = float(value)
            else:
                values[key] = int(value)
        aug = cls(**values)
        if aug.shift > margin:
            raise ConfigError(f"augmentation: shift {aug.shift} exceeds the read margin {margin}")
        if not 0.0 <= aug.weak_hits <= 1.0 or not 0.0 <= aug.p_raw <= 1.0:
            raise ConfigError("augmentation: weak_hits and p_raw are probabilities (0 to 1)")
        if aug.weak_min_peaks <= 0:
            raise ConfigError("augmentation: weak_min_peaks must be positive")
        return aug

    @classmethod
    def default(cls, margin: int = 8) -> "Augmentation":
        return cls(shift=margin, flips=True, gain=(0.5, 2.5), offset=(-5.0, 5.0), hot_pixels=150,
                   background=(0.0, 4.0), p_raw=0.75, weak_hits=0.75, weak_min_peaks=11.0)

    def describe(self) -> dict[str, Any]:
        return {"shift": self.shift, "flips": self.flips, "gain": list(self.gain), "offset": list(self.offset),
                "hot_pixels": self.hot_pixels, "hot_clusters": self.hot_clusters,
                "background": list(self.background), "weaken": list(self.weaken), "p_raw": self.p_raw,
                "weak_hits": self.weak_hits, "weak_min_peaks": self.weak_min_peaks}

    @property
    def raw_changes(self) -> bool:
        """Whether some changes need the raw ADU frame (then the frame is normalized again)."""
        return bool(self.gain != (1.0, 1.0) or self.offset != (0.0, 0.0) or self.hot_pixels or self.hot_clusters
                    or self.background != (0.0, 0.0) or self.weaken != (1.0, 1.0))

    @property
    def active(self) -> bool:
        return bool(self.shift or self.flips or self.raw_changes or self.weak_hits)


#: The side of the blocks of the smooth background (:func:`_smooth_background`)
BACKGROUND_BLOCK = 10


def _background_blocks(frame: np.ndarray, med: float, scale: float, block: int = BACKGROUND_BLOCK) -> np.ndarray:
    """Block means of the frame clipped at ``med + 3 scale`` (spots left out): the coarse background's grid.

    A frame smaller than one block has a one-value grid, ``med``.
    """
    h, w = frame.shape
    hb, wb = h // block, w // block
    if hb == 0 or wb == 0:
        return np.full((1, 1), med, dtype=frame.dtype)
    core = np.minimum(frame[: hb * block, : wb * block], np.float32(med + 3.0 * scale))
    return core.reshape(hb, block, wb, block).mean(axis=(1, 3), dtype=np.float32)


def _upsample(grid: np.ndarray, shape: tuple[int, int], block: int = BACKGROUND_BLOCK) -> np.ndarray:
    """A grid of block values (:func:`_background_blocks`, or a pixel-wise function of it) at full ``shape``.

    Each value fills its block; the rows and columns past the last whole block
    repeat the last one (a one-value grid fills everything).
    """
    h, w = shape
    if grid.shape == (1, 1) and (h < block or w < block):
        return np.full(shape, grid[0, 0], dtype=grid.dtype)
    hb, wb = grid.shape
    out = np.empty(shape, dtype=grid.dtype)
    out[: hb * block, : wb * block].reshape(hb, block, wb, block)[...] = grid[:, None, :, None]
    if h > hb * block:
        out[hb * block:, : wb * block] = out[hb * block - 1, : wb * block]
    if w > wb * block:
        out[:, wb * block:] = out[:, wb * block - 1: wb * block]
    return out


def _smooth_background(frame: np.ndarray, med: float, scale: float, block: int = BACKGROUND_BLOCK) -> np.ndarray:
    """A coarse background: block means of the frame clipped at ``med + 3 scale`` (spots left out), upsampled."""
    return _upsample(_background_blocks(frame, med, scale, block), frame.shape, block)


def _noise_scale(frame: np.ndarray) -> tuple[float, float]:
    """``(median, sigma)`` of every 4th row and column, as the normalization estimates them (:func:`noise_scale`)."""
    med, scale = noise_scale(frame)
    return float(med), float(scale)


#: One photon, in units of a frame's robust noise scale, where no photon size is known: the
#: scale of a photon-counting frame is mostly read noise, and detectors put a photon 2-4
#: read-noise sigmas above the pedestal (the simulated CSPAD-like one: 8 ADU over ~3).
PHOTON_SCALES = 2.5


def bragg_signal(frame: np.ndarray, *, k: float = 4.0) -> np.ndarray:
    """The Bragg spots of a hit's raw frame: what stands ``k`` noise scales above its smooth background.

    Pixels below that are 0 (the background and its photon speckle), and so
    are isolated pixels (hot pixels, zingers: :func:`~sfx_cnn_veto.core.normalize.despeckle_raw`).
    """
    frame = np.asarray(frame, dtype=np.float32)
    med, scale = _noise_scale(frame)
    above = frame - _smooth_background(frame, med, scale)
    above[above < np.float32(k * scale)] = 0.0
    return despeckle_raw(above)


@dataclass(frozen=True)
class BraggSpots:
    """A hit's Bragg signal (:func:`bragg_signal`) kept sparse, with the hit's noise scale (what :func:`weak_hit` needs).

    ``index``: the flat (C-order) positions of the nonzero pixels; ``values``:
    the signal there (float32); ``scale``: the hit's robust noise scale.
    """

    shape: tuple[int, ...]
    index: np.ndarray
    values: np.ndarray
    scale: float

    @classmethod
    def of(cls, hit: np.ndarray) -> "BraggSpots":
        signal = bragg_signal(hit)
        index = np.flatnonzero(signal)
        _, scale = _noise_scale(hit)
        return cls(signal.shape, index, signal.ravel()[index], scale)


def weak_hit(hit: np.ndarray, miss: np.ndarray, num_peaks: float, aug: Augmentation,
             rng: np.random.Generator, *, spots: BraggSpots | None = None) -> np.ndarray:
    """A weaker version of ``hit``: its Bragg spots (:func:`bragg_signal`) times ``a`` on top of ``miss``.

    ``a`` is log-uniform in ``[weak_min_peaks / num_peaks, 1]``, so about
    ``num_peaks * a >= weak_min_peaks`` peaks stay. The weakened spots are
    Poisson-sampled in photons of ``PHOTON_SCALES`` noise scales, so they are
    as grainy as a weak crystal's, not smooth scaled-down copies.

    ``spots``: ``BraggSpots.of(hit)`` when already known (training reuses a
    hit's). Only the spot pixels are sampled: a Poisson draw of mean 0 is 0
    and takes no random number, so the result and ``rng``'s state after it are
    those of sampling the whole dense frame.
    """
    lo = min(1.0, float(aug.weak_min_peaks) / max(float(num_peaks), 1.0))
    a = float(np.exp(rng.uniform(np.log(lo), 0.0))) if lo < 1.0 else 1.0
    spots = BraggSpots.of(hit) if spots is None else spots
    photon = np.float32(PHOTON_SCALES * max(spots.scale, 1.0))
    counts = rng.poisson(spots.values * np.float32(a) / photon).astype(np.float32) * photon
    out = np.asarray(miss, dtype=np.float32) + np.float32(0.0)  # a new array; -0.0 reads +0.0, as with dense spots
    flat = out.reshape(-1)
    flat[spots.index] += counts
    return out


def weak_validation(val: CropSet, aug: Augmentation, seed: int, *, per_hit: int = 2) -> CropSet:
    """Weak hits (:func:`weak_hit`) from the held-out hits on held-out misses, ``per_hit`` each, fixed by ``seed``.

    Scored beside the held-out events when the epoch and the threshold are
    chosen, so that the target sensitivity also holds for hits as weak as the
    training's weak-hit augmentation makes them (the held-out hits alone are
    the training runs' strong ones).
    Empty when there are no held-out misses or no hit with a peak count.
    """
    rng = np.random.default_rng([int(seed), 4242])
    misses = np.flatnonzero(val.labels == 0)
    hits = [i for i in np.flatnonzero(val.labels == 1) if val.rows[i].num_peaks]
    out, rows = [], []
    if misses.size:
        for i in hits:
            for _ in range(per_hit):
                miss = val.crops[int(rng.choice(misses))]
                out.append(weak_hit(val.crops[i], miss, val.rows[i].num_peaks, aug, rng))
                rows.append(val.rows[i])
    h = val.crops.shape[1:]
    crops = np.stack(out) if out else np.zeros((0,) + tuple(h), dtype=np.float32)
    return CropSet(crops, np.ones(len(out), dtype=np.int64), rows, val.margin, val.crop_shape, [])


def _shift_flip(window: np.ndarray, aug: Augmentation, rng: np.random.Generator, margin: int,
                crop_shape: Sequence[int]) -> np.ndarray:
    h, w = int(crop_shape[0]), int(crop_shape[1])
    if aug.shift:
        dy, dx = (int(v) for v in rng.integers(-aug.shift, aug.shift + 1, size=2))
    else:
        dy = dx = 0
    frame = window[margin + dy: margin + dy + h, margin + dx: margin + dx + w]
    if aug.flips:
        k = int(rng.integers(0, 4)) if h == w else 2 * int(rng.integers(0, 2))
        if k:
            frame = np.rot90(frame, k)
        if rng.integers(0, 2):
            frame = frame[:, ::-1]
    return frame


def augment_raw(frame: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """The raw-frame changes (signal weakening, extra background, gain, offset, hot pixels) of one crop."""
    frame = np.array(frame, dtype=np.float32)
    h, w = frame.shape
    med, scale = _noise_scale(frame)
    need_bg = aug.weaken != (1.0, 1.0) or aug.background != (0.0, 0.0)
    if need_bg:
        # the background, the extra background and its noise level are constant over each block: computed
        # on the grid of blocks, then upsampled (the same values as pixel by pixel, for less work)
        grid = _background_blocks(frame, med, scale)
        variance = None  # of the noise to add (a number, or per block)
        if aug.weaken != (1.0, 1.0):
            lo, hi = aug.weaken
            alpha = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if alpha < 1.0:
                # weaker signal above the background; the noise it loses is added back below
                bg = _upsample(grid, frame.shape)
                frame = bg + np.float32(alpha) * (frame - bg)
                variance = np.float32(scale * scale * (1.0 - alpha * alpha))
        if aug.background != (0.0, 0.0):
            k = float(rng.uniform(*aug.background))
            if k > 0:
                # extra background with photon-like noise: variance proportional to the added level
                extra = np.float32(k) * np.maximum(grid - np.float32(med - scale), np.float32(0.0))
                frame = frame + _upsample(extra, frame.shape)
                more = extra * np.float32(max(scale, 1.0))
                variance = more if variance is None else variance + more
        if variance is not None:
            sigma = np.sqrt(variance)
            sigma = _upsample(sigma, frame.shape) if np.ndim(sigma) else sigma
            frame = frame + rng.standard_normal(frame.shape, dtype=np.float32) * sigma
    if aug.gain != (1.0, 1.0):
        frame *= np.float32(rng.uniform(*aug.gain))
    if aug.offset != (0.0, 0.0):
        frame += np.float32(rng.uniform(*aug.offset) * scale)
    if aug.hot_pixels:
        n = int(rng.integers(0, aug.hot_pixels + 1))
        if n:
            ys = rng.integers(0, h, size=n)
            xs = rng.integers(0, w, size=n)
            level = np.float32(abs(med) + scale)
            frame[ys, xs] = med + level * rng.uniform(5.0, 500.0, size=n).astype(np.float32)
    if aug.hot_clusters and h > 2 and w > 2:
        n = int(rng.integers(0, aug.hot_clusters + 1))
        level = np.float32(abs(med) + scale)
        for _ in range(n):
            y, x = int(rng.integers(0, h - 1)), int(rng.integers(0, w - 1))
            dy, dx = ((0, 1), (1, 0), (1, 1))[int(rng.integers(0, 3))]
            frame[y:y + 1 + dy, x:x + 1 + dx] = med + level * np.float32(rng.uniform(30.0, 500.0))
    return frame


def augment_one(raw: np.ndarray, aug: Augmentation, rng: np.random.Generator, *, margin: int,
                crop_shape: Sequence[int]) -> np.ndarray:
    """One augmented raw crop ``crop_shape`` from a raw window with ``margin`` (all changes applied)."""
    frame = _shift_flip(raw, aug, rng, margin, crop_shape)
    if aug.raw_changes:
        frame = augment_raw(frame, aug, rng)
    return np.ascontiguousarray(frame, dtype=np.float32)


def make_batch(crops: CropSet, indices: Sequence[int], normalize: Callable[[np.ndarray], np.ndarray], *,
               aug: Augmentation | None = None, rng: np.random.Generator | None = None,
               cache: np.ndarray | None = None) -> np.ndarray:
    """Normalized ``(len(indices), H, W, 1)`` float32 batch, augmented when ``aug`` is given.

    With ``cache`` (the normalized windows, :func:`normalized_windows`), a
    sample that gets no raw-frame change (probability ``1 - aug.p_raw``) is
    shifted and flipped from its cached normalized window instead of being
    normalized again.
    """
    h, w = crops.crop_shape
    out = np.empty((len(indices), h, w, 1), dtype=np.float32)
    m = crops.margin
    misses = np.flatnonzero(crops.labels == 0) if aug is not None and aug.weak_hits else np.zeros(0, int)
    for j, i in enumerate(indices):
        if aug is not None and aug.active:
            peaks = crops.rows[i].num_peaks if misses.size and crops.labels[i] == 1 else None
            if peaks is not None and rng.random() < aug.weak_hits:
                window = weak_hit(crops.crops[i], crops.crops[int(rng.choice(misses))], peaks, aug, rng,
                                  spots=crops.bragg_spots(i))
                if aug.raw_changes and rng.random() < aug.p_raw:
                    frame = augment_one(window, aug, rng, margin=m, crop_shape=(h, w))
                else:
                    frame = np.ascontiguousarray(_shift_flip(window, aug, rng, m, (h, w)))
                out[j, :, :, 0] = normalize(frame)
                continue
            use_raw = aug.raw_changes and (cache is None or rng.random() < aug.p_raw)
            if use_raw:
                out[j, :, :, 0] = normalize(augment_one(crops.crops[i], aug, rng, margin=m, crop_shape=(h, w)))
            else:
                source = cache[i] if cache is not None else crops.crops[i]
                frame = _shift_flip(source, aug, rng, m, (h, w))
                out[j, :, :, 0] = frame if cache is not None else normalize(np.ascontiguousarray(frame))
        else:
            out[j, :, :, 0] = normalize(crops.crops[i, m:m + h, m:m + w])
    return out


def normalized_windows(crops: CropSet, normalize: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Each raw window normalized as a whole (the cache :func:`make_batch` shifts and flips)."""
    out = np.empty_like(crops.crops)
    for i in range(len(crops)):
        out[i] = normalize(crops.crops[i])
    return out
