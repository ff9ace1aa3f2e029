"""The frame-source interface every reader implements."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

Region = tuple[slice, slice]


class FrameSource:
    """An open file of one or more frames.

    Readers return one of these from ``ReaderSpec.open(path, options)``.
    """

    path: str

    def events(self) -> Sequence[str | None]:
        """CrystFEL event IDs of every frame (``["//0", "//1", ...]``), or ``[None]``."""
        raise NotImplementedError

    def frame_shape(self) -> tuple[int, int]:
        """``(slow scan, fast scan)`` shape of one frame."""
        raise NotImplementedError

    def read(self, event: str | None, region: Region | None = None) -> np.ndarray:
        """One frame (or only ``region`` of it) as a 2-D array, dtype as stored."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
