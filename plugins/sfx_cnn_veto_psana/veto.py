"""Call the veto from a psana script: ``PsanaVeto.load(...).events(run)``.

Example (psana2)::

    from psana import DataSource
    from sfx_cnn_veto_psana import PsanaVeto

    ds = DataSource(exp="mfxl1234", run=12)
    run = next(ds.runs())
    veto = PsanaVeto.load("model.keras", detector=run.Detector("jungfrau"), source="calib")
    for evt, decision in veto.events(run):      # every event, in order, batched inside
        if decision.is_hit:
            ...

and the same under LCLS-I psana (psana1)::

    ds = psana.DataSource("exp=cxic0415:run=90:smd")
    veto = PsanaVeto.load("model.keras", detector=psana.Detector("DscCsPad"))
    for evt, decision in veto.hits(ds):          # hits (and undecided frames) only
        ...

Multi-panel detectors: ``det.raw.calib(evt)`` and ``det.raw.raw(evt)`` of a
JUNGFRAU, ePix or CSPAD are ``(segments, ss, fs)`` arrays. The crop map is
built once, on the first such frame, from the detector's geometry: a
``geometry=`` file when given (CrystFEL ``.geom`` or psana ``.data``), else
psana's own pixel coordinates
(:func:`~sfx_cnn_veto_psana.geometry.detector_geometry`); each event then
costs one gather of the crop's pixels, no image is assembled. Without either,
every such event is an error decision (kept), never a silent crop.

Which psana runs is told by ``psana.xtc_version == 2`` (psana2); without it,
the LCLS-I API is used: ``det.calib(evt)`` instead of ``det.raw.calib(evt)``,
``evt.get(psana.EventId).time()`` instead of ``evt.timestamp``.

Every event that goes in comes out exactly once, in order, with a
:class:`~sfx_cnn_veto.core.pipeline.Decision`. A frame psana returns as
``None``, or whose read raises, is an error decision that fails open
(``is_hit=True``): a lost hit is the worst outcome.

The model is loaded on the first event, so MPI ranks that never receive
events (psana2's smd0, event builders, smalldata servers) never import
TensorFlow.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError, FrameReadError, MissingDependencyError, VetoError

log = logging.getLogger(__name__)

SOURCES = ("calib", "image", "raw")

_INSTALL_HINT = (
    "psana2 is needed: apt-get install libkrb5-dev libopenmpi-dev openmpi-bin, "
    "then pip install 'sfx-cnn-veto[psana]' (psana==4.3.4)"
)


def import_psana():
    """``import psana`` with an install hint when it is missing."""
    try:
        import psana
    except ImportError as exc:
        raise MissingDependencyError(f"cannot import psana ({exc}); {_INSTALL_HINT}") from exc
    return psana


def psana_generation(psana_module: Any) -> int:
    """2 for psana2 (LCLS-II, ``psana.xtc_version == 2``), else 1 (LCLS-I psana)."""
    return 2 if getattr(psana_module, "xtc_version", None) == 2 else 1


def iter_events(run: Any) -> Iterator[Any]:
    """The events of a psana2 run, a psana1 run or DataSource (``.events()``), or any iterable of events."""
    events = getattr(run, "events", None)
    if callable(events):
        return iter(events())
    try:
        return iter(run)
    except TypeError as exc:
        raise ConfigError(
            f"expected a psana run or DataSource (with .events()) or an iterable of events, got {type(run).__name__}"
        ) from exc


class PsanaVeto:
    """The veto bound to one psana detector.

    Parameters
    ----------
    veto : sfx_cnn_veto.Veto or callable
        A loaded :class:`~sfx_cnn_veto.core.pipeline.Veto`, or a function
        returning one (called on the first event: see :meth:`load`).
    detector : psana detector
        ``run.Detector(name)`` (psana2) or ``psana.Detector(name)`` (psana1).
        ``None`` is accepted for ranks that get no events (psana2's smalldata
        servers, whose ``run.Detector`` returns ``None``).
    source : {"calib", "raw", "image"}
        Which array to score: per-panel calibrated or raw data, or the image
        assembled with the detector geometry. Multi-panel ``calib``/``raw``
        arrays ``(segments, ss, fs)`` are cropped through the detector's
        geometry (see ``geometry``), without assembling an image.
    center : (row, col), "geometry", "model" or None
        Crop centre in pixels of the scored array. ``None``: for ``image``,
        the beam position (geometry origin) when psana exposes the detector
        geometry and it matches the assembled image, otherwise the model's
        centre, otherwise the frame centre. ``"geometry"``: require the
        geometry (error if unavailable). ``"model"``: never use geometry.
    psana : module, optional
        The psana module (default: ``import psana``); it tells psana2 from psana1.
    frame_kwargs : dict, optional
        Passed to the detector method (e.g. ``{"mapmode": 2}`` for ``image``).
    geometry : Geometry or str, optional
        The geometry of the frames scored: a CrystFEL ``.geom`` path (one
        panel plane per segment, ``dim1``, for ``(segments, ss, fs)``
        frames), a psana geometry constants file (``*.data``, read with
        psana's ``GeometryAccess``), or a parsed ``Geometry``. Used for every
        frame when given. Without it, multi-panel frames use psana2's own
        pixel coordinates (``det.raw._pixel_coords``) when the detector has
        a geometry. A given file wins: offline psana has only the design
        geometry, a refined one is better.
    """

    def __init__(
        self,
        veto: Any,
        *,
        detector: Any,
        source: str = "calib",
        center: Sequence[float] | str | None = None,
        psana: Any = None,
        frame_kwargs: dict | None = None,
        geometry: Any = None,
    ) -> None:
        if source not in SOURCES:
            raise ConfigError(f"source: expected one of {', '.join(SOURCES)}, got {source!r}")
        if isinstance(center, str) and center not in ("geometry", "model"):
            raise ConfigError(f"center: expected (row, col), 'geometry', 'model' or None, got {center!r}")
        if center is not None and not isinstance(center, str):
            center = tuple(float(v) for v in center)
            if len(center) != 2:
                raise ConfigError(f"center: expected (row, col), got {center}")
        self.detector = detector
        self.source = source
        self.center_option = center
        self.frame_kwargs = dict(frame_kwargs or {})
        self.psana = import_psana() if psana is None else psana
        self.generation = psana_generation(self.psana)
        if callable(veto) and not hasattr(veto, "stream"):
            self._veto, self._factory = None, veto
        else:
            self._veto, self._factory = veto, None
        #: the crop centre in use, once known (``None``: the model's or the frame centre)
        self.center: tuple[float, float] | None = center if isinstance(center, tuple) else None
        self._center_done = center is not None and not isinstance(center, str)
        self.center_origin = "user" if self._center_done else None
        if geometry is not None and not hasattr(geometry, "panels"):
            from sfx_cnn_veto.io.geometry import read_geometry
            from sfx_cnn_veto_psana.geometry import is_psana_geometry_file, read_psana_geometry

            # a wrong path fails now, on every rank
            read = read_psana_geometry if is_psana_geometry_file(geometry) else read_geometry
            geometry = read(str(geometry))
        if geometry is not None and isinstance(center, tuple):
            raise ConfigError("give a crop centre or a geometry, not both (a geometry puts the beam at x = y = 0; "
                              "move its panels' corner_x/corner_y to correct it)")
        self.geometry_option = geometry
        #: the geometry multi-panel frames are cropped with, once known, and where it came from
        self.geometry = None
        self.geometry_origin: str | None = None
        self._mappers: dict[str, Any] = {}
        self._no_geometry: str | None = None

    @classmethod
    def load(
        cls,
        path: str | None = None,
        *,
        detector: Any,
        source: str = "calib",
        center: Sequence[float] | str | None = None,
        threshold: float | None = None,
        backend: str = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
        psana: Any = None,
        frame_kwargs: dict | None = None,
        mask: Any = None,
        geometry: Any = None,
    ) -> "PsanaVeto":
        """Bind a model file to a detector; the model itself is loaded on the first event.

        ``path`` defaults to the model shipped with sfx-cnn-veto. The file's
        metadata is checked now (no TensorFlow import), so a wrong path fails
        at once, on every rank. ``mask``: the detector's good-pixel mask as
        the frames are shaped (an array, nonzero = good, or ``FILE.h5:/DATASET``),
        for models trained with masks: its bad pixels read as background.
        ``geometry``: the frames' geometry, a CrystFEL ``.geom`` or psana
        ``.data`` file (see :class:`PsanaVeto`).
        """
        from sfx_cnn_veto.core.model import VetoModel, default_model_path

        if path is None:
            path = default_model_path()
            if path is None:
                raise ConfigError("no model given and no default model is shipped; pass the path of a .keras model")
        VetoModel.read_metadata(path)  # fail early, cheaply
        options: dict[str, Any] = {"threshold": threshold, "backend": backend, "threads": threads, "mask": mask}
        if batch_size is not None:
            options["batch_size"] = batch_size

        def factory():
            from sfx_cnn_veto.core.pipeline import Veto

            return Veto.load(path, **options)

        return cls(factory, detector=detector, source=source, center=center, psana=psana, frame_kwargs=frame_kwargs,
                   geometry=geometry)

    # -- the model -------------------------------------------------------------
    @property
    def veto(self):
        """The :class:`~sfx_cnn_veto.core.pipeline.Veto` (loaded on first use)."""
        if self._veto is None:
            self._veto = self._factory()
            self._factory = None
        return self._veto

    # -- per event ---------------------------------------------------------------
    def timestamp(self, evt: Any) -> int:
        """The event's 64-bit timestamp: ``evt.timestamp`` (psana2) or ``sec << 32 | nsec`` of ``EventId.time()`` (psana1)."""
        if self.generation == 2:
            return int(evt.timestamp)
        eid = evt.get(self.psana.EventId)
        if eid is None:
            raise FrameReadError("psana1 event has no EventId")
        sec, nsec = eid.time()
        return (int(sec) << 32) | int(nsec)

    def fiducials(self, evt: Any) -> int | None:
        """psana1: the event's fiducials (with the time, they address it in ``idx`` mode); psana2: None."""
        if self.generation == 2:
            return None
        eid = evt.get(self.psana.EventId)
        return None if eid is None else int(eid.fiducials())

    def frame(self, evt: Any) -> np.ndarray:
        """The array to score for one event; raises :class:`FrameReadError` when psana gives none."""
        if self.detector is None:
            raise FrameReadError(f"no detector to read {self.source!r} from (run.Detector returned None)")
        owner = self.detector.raw if self.generation == 2 else self.detector
        method = getattr(owner, self.source, None)
        if method is None:
            where = "det.raw" if self.generation == 2 else "det"
            raise FrameReadError(f"the detector has no {where}.{self.source}(evt)")
        array = method(evt, **self.frame_kwargs)
        if array is None:
            where = "det.raw" if self.generation == 2 else "det"
            raise FrameReadError(f"psana returned None from {where}.{self.source}(evt)")
        array = np.asarray(array)
        if array.ndim == 3 and array.shape[0] == 1 and not self._geometry_has_planes():
            array = array[0]  # one panel
        if array.ndim not in (2, 3):
            raise FrameReadError(
                f"{self.source} array has shape {array.shape}; expected a 2-D frame or (segments, ss, fs)"
            )
        return array

    def _geometry_has_planes(self) -> bool:
        given = self.geometry_option
        return given is not None and len(given.frame_shape) == 3

    def _read(self, evt: Any) -> Any:
        try:
            return self.frame(evt)
        except VetoError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a psana failure on one event must not lose it
            return FrameReadError(f"reading {self.source} failed ({type(exc).__name__}: {exc})")

    # -- multi-panel frames ---------------------------------------------------
    def panel_geometry(self):
        """The geometry multi-panel frames are cropped with: ``geometry=``, the veto's own, or psana's.

        Resolved once. Raises :class:`FrameReadError` (one line, naming both
        fixes) when there is none, so each such event is an error decision.
        """
        if self.geometry is not None:
            return self.geometry
        if self._no_geometry is not None:
            raise FrameReadError(self._no_geometry)
        found, origin = self.geometry_option, "user"
        if found is None and self._veto is not None and getattr(self._veto.preprocess, "geometry", None) is not None:
            found, origin = self._veto.preprocess.geometry, "veto"
        if found is None and self.generation == 2 and self.detector is not None:
            from sfx_cnn_veto_psana.geometry import detector_geometry

            try:
                found, origin = detector_geometry(self.detector), "psana"
            except ConfigError as exc:  # psana's geometry cannot be tiled: say so on every event, keep them
                self._no_geometry = f"{exc}".splitlines()[0]
                raise FrameReadError(self._no_geometry) from exc
        if found is None:
            where = "psana gives none for this detector" if self.generation == 2 else "psana1's is not read"
            self._no_geometry = (
                f"{self.source} frames are multi-panel (segments, ss, fs) and have no geometry ({where}): pass "
                "the detector's geometry (PsanaVeto.load(..., geometry='det.geom' or psana's '.data'), --geometry) "
                "or use source='image'"
            )
            raise FrameReadError(self._no_geometry)
        self.geometry, self.geometry_origin = found, origin
        log.info("multi-panel frames cropped with %s (%d panels, from %s)", found.source, len(found.panels), origin)
        return found

    def crop_map(self, frame_shape: Sequence[int]):
        """The :class:`~sfx_cnn_veto.core.crop.CropMap` of this adapter's frames of ``frame_shape``, or None.

        Multi-panel ``(segments, ss, fs)`` frames, and any frame when
        ``geometry=`` was given: the geometry's map (see :meth:`panel_geometry`).
        Other 2-D frames: the rectangle around a centre given or found in
        psana's geometry; None when the veto's own crop applies (its geometry,
        the model's or the frame centre). Built once per shape.
        """
        from sfx_cnn_veto.core.crop import CropMapper

        if len(frame_shape) == 3 or self.geometry_option is not None:
            geometry = self.panel_geometry()
            if self.center_option is not None and not isinstance(self.center_option, str):
                raise ConfigError(
                    f"center={self.center_option}: frames cropped through a geometry have the beam at x = y = 0 "
                    "of the geometry; move its panels (corner_x/corner_y) instead of giving a centre"
                )
            key, make = "panels", lambda: CropMapper(self.veto.crop_shape, geometry=geometry)
        elif self.center is not None:
            key, make = "centre", lambda: CropMapper(self.veto.crop_shape, center=self.center)
        else:
            return None
        if key not in self._mappers:
            self._mappers[key] = make()
        return self._mappers[key](frame_shape)

    def _item(self, evt: Any, frame: Any) -> tuple:
        """What :meth:`Veto.stream` takes for one event: the frame, or its block with its crop map."""
        if not isinstance(frame, np.ndarray):
            return evt, frame
        try:
            cmap = self.crop_map(frame.shape)
        except FrameReadError as exc:
            return evt, exc
        if cmap is None:
            return evt, frame
        return evt, cmap.block(frame), None, cmap

    # -- crop centre ----------------------------------------------------------
    def geometry_center(self, evt: Any, frame_shape: Sequence[int]) -> tuple[float, float] | None:
        """The beam position (geometry origin, x=y=0) in the assembled image, or None if unknown.

        psana2: ``det.raw._det_geo().point_coord_indexes(p_um=(0, 0))``;
        psana1: ``det.point_indexes(evt, pxy_um=(0, 0))``. Used only when the
        geometry's image has exactly the shape of the frame psana returned
        (so a camera whose ``image`` is not assembled from geometry, like the
        Opal, is left to the model's or the frame centre).
        """
        if self.source != "image" or self.detector is None:
            return None
        try:
            if self.generation == 2:
                raw = self.detector.raw
                geo = raw._det_geo() if hasattr(raw, "_det_geo") else None
                if geo is None:
                    return None
                rows, cols = geo.get_pixel_coord_indexes()
                if rows is None:
                    return None
                row, col = geo.point_coord_indexes(p_um=(0, 0), fract=True)
            else:
                if not hasattr(self.detector, "point_indexes"):
                    return None
                rows, cols = self.detector.indexes_xy(evt) if hasattr(self.detector, "indexes_xy") else (None, None)
                row, col = self.detector.point_indexes(evt, pxy_um=(0, 0))
        except Exception as exc:  # noqa: BLE001 - no geometry is an ordinary case
            log.info("no detector geometry for the crop centre (%s: %s)", type(exc).__name__, exc)
            return None
        if rows is not None:
            shape = (int(np.max(rows)) + 1, int(np.max(cols)) + 1)
            if tuple(shape) != tuple(frame_shape[:2]):
                log.info("geometry image %s differs from the frame %s: not using its centre", shape, tuple(frame_shape))
                return None
        if row is None or col is None:
            return None
        return float(np.ravel(row)[0]), float(np.ravel(col)[0])

    def _settle_center(self, evt: Any, frame: Any) -> None:
        """Fix the crop centre on the first readable frame."""
        if self._center_done or isinstance(frame, BaseException):
            return
        self._center_done = True
        if np.ndim(frame) == 3 or self.geometry_option is not None:  # the beam: x = y = 0 of the geometry
            self.center_origin = "user" if self.center is not None else "geometry"
            return
        center = None
        if self.center_option != "model":
            center = self.geometry_center(evt, np.shape(frame))
        if center is None and self.center_option == "geometry":
            raise ConfigError(
                f"center='geometry': psana gives no detector geometry matching the {self.source} frame "
                f"of shape {np.shape(frame)}; pass center=(row, col) or center=None"
            )
        if center is not None:
            self.center, self.center_origin = center, "geometry"
        else:
            self.center_origin = "model" if self.veto.metadata.crop_center is not None else "frame centre"
            return
        log.info("crop centre %s from the detector geometry", center)

    # -- streams ----------------------------------------------------------------
    def events(self, run: Any, *, batch_size: int | None = None) -> Iterator[tuple[Any, Any]]:
        """``(evt, Decision)`` for every event of ``run``, in order, each exactly once.

        Frames are scored ``batch_size`` at a time (default: the veto's), so an
        event is yielded after the rest of its batch has been read; psana2
        events stay readable after that (each holds its own data).
        """
        pairs = ((evt, self._read(evt)) for evt in iter_events(run))
        first = next(pairs, None)
        if first is None:
            return  # no events on this rank: the model is never loaded

        def all_pairs():
            self._settle_center(*first)
            yield self._item(*first)
            for evt, frame in pairs:
                if not self._center_done:
                    self._settle_center(evt, frame)
                yield self._item(evt, frame)

        yield from self.veto.stream(all_pairs(), batch_size=batch_size)

    def hits(self, run: Any, *, batch_size: int | None = None, audit: Any = None) -> Iterator[tuple[Any, Any]]:
        """``(evt, Decision)`` for hits only; undecided frames (errors) are kept too (fail open).

        With ``audit`` (:meth:`audited`), vetoed frames the audit's peakfinder8 calls hits are kept too.
        """
        if audit is None:
            for evt, decision in self.events(run, batch_size=batch_size):
                if decision.is_hit:
                    yield evt, decision
            return
        for evt, decision, result in self.audited(run, audit, batch_size=batch_size):
            if result.keep:
                yield evt, decision

    def audited(self, run: Any, audit: Any, *, batch_size: int | None = None) -> Iterator[tuple[Any, Any, Any]]:
        """``(evt, Decision, AuditResult)`` for every event, with the live audit.

        ``audit`` is a :class:`sfx_cnn_veto.core.audit.Audit` (e.g. :func:`psana_audit`, psana's
        peakfinder8); an event is audited by a hash of its timestamp, so serial and MPI runs audit the
        same events. ``audit.counts.estimate()`` then holds the estimate of the veto's sensitivity (on MPI,
        merge each rank's ``audit.counts.counts()``).
        """
        whole = getattr(audit.counter, "takes_segments", False)  # psana_audit's counter: (segments, ss, fs) as is
        for evt, decision in self.events(run, batch_size=batch_size):
            def frame(evt=evt):
                data = np.asarray(self.frame(evt))
                return data.reshape(-1, data.shape[-1]) if data.ndim > 2 and not whole else data  # stacked
            yield evt, decision, audit(self.timestamp(evt), frame, decision)

    def decide(self, evt: Any):
        """The decision for one event, unbatched (slower: prefer :meth:`events`)."""
        frame = self._read(evt)
        self._settle_center(evt, frame)
        return next(iter(self.veto.stream([self._item(evt, frame)], batch_size=1)))[1]


def select_timestamps(
    events: Iterable[Any], timestamps: Iterable[int], *, timestamp: Callable[[Any], int]
) -> Iterator[Any]:
    """The events whose timestamp is in ``timestamps`` (a second pass over a ``files=`` run).

    psana2 selects events itself with ``DataSource(exp=, run=, dir=,
    timestamps="hits.npy")`` (and then reads only those); it ignores
    ``timestamps=`` for ``files=`` runs, where this filter does the job.
    """
    wanted = {int(t) for t in timestamps}
    for evt in events:
        if timestamp(evt) in wanted:
            yield evt


def psana1_events_at(run: Any, timestamps: Iterable[int], fiducials: Iterable[int], *, psana: Any) -> Iterator[Any]:
    """LCLS-I second pass: read only the listed events, by random access.

    ``run`` comes from an ``idx`` DataSource (``psana.DataSource('exp=...:run=...:idx')``,
    ``next(ds.runs())``); each event is ``run.event(psana.EventTime(time, fiducials))``
    with ``time = sec << 32 | nsec`` as :meth:`PsanaVeto.timestamp` gives it.
    The table written for psana1 holds both columns (see :func:`~sfx_cnn_veto_psana.outputs.hit_rows`).
    """
    for stamp, fid in zip(timestamps, fiducials):
        yield run.event(psana.EventTime(int(stamp), int(fid)))


def psana_audit(*, fraction: float = 0.02, options: dict | None = None, labeler: str = "psana-peakfinder8",
                **kwargs: Any):
    """A :class:`~sfx_cnn_veto.core.audit.Audit` counting peaks with psana's peakfinder8 (or ``labeler``).

    ``options``: the counter's indexamajig-style settings (:mod:`sfx_cnn_veto.training.peaks`; give
    ``center``, ``mask`` or ``radius`` for the detector); ``kwargs``: ``min_peaks``, ``target_sensitivity``.
    """
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.core.audit import Audit

    specs = manager.labelers()
    if labeler not in specs:
        from sfx_cnn_veto.errors import ConfigError

        raise ConfigError(f"labeler {labeler!r} is not registered (have: {', '.join(sorted(specs))})")
    return Audit(SegmentsCounter(specs[labeler].create, options), fraction=fraction, **kwargs)


class SegmentsCounter:
    """A peak counter for psana's arrays: a 2-D frame as it is; ``(segments, ss, fs)`` stacked into one.

    A stacked array has no beam: the distance of a pixel from the stack's centre means nothing, and
    the default ``max_res`` (1200 pixels from it) would mask the outer segments of a tall stack
    (a JUNGFRAU 4M stacks to 4096 rows). So stacked segments are counted with no ``min_res``/``max_res``
    cut; 2-D frames with the options given.

    Parameters
    ----------
    create : callable
        ``create(options) -> counter`` (a labeler's, e.g. psana's peakfinder8).
    options : dict, optional
        The counter's indexamajig-style options (:mod:`sfx_cnn_veto.training.peaks`).
    """

    takes_segments = True

    def __init__(self, create: Callable[[dict], Any], options: dict | None = None) -> None:
        self._create, self._options = create, dict(options or {})
        self._flat = create(dict(self._options))  # a missing peakfinder8 or a bad option fails now
        self._stacked = None

    def __call__(self, frame: Any) -> int:
        frame = np.asarray(frame)
        if frame.ndim <= 2:
            return self._flat(frame)
        if self._stacked is None:
            self._stacked = self._create({**self._options, "min_res": 0, "max_res": float("inf")})
        return self._stacked(frame.reshape(-1, frame.shape[-1]))
