"""Single-frame detector formats through fabio: CBF, EDF, TIFF, MCCD, ...

Each file is one event (no event ID). Multi-frame fabio files (EDF stacks)
expose their frames as ``//N``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sfx_cnn_veto.errors import FrameReadError, MissingDependencyError
from sfx_cnn_veto.io.base import FrameSource, Region
from sfx_cnn_veto.io.events import SINGLE_FRAME, EventRef, event_for_index

#: File patterns fabio reads that this reader claims.
PATTERNS = (
    "*.cbf", "*.edf", "*.tif", "*.tiff", "*.mccd", "*.img", "*.mar3450", "*.mar2300",
    "*.sfrm", "*.gfrm", "*.kcd", "*.msk", "*.pnm", "*.esperanto", "*.xsd", "*.raw",
    "*.cbf.gz", "*.edf.gz", "*.edf.bz2", "*.img.gz",
)


class FabioSource(FrameSource):
    def __init__(self, path: str, options: dict[str, Any] | None = None) -> None:
        try:
            import fabio
        except ImportError as exc:  # pragma: no cover - fabio is a dependency
            raise MissingDependencyError("fabio", purpose="reading CBF/EDF/TIFF frames") from exc
        self.path = path
        try:
            self._image = fabio.open(path)
        except FileNotFoundError as exc:
            raise FrameReadError(f"{path}: file not found") from exc
        except PermissionError as exc:
            raise FrameReadError(f"{path}: permission denied") from exc
        except Exception as exc:  # noqa: BLE001 - fabio raises many kinds
            raise FrameReadError(f"{path}: fabio cannot read it ({type(exc).__name__}: {exc})") from exc
        self._nframes = int(getattr(self._image, "nframes", 1) or 1)

    def events(self) -> list[str | None]:
        if self._nframes <= 1:
            return [None]
        return [event_for_index(i) for i in range(self._nframes)]

    def frame_shape(self) -> tuple[int, int]:
        return tuple(self._image.shape[-2:])  # type: ignore[return-value]

    def read(self, event: str | None, region: Region | None = None) -> np.ndarray:
        try:
            if event is None or self._nframes <= 1:
                if event not in (None, SINGLE_FRAME, "//0"):
                    raise FrameReadError(f"{self.path}: single-frame file has no event {event}")
                data = self._image.data
            else:
                index = EventRef(self.path, event).index
                if index is None:
                    raise FrameReadError(f"{self.path} {event}: names the one frame of a single-frame file, but "
                                         f"the file holds {self._nframes} frames; name one (//N)")
                if index >= self._nframes:
                    raise FrameReadError(f"{self.path} {event}: event out of range ({self._nframes} frames)")
                data = self._image.getframe(index).data
        except FrameReadError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise FrameReadError(f"{self.path} {event or ''}: cannot read frame ({exc})") from exc
        if data is None or np.ndim(data) != 2:
            raise FrameReadError(f"{self.path}: expected a 2-D frame, got {np.shape(data)}")
        return np.asarray(data if region is None else data[region])

    def close(self) -> None:
        try:
            self._image.close()
        except Exception:  # noqa: BLE001
            pass
