"""The public API: ``Veto.load(path)``, ``score``, ``decide``, ``stream``.

Example
-------
>>> veto = Veto.load("model.keras")                       # doctest: +SKIP
>>> veto.score(frames)            # hit probability per frame   # doctest: +SKIP
>>> for key, decision in veto.stream(pairs): ...                # doctest: +SKIP

Bad pixels: a model trained with the detector's mask (``use_mask`` in its
metadata) gets the same here: the ``mask`` given to :class:`Veto`, else, for
events read from files, each file's own CXI mask. Masked pixels get the
crop's background level before normalization.

Every frame that goes in comes out with a :class:`Decision`. When a frame
cannot be scored (unreadable, too small, mostly NaN, a non-finite network
output) the decision carries ``error`` and, failing open, ``is_hit=True``: a
lost hit is the worst outcome.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from sfx_cnn_veto import manager
from sfx_cnn_veto.core.crop import (MAX_BAD_FRACTION, CropMap, CropMapper, Region, check_single_panel,
                                   sentinel_good)
from sfx_cnn_veto.core.fastnorm import compiled_normalizer
from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
from sfx_cnn_veto.errors import ConfigError, FrameReadError, VetoError
from sfx_cnn_veto.io.geometry import Geometry, read_geometry
from sfx_cnn_veto.io.masks import CropMask

DEFAULT_BATCH = 64
#: Per-file masks kept in memory (files are read in order: the current one and a few behind it).
FILE_MASKS_KEPT = 4


@dataclass(frozen=True)
class Decision:
    """The veto's verdict on one frame.

    ``score`` is the hit probability (NaN when undecided), ``is_hit`` the
    decision (``True`` when undecided: fail open), ``error`` why it is undecided.
    """

    score: float
    is_hit: bool
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        return "error" if self.error else ("hit" if self.is_hit else "miss")


class Preprocessor:
    """Crop, mask and normalize as a model's metadata says, with steps looked up through hooks.

    The crop comes from a :class:`~sfx_cnn_veto.core.crop.CropMapper`: the
    detector's geometry (any number of panels) or a beam centre. Gaps, the
    geometry's bad pixels, integer gap values and the given good-pixel mask
    all read as background before normalization.
    """

    def __init__(self, metadata: ModelMetadata, pm=None, *, center=None, geometry=None) -> None:
        self.metadata = metadata
        steps = manager.preprocessing_steps(pm)
        key = f"normalize:{metadata.normalize}"
        if key not in steps:
            names = sorted(k.split(":", 1)[1] for k in steps if k.startswith("normalize:"))
            raise ConfigError(
                f"normalize method {metadata.normalize!r} is not registered (have: {', '.join(names)})"
            )
        self._params = dict(metadata.normalize_params)
        # despeckle / robust: the same result from one compiled pass when numba is there (core/fastnorm.py)
        self._normalize = compiled_normalizer(steps[key].func, self._params) or steps[key].func
        self.crop_shape = tuple(metadata.crop_shape)
        if geometry is not None and not isinstance(geometry, Geometry):
            geometry = read_geometry(str(geometry))
        self.geometry = geometry
        if center is None and geometry is None:
            center = metadata.crop_center
        trained = trained_detector(metadata)
        if geometry is None and int(trained.get("panels") or 1) > 1:
            raise ConfigError(
                f"this model was trained on the raw slabs of a {trained['panels']}-panel detector (geometry "
                f"{trained.get('geometry')}): give that detector's geometry (--geometry FILE.geom)"
            )
        if geometry is not None:
            warn_other_scale(metadata, geometry)
        self.mapper = CropMapper(self.crop_shape, geometry=geometry, center=center)
        self._explicit_center = center is not None
        self._checked: set[tuple[int, ...]] = set()
        self._masks: dict[tuple, tuple[Any, CropMask]] = {}

    @property
    def center(self) -> tuple[float, float] | None:
        return self.mapper.center

    def crop_map(self, frame_shape: Sequence[int], *, center=None, data_file: str | None = None) -> CropMap:
        """The :class:`CropMap` for frames of ``frame_shape`` (``center``: a file's own beam centre)."""
        shape = tuple(int(v) for v in frame_shape)
        if shape not in self._checked:
            if self.geometry is None and center is None and not self._explicit_center:
                check_trained_shape(self.metadata, shape)
            else:  # cropped where the geometry or the centre says: scored, with a note
                warn_other_detector(self.metadata, shape, source=data_file, geometry=self.geometry)
            self._checked.add(shape)
        return self.mapper(shape, center=center, data_file=data_file)

    def region(self, frame_shape: Sequence[int]) -> Region | None:
        """The block of a frame to read (None: the whole frame)."""
        return self.crop_map(frame_shape).region

    def __call__(self, frame: np.ndarray, *, cropped: bool = False, good: np.ndarray | None = None,
                 owned: bool = False, cmap: CropMap | None = None) -> np.ndarray:
        """Crop (unless ``cropped``), mask and normalize.

        ``frame``: a full frame; or, with ``cmap``, the block read at
        ``cmap.region``; or, with ``cropped``, the crop itself. ``good``: a
        good-pixel mask of the full frame (or of the crop, when ``cropped``).
        ``owned``: ``frame`` is a fresh array the caller will not use again (masking may write into it).
        """
        frame = np.asarray(frame)
        if frame.dtype.kind not in "fiub":
            raise FrameReadError(f"expected a numeric frame, got dtype {frame.dtype}")
        if cropped:
            if frame.shape != self.crop_shape:
                raise FrameReadError(f"expected a {self.crop_shape} crop, got {frame.shape}")
            crop, crop_good = frame, self._crop_mask(good, None)
        else:
            if cmap is None:
                cmap = self.crop_map(frame.shape)
                frame = cmap.block(frame)
            crop = cmap.gather(frame)
            owned = (owned and crop is frame) or not cmap.is_rectangle
            crop_good = self._crop_mask(good, cmap)
        sentinels = sentinel_good(crop)
        if sentinels is not None:
            crop_good = sentinels if crop_good is None else _and(crop_good, sentinels)
        if crop_good is not None:
            crop = apply_mask(crop, crop_good, inplace=owned)
        return self._normalize(crop, **self._params)

    def _crop_mask(self, good: np.ndarray | None, cmap: CropMap | None) -> CropMask | None:
        """The crop's prepared mask: ``cmap``'s gaps and geometry mask and ``good``; cached per mask and map."""
        if good is None and (cmap is None or cmap.good is None):
            return None
        key = (id(good), id(cmap))
        hit = self._masks.get(key)
        if hit is not None and hit[0] is good:
            return hit[1]
        if cmap is None:
            crop_good = np.asarray(good, dtype=bool)
            if crop_good.shape != self.crop_shape:
                raise FrameReadError(f"mask of shape {crop_good.shape} does not match the {self.crop_shape} crop")
        else:
            if good is not None and np.shape(good) != cmap.frame_shape:
                raise FrameReadError(f"mask of shape {np.shape(good)} does not match the {cmap.frame_shape} frame")
            crop_good = cmap.crop_good(good)
            if good is not None:
                check_mask_fraction(crop_good, cmap)
        prepared = CropMask(crop_good)
        if len(self._masks) >= 16:
            self._masks.pop(next(iter(self._masks)))
        self._masks[key] = (good, prepared)  # holding `good` keeps its id from being reused
        return prepared


def trained_detector(metadata: ModelMetadata) -> dict[str, Any]:
    """What the model's training frames were: ``frame_shapes``, ``geometry`` (file name), ``panels``."""
    return dict((metadata.training or {}).get("detector") or {})


def check_trained_shape(metadata: ModelMetadata, frame_shape: tuple[int, ...]) -> None:
    """Refuse a frame, with no geometry and no beam centre given, whose shape is not the model's training frames'.

    Such a frame may be a raw multi-panel slab, whose centre is not the beam:
    cropping it silently would score the wrong pixels.
    """
    shapes = [tuple(int(v) for v in shape) for shape in trained_detector(metadata).get("frame_shapes") or ()]
    if not shapes or tuple(frame_shape) in shapes or len(frame_shape) != 2:
        return
    trained = " or ".join(str(shape) for shape in shapes)
    raise FrameReadError(
        f"frame of shape {tuple(frame_shape)}, but this model was trained on {trained} frames: a raw "
        "multi-panel slab needs its geometry (--geometry FILE.geom); a single-panel frame of another detector needs "
        "its beam center (--center ROW,COL)"
    )


#: Relative difference of a detector's size (pixels) from the training frames' within which it counts as the same.
SIZE_TOLERANCE = 0.1


def warn_other_detector(metadata: ModelMetadata, frame_shape: tuple[int, ...], *, source: str | None = None,
                        geometry: Geometry | None = None) -> None:
    """Warn (once per shape: the caller remembers) that frames cropped through a geometry or a beam centre
    come from another detector than the model's training frames: scored without proof it works there.

    The detector is compared by the frame's shape; a raw slab given with its geometry, for a model
    trained on plain frames, by the size of the assembled image (within :data:`SIZE_TOLERANCE`):
    the slab of the same detector has another shape.
    """
    trained = trained_detector(metadata)
    shapes = [tuple(int(v) for v in shape) for shape in trained.get("frame_shapes") or ()]
    if not shapes or tuple(frame_shape) in shapes:
        return
    what = f"frames of shape {tuple(frame_shape)}"
    if geometry is not None and not trained.get("geometry"):
        size = assembled_size(geometry, frame_shape)
        if any(len(shape) == 2 and all(abs(a - b) <= SIZE_TOLERANCE * b for a, b in zip(size, shape))
               for shape in shapes):
            return
        what = f"a detector of {size[0]}x{size[1]} pixels assembled by geometry {geometry.source}"
    where = f"{source}: " if source else ""
    warnings.warn(
        f"{where}{what}, but this model was trained on {' or '.join(str(s) for s in shapes)} frames: another "
        "detector? They are cropped where the geometry or the beam centre (given, or the file's own) says and "
        "scored; check the decisions (sfx-cnn-veto evaluate) before trusting them",
        stacklevel=3,
    )


def assembled_size(geometry: Geometry, frame_shape: Sequence[int]) -> tuple[int, int]:
    """Rows and columns the geometry's panels span on the lab grid (for a slab of ``frame_shape``)."""
    x, y = geometry.pixel_maps(tuple(int(v) for v in frame_shape))
    return (int(round(float(np.nanmax(y) - np.nanmin(y)))) + 1, int(round(float(np.nanmax(x) - np.nanmin(x)))) + 1)


#: Relative difference of pixel size or camera length from the training geometry's above which the veto warns.
SCALE_TOLERANCE = 0.05


def warn_other_scale(metadata: ModelMetadata, geometry: Geometry) -> None:
    """Warn when the geometry's pixel size (``res``) or camera length (``clen``) differs by more than
    :data:`SCALE_TOLERANCE` from the training geometry's, where the model records them: Bragg spots then
    fall at other radii and have other sizes than the network learned."""
    trained = trained_detector(metadata)
    now = {"res": geometry.reference_res, "clen": geometry.float_global("clen")}
    names = {"res": "pixel size (res, pixels per metre)", "clen": "camera length (clen, m)"}
    for key, value in now.items():
        was = trained.get(key)
        if was and value and abs(value - was) > SCALE_TOLERANCE * abs(was):
            warnings.warn(f"geometry {geometry.source}: {names[key]} {value:g}, but this model was trained with "
                          f"{was:g}: spots fall at other radii than it learned; check the decisions (sfx-cnn-veto evaluate) "
                          "before trusting them", stacklevel=4)


def _and(mask: CropMask, good: np.ndarray) -> CropMask:
    return CropMask(mask.good & good)


def check_mask_fraction(crop_good: np.ndarray, cmap: CropMap, *, limit: float = MAX_BAD_FRACTION) -> None:
    """Refuse a detector mask that marks more than ``limit`` of the crop's detector pixels bad (gaps not counted)."""
    covered = cmap.good if cmap.good is not None else np.ones(cmap.shape, dtype=bool)
    n = int(covered.sum())
    bad = n - int((crop_good & covered).sum())
    if n and bad / n > limit:
        raise ConfigError(
            f"the detector mask marks {bad / n:.0%} of the crop bad (more than {limit:.0%}): is it inverted? "
            "--mask takes nonzero = good (CrystFEL's convention); a CXI file's own mask is nonzero = bad"
        )


def apply_mask(crop: np.ndarray, mask: CropMask | np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """``crop`` with its bad pixels read as background: a float32 copy, unless ``inplace`` and ``crop``
    is a float32 array that owns its memory (never a view into a reader's cache or a caller's frame).

    See :class:`~sfx_cnn_veto.io.masks.CropMask`; training fills masked pixels
    the same way (:func:`~sfx_cnn_veto.io.masks.fill_masked`).
    """
    if not isinstance(mask, CropMask):
        mask = CropMask(mask)
    if mask.shape != crop.shape:
        raise FrameReadError(f"mask of shape {mask.shape} does not match the {crop.shape} crop")
    if inplace and crop.base is None and crop.dtype == np.float32 and crop.flags.c_contiguous and crop.flags.writeable:
        out = crop
    else:
        out = np.array(crop, dtype=np.float32, order="C")
    return mask.fill(out)


class Veto:
    """A loaded model with its preprocessing and classifier backend.

    Parameters
    ----------
    model : VetoModel
    threshold : float, optional
        Overrides the model's decision threshold.
    backend : str
        Classifier backend name (``sfx-cnn-veto plugins`` lists them); ``"auto"``
        (default) takes the first of :data:`sfx_cnn_veto.core.backends.AUTO_ORDER`
        that is installed and reproduces Keras on a check batch (a fixed rule,
        no timing: every rank and every resumed run gets the same backend).
    batch_size : int
        Frames per network call in :meth:`stream`.
    threads : int, optional
        Threads for the backend (default: the cores available).
    center : (float, float), optional
        Beam centre ``(row, col)`` for the crop of a single-panel frame, overriding the model's.
    geometry : Geometry or str, optional
        The detector's CrystFEL geometry (or its ``.geom`` path): the crop is
        taken around the beam of the assembled image from the raw slab of any
        number of panels. Needed for multi-panel data.
    mask : array or str, optional
        Good-pixel mask of the full frame (nonzero = good), or a mask file
        ``FILE.h5[:DATASET]`` / ``FILE.npy``. Used only by models trained with
        masks (``use_mask``); without it, events read from CXI files use the
        file's own mask.
    file_masks : bool
        Look for each file's own CXI mask (default True) when no ``mask`` is given.
    """

    def __init__(
        self,
        model: VetoModel,
        *,
        threshold: float | None = None,
        backend: str = "auto",
        batch_size: int = DEFAULT_BATCH,
        threads: int | None = None,
        center: Sequence[float] | None = None,
        geometry: Geometry | str | None = None,
        mask: np.ndarray | str | None = None,
        file_masks: bool = True,
        pm=None,
    ) -> None:
        self.model = model
        self.metadata = model.metadata
        if isinstance(mask, str):
            from sfx_cnn_veto.io.masks import load_mask_file

            mask = load_mask_file(mask)
        self.mask = None if mask is None else np.asarray(mask) != 0
        if self.mask is not None and not self.metadata.use_mask:
            warnings.warn("this model was trained on raw frames (no detector mask): the mask given is not used",
                          stacklevel=2)
        self.file_masks = bool(file_masks)
        self._file_mask_cache: dict[tuple[str, tuple[int, int]], np.ndarray | None] = {}
        self._file_centers: dict[str, tuple[float, float] | None] = {}
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold: expected a number in [0, 1], got {threshold}")
        self.threshold = float(self.metadata.threshold if threshold is None else threshold)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {batch_size}")
        self.preprocess = Preprocessor(self.metadata, pm, center=center, geometry=geometry)
        from sfx_cnn_veto.core.backends import create_classifier

        self.backend_name, self.classifier = create_classifier(
            model.keras_model, backend,
            {"hit_index": model.hit_index, "threads": threads, "batch_size": self.batch_size}, pm
        )

    @classmethod
    def load(cls, path: str, **kwargs: Any) -> "Veto":
        """Load a ``.keras`` model file with its metadata (see :class:`Veto` for options)."""
        from sfx_cnn_veto.core.tf import import_tensorflow

        import_tensorflow(kwargs.get("threads"))  # before the model's first op: TensorFlow fixes its threads then
        return cls(VetoModel.load(path), **kwargs)

    @property
    def crop_shape(self) -> tuple[int, int]:
        return self.preprocess.crop_shape

    # -- arrays in memory ----------------------------------------------------
    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Hit probabilities for preprocessed crops ``(N, H, W)`` or ``(N, H, W, 1)``."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[..., None]
        return self.classifier.predict(batch)

    def score(self, frames: Iterable[np.ndarray] | np.ndarray, *, cropped: bool = False) -> np.ndarray | float:
        """Hit probability of each frame (NaN where a frame cannot be scored).

        ``frames``: a sequence or stack of frames, giving an array of scores;
        or one frame (see :meth:`decide`), giving one score (a float).
        """
        decided = self.decide(frames, cropped=cropped)
        if isinstance(decided, Decision):
            return decided.score
        return np.array([d.score for d in decided], dtype=np.float64)

    def decide(self, frames: Iterable[np.ndarray] | np.ndarray, *, cropped: bool = False) -> list[Decision] | Decision:
        """A :class:`Decision` for each frame, in order; one Decision for one frame.

        One frame is a 2-D array (a 2-D crop with ``cropped``), or, with a
        geometry whose raw frame has panel planes, an array of that
        ``(P, ss, fs)`` shape. A 3-D array is otherwise a stack of 2-D frames.
        """
        if isinstance(frames, np.ndarray) and self._one_frame(frames, cropped):
            return next(self.stream([(0, frames)], cropped=cropped))[1]
        return [d for _, d in self.stream(enumerate(frames), cropped=cropped)]

    def _one_frame(self, frames: np.ndarray, cropped: bool) -> bool:
        """Whether an array is one frame (True) or a stack of frames (False); refuses what is neither."""
        geometry = self.preprocess.geometry
        panel_planes = geometry is not None and len(geometry.frame_shape) == 3
        if frames.ndim < 2 or (frames.ndim > 3 and not (panel_planes and frames.ndim == 4 and not cropped)):
            raise FrameReadError(
                f"expected one frame (2-D{', or ' + str(tuple(geometry.frame_shape)) if panel_planes else ''}) "
                f"or a stack of them, got an array of shape {frames.shape}"
            )
        if frames.ndim == 2:
            return True
        return panel_planes and not cropped and tuple(frames.shape) == tuple(geometry.frame_shape)

    def stream(
        self,
        items: Iterable[tuple[Any, Any]],
        *,
        cropped: bool = False,
        batch_size: int | None = None,
    ) -> Iterator[tuple[Any, Decision]]:
        """Decide ``(key, frame)`` pairs, batching internally, yielding ``(key, Decision)`` in order.

        A ``frame`` may also be an exception (a read that failed upstream): it
        comes out as an error decision, so the event is still accounted for.
        Items may be ``(key, frame, good)`` triples, ``good`` being that
        frame's good-pixel mask (used as the veto's ``mask`` is, see :class:`Veto`),
        or ``(key, block, good, cmap)``: a fresh block read at ``cmap.region``
        of a frame (:meth:`event_crop_map`), with its full-frame mask or None.
        """
        prepared = ((item[0],) + self._prepare(item[1], cropped, item[2] if len(item) > 2 else None,
                                               cmap=item[3] if len(item) > 3 else None, owned=len(item) > 3)
                    for item in items)
        yield from self._batched(prepared, batch_size or self.batch_size)

    @property
    def uses_mask(self) -> bool:
        """Whether bad pixels are masked (the model was trained so)."""
        return bool(self.metadata.use_mask)

    def file_mask(self, path: str, frame_shape: Sequence[int]) -> np.ndarray | None:
        """The good-pixel mask for frames of ``path``: the given ``mask``, else the file's own CXI mask."""
        if not self.uses_mask:
            return None
        if self.mask is not None:
            return self.mask
        if not self.file_masks:
            return None
        key = (str(path), tuple(int(v) for v in frame_shape))
        if key not in self._file_mask_cache:
            from sfx_cnn_veto.io.masks import own_mask

            while len(self._file_mask_cache) >= FILE_MASKS_KEPT:  # a long list must not grow memory
                self._file_mask_cache.pop(next(iter(self._file_mask_cache)))
            self._file_mask_cache[key] = own_mask(key[0], key[1])
        return self._file_mask_cache[key]

    def _prepare(self, frame: Any, cropped: bool, good: np.ndarray | None = None, *,
                 cmap: CropMap | None = None, owned: bool = False) -> tuple[np.ndarray | None, str | None]:
        """``(network input, None)`` or ``(None, reason)``: never raises but for a set-up mistake
        (:class:`ConfigError`: an inverted mask, a geometry that does not fit)."""
        if isinstance(frame, BaseException):
            return None, _reason(frame)
        if good is None and self.uses_mask:
            good = self.mask
        try:
            return self.preprocess(frame, cropped=cropped, good=good, cmap=cmap, owned=owned), None
        except ConfigError:
            raise
        except VetoError as exc:
            return None, _reason(exc)
        except Exception as exc:  # noqa: BLE001 - never lose a frame to a bug
            return None, f"preprocessing failed ({type(exc).__name__}: {exc})"

    def _batched(self, prepared: Iterable[tuple[Any, Any, str | None]], size: int) -> Iterator[tuple[Any, Decision]]:
        """Fill one reused input buffer with up to ``size`` crops, score it, yield decisions in order.

        Reusing the buffer (instead of ``np.stack`` of a list) saves a 30 MB
        allocation and its page faults per batch of 64 350x350 crops.
        """
        shape = tuple(self.metadata.input_shape)
        buffer = np.empty((size,) + shape, dtype=np.float32)
        keys: list[Any] = []
        errors: list[str | None] = []
        good: list[int] = []  # positions in the batch of frames with a crop
        for key, crop, error in prepared:
            if crop is not None:
                try:
                    buffer[len(good)] = crop.reshape(shape)
                    good.append(len(keys))
                except ValueError as exc:  # a plugin's normalize changed the shape
                    error = f"preprocessing gave shape {np.shape(crop)}, the network takes {shape} ({exc})"
            keys.append(key)
            errors.append(error)
            if len(keys) >= size:
                yield from self._flush(keys, buffer, good, errors)
                keys, errors, good = [], [], []
        if keys:
            yield from self._flush(keys, buffer, good, errors)

    def _flush(self, keys, buffer, good, errors) -> Iterator[tuple[Any, Decision]]:
        scores = np.full(len(keys), np.nan)
        if good:
            try:
                scores[good] = self.classifier.predict(buffer[:len(good)])
            except Exception as exc:  # noqa: BLE001 - fail open on a backend crash
                for i in good:
                    errors[i] = f"classifier failed ({type(exc).__name__}: {exc})"
        for i, key in enumerate(keys):
            yield key, self.make_decision(scores[i], errors[i])

    def make_decision(self, score: float, error: str | None = None) -> Decision:
        """Turn a score into a decision; a non-finite score is an error, failing open."""
        if error is None and not math.isfinite(score):
            error = f"classifier returned a non-finite score ({score})"
        if error is not None:
            return Decision(float("nan"), True, error)
        return Decision(float(score), bool(score >= self.threshold), None)

    # -- files ---------------------------------------------------------------
    def event_crop_map(self, store: Any, ref: Any) -> CropMap:
        """The crop map of an event of a file: the geometry's, or the rectangle around the beam."""
        shape = tuple(store.frame_shape(ref))
        center = None
        if self.preprocess.geometry is None:
            check_single_panel(shape, source=str(ref))
            self.metadata.check_frame_shape(shape, source=str(ref))
            center = self.file_center(ref.file)
        return self.preprocess.crop_map(shape, center=center, data_file=ref.file)

    def file_center(self, path: str) -> tuple[float, float] | None:
        """A file's own beam centre (CBF ``Beam_xy``, NeXus ``beam_center_x/y``), used when the veto was
        given neither a geometry nor a centre; None otherwise. Read once per file."""
        if self.preprocess.center is not None or self.preprocess.geometry is not None:
            return None
        if path not in self._file_centers:
            from sfx_cnn_veto.io.conventions import own_beam_center

            if len(self._file_centers) >= 1024:
                self._file_centers.pop(next(iter(self._file_centers)))
            self._file_centers[path] = own_beam_center(str(path))
        return self._file_centers[path]

    def stream_events(
        self,
        events: Iterable[tuple[Any, str | None]],
        store: Any,
        *,
        prefetch: int = 2,
        on_read: Callable[[], None] | None = None,
    ) -> Iterator[tuple[Any, Decision]]:
        """Decide events of files: ``(EventRef, error_or_None)`` pairs from :func:`sfx_cnn_veto.io.store.iter_events`.

        Only the crop is read from HDF5 (the rows it spans). Reading and
        preprocessing run in a background thread, ``prefetch`` batches ahead,
        so they overlap scoring (NumPy, h5py's I/O and the numba kernels
        release the GIL).
        """

        def read_one(ref, error):
            if error is not None:
                return ref, None, _reason(FrameReadError(error))
            try:
                cmap = self.event_crop_map(store, ref)
                block = store.read(ref, cmap.region)
                good = self.file_mask(ref.file, cmap.frame_shape)
            except ConfigError:
                raise
            except VetoError as exc:
                return ref, None, _reason(exc)
            except Exception as exc:  # noqa: BLE001
                return ref, None, _reason(FrameReadError(f"{ref}: {type(exc).__name__}: {exc}"))
            return (ref,) + self._prepare(block, False, good, cmap=cmap, owned=True)

        prepared = (read_one(ref, error) for ref, error in events)
        if prefetch > 0:
            prepared = _background(prepared, maxsize=prefetch * self.batch_size)
        yield from self._batched(prepared, self.batch_size)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _background(iterable: Iterable[Any], *, maxsize: int) -> Iterator[Any]:
    """Run ``iterable`` in a daemon thread, ``maxsize`` items ahead (h5py releases the GIL on reads).

    A :class:`~sfx_cnn_veto.prefetch.Prefetcher`: every hand-off waits for room
    as long as the consumer is there, the end marker included (a consumer
    slower than any timeout still gets every item and then the end), and the
    reader's error is raised after the items it read. Leaving early does not
    wait for a read in progress.
    """
    from sfx_cnn_veto.prefetch import Prefetcher

    items = Prefetcher(iterable, depth=max(1, maxsize), name="sfx-cnn-veto-reader")
    try:
        yield from items
    finally:
        items.close(wait=False)
