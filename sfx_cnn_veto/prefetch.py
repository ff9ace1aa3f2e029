"""An iterator run ahead in a thread: NumPy, numba (``nogil``) and h5py work overlapping the consumer's.

Used for the veto's frame reader (:func:`sfx_cnn_veto.core.pipeline._background`),
the training's augmented batches (:mod:`sfx_cnn_veto.training.batches`) and the
simulator's frames (:func:`sfx_cnn_veto.simulate.writer.write_run`).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


class Prefetcher:
    """Runs an iterator in a daemon thread, up to ``depth`` items ahead of its consumer.

    Items come out in the iterator's order. An exception raised by the
    iterator is raised again, the same object with its traceback, by the
    :func:`next` that would have returned the failed item. :meth:`close` (or
    leaving the ``with`` block) stops the thread after at most the item it is
    computing; the items made ahead are discarded (early stopping).

    ``depth=0`` runs the iterator in the caller's thread (the serial path).
    """

    def __init__(self, items: Iterator[Any], *, depth: int = 2, name: str = "sfx-cnn-veto-batches"):
        self._items = iter(items)
        self._depth = int(depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=self._depth)
            self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
            self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set() or not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failed(exc))
            return
        self._put(_DONE)

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Any:
        if self._thread is None:
            return next(self._items)
        if self._stop.is_set():
            raise StopIteration
        item = self._get()
        if item is _DONE:
            self._stop.set()
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            raise item.exc
        return item

    def _get(self) -> Any:
        """The next item, polling: a producer that died without its end marker raises, never hangs."""
        while True:
            try:
                return self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._thread.is_alive() or not self._queue.empty():
                    continue
                raise RuntimeError(f"internal: the {self._thread.name} thread ended without its end marker") from None

    def close(self, *, wait: bool = True) -> None:
        """Stop the producer and discard what it made ahead; with ``wait``, wait for it (at most the item it
        is computing). ``wait=False`` suits a reader that may sit in a slow read: the daemon thread ends on its own."""
        self._stop.set()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._thread is None:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
