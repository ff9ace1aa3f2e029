"""Model files: a Keras ``.keras`` archive with the veto's metadata inside it.

The metadata (``sfx_cnn_veto.json`` inside the zip, beside Keras's own
``config.json``) holds everything needed to reproduce a decision anywhere:
crop, normalization, input shape, class order, decision threshold,
architecture, package version, training provenance and metrics. One file
travels; nothing can get separated from it.

Loading uses Keras ``safe_mode=True``: a model with a ``Lambda`` layer (code)
is refused, never executed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from sfx_cnn_veto import __version__
from sfx_cnn_veto.errors import FrameReadError, ModelFormatError

METADATA_NAME = "sfx_cnn_veto.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about how to use it."""

    architecture: str
    input_shape: tuple[int, int, int]
    crop_shape: tuple[int, int]
    crop_center: tuple[float, float] | None = None
    normalize: str = "robust"
    normalize_params: dict[str, Any] = field(default_factory=dict)
    class_order: tuple[str, ...] = ("miss", "hit")
    threshold: float = 0.5
    #: bad pixels (the detector mask) read as background in training; the veto then does
    #: the same (models without the key: False, raw frames)
    use_mask: bool = False
    package_version: str = __version__
    format_version: int = FORMAT_VERSION
    created: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: a per-run calibration of ``threshold`` (``sfx-cnn-veto calibrate``): the run, the counts, the
    #: sensitivity's Wilson interval, the threshold before (files without the key: not calibrated)
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model") -> "ModelMetadata":
        required = ("architecture", "input_shape", "crop_shape")
        missing = [key for key in required if key not in data]
        if missing:
            raise ModelFormatError(f"{source}: metadata lacks {', '.join(missing)}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFormatError(
                f"{source}: unknown metadata keys {', '.join(unknown)} (expected some of {', '.join(sorted(known))});"
                " was it written by a newer sfx-cnn-veto?"
            )
        try:
            values = dict(data)
            values["input_shape"] = tuple(int(v) for v in data["input_shape"])
            values["crop_shape"] = tuple(int(v) for v in data["crop_shape"])
            if data.get("crop_center") is not None:
                values["crop_center"] = tuple(float(v) for v in data["crop_center"])
            values["class_order"] = tuple(data.get("class_order", ("miss", "hit")))
            values["threshold"] = float(data.get("threshold", 0.5))
            values["use_mask"] = bool(data.get("use_mask", False))
            meta = cls(**values)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: malformed metadata ({exc})") from exc
        if len(meta.input_shape) != 3 or len(meta.crop_shape) != 2:
            raise ModelFormatError(
                f"{source}: expected input_shape (H, W, C) and crop_shape (H, W), "
                f"got {meta.input_shape} and {meta.crop_shape}"
            )
        if tuple(meta.input_shape[:2]) != tuple(meta.crop_shape):
            raise ModelFormatError(
                f"{source}: crop {meta.crop_shape} does not match the network input {meta.input_shape}"
            )
        if "hit" not in meta.class_order:
            raise ModelFormatError(f"{source}: class_order {meta.class_order} has no 'hit' class")
        if not 0.0 <= meta.threshold <= 1.0:
            raise ModelFormatError(f"{source}: threshold {meta.threshold} is outside [0, 1]")
        if not isinstance(meta.calibration, dict):
            raise ModelFormatError(f"{source}: calibration is not a JSON object ({type(meta.calibration).__name__})")
        return meta

    def check_frame_shape(self, frame_shape: Sequence[int], *, source: str = "") -> None:
        """Refuse frames the model cannot crop (clear error naming both shapes)."""
        ch, cw = self.crop_shape
        if len(frame_shape) != 2 or frame_shape[0] < ch or frame_shape[1] < cw:
            where = f"{source}: " if source else ""
            raise FrameReadError(
                f"{where}frame of shape {tuple(frame_shape)} does not fit this model's "
                f"{ch}x{cw} crop (architecture {self.architecture})"
            )


class VetoModel:
    """A trained Keras model and its metadata."""

    def __init__(self, keras_model: Any, metadata: ModelMetadata, path: str | None = None) -> None:
        self.keras_model = keras_model
        self.metadata = metadata
        self.path = path

    @property
    def hit_index(self) -> int:
        return self.metadata.class_order.index("hit")

    # -- saving -------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> str:
        """Write ``path`` (must end in ``.keras``) atomically, metadata inside."""
        path = os.fspath(path)
        if not path.endswith(".keras"):
            raise ModelFormatError(f"{path}: model files must end in '.keras'")
        meta = self.metadata
        if not meta.created:
            meta = ModelMetadata(**{**asdict(meta), "created": _dt.datetime.now(_dt.timezone.utc).isoformat()})
            self.metadata = meta
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".keras", dir=directory)
        os.close(fd)
        try:
            self.keras_model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_NAME, meta.to_json())
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.path = path
        return path

    # -- loading ------------------------------------------------------------
    @classmethod
    def read_metadata(cls, path: str | os.PathLike) -> ModelMetadata:
        """The metadata alone (no TensorFlow import)."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelFormatError(f"{path}: model file not found")
        try:
            with zipfile.ZipFile(path) as archive:
                if METADATA_NAME not in archive.namelist():
                    raise ModelFormatError(
                        f"{path}: a Keras file without sfx-cnn-veto metadata ({METADATA_NAME}); "
                        "train it with 'sfx-cnn-veto train' or add metadata with sfx_cnn_veto.core.model.attach_metadata"
                    )
                data = json.loads(archive.read(METADATA_NAME).decode("utf-8"))
        except zipfile.BadZipFile as exc:
            raise ModelFormatError(f"{path}: not a .keras model file (not a zip archive)") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path}: metadata is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ModelFormatError(f"{path}: metadata is not a JSON object")
        return ModelMetadata.from_dict(data, source=path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VetoModel":
        """Load a model file (``safe_mode=True``) and check it against its metadata."""
        path = os.fspath(path)
        meta = cls.read_metadata(path)
        failed = (meta.training or {}).get("failed")
        if failed:
            warnings.warn(f"{path}: this model failed its training ({failed}): its decisions are not to be trusted",
                          stacklevel=2)
        from sfx_cnn_veto.core.tf import import_keras

        keras = import_keras()
        _register_custom_objects()
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except ValueError as exc:
            text = str(exc)
            if "Lambda" in text or "safe_mode" in text:
                raise ModelFormatError(
                    f"{path}: refused: the model contains a Lambda layer (arbitrary code), "
                    "which is never loaded"
                ) from exc
            raise ModelFormatError(f"{path}: Keras cannot load it ({text.splitlines()[0] if text else exc})") from exc
        except Exception as exc:  # noqa: BLE001 - Keras raises many kinds on corrupt files
            raise ModelFormatError(f"{path}: Keras cannot load it ({type(exc).__name__}: {exc})") from exc
        shape = tuple(int(d) for d in model.input_shape[1:])
        if shape != tuple(meta.input_shape):
            raise ModelFormatError(
                f"{path}: metadata says input {tuple(meta.input_shape)}, the network takes {shape}"
            )
        out = model.output_shape[-1]
        if out != len(meta.class_order):
            raise ModelFormatError(
                f"{path}: the network has {out} outputs, metadata names {len(meta.class_order)} classes"
            )
        return cls(model, meta, path)


def _register_custom_objects() -> None:
    """Import modules that register custom Keras layers (built-in and plugins')."""
    from sfx_cnn_veto import manager

    manager.architectures()  # plugin modules are imported and their layers registered


def attach_metadata(path: str | os.PathLike, metadata: ModelMetadata) -> None:
    """Add or replace the metadata of an existing ``.keras`` file."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for item in src.infolist():
                if item.filename != METADATA_NAME:
                    dst.writestr(item, src.read(item.filename))
            dst.writestr(METADATA_NAME, metadata.to_json())
        os.chmod(tmp, _umask_mode())
        shutil.move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask_mode() -> int:
    """The mode a new file gets from the umask (``tempfile.mkstemp`` makes 0600 files, unreadable to the group)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def default_model_path() -> str | None:
    """The small model shipped inside the package (``sfx_cnn_veto/data/default.keras``), if any."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "default.keras")
    return here if os.path.exists(here) else None
