"""Import TensorFlow/Keras once, with settings that suit a 2-core CPU.

oneDNN is off by default on AMD CPUs in TensorFlow 2.21 and gives 2.4-4.8x
here, so it is switched on unless the user set ``TF_ENABLE_ONEDNN_OPTS``.
Threads default to the cores available (``SFX_CNN_VETO_THREADS`` overrides);
TensorFlow fixes them at its first op, so the first :func:`import_tensorflow`
call of a process decides them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings


def default_threads() -> int:
    env = os.environ.get("SFX_CNN_VETO_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: The thread counts TensorFlow was started with in this process ``(intra, inter)``, once it was.
_started: tuple[int, int] | None = None
_warned: set[int] = set()  # requests already warned about (once each)


def _env_threads(name: str) -> int | None:
    value = os.environ.get(name, "")
    return max(1, int(value)) if value.strip().isdigit() else None


def import_tensorflow(threads: int | None = None):
    """TensorFlow, imported once with oneDNN on and its thread pools set.

    TensorFlow fixes its thread pools at its first op, for the life of the
    process, so the first call decides: ``threads`` (else
    ``TF_NUM_INTRAOP_THREADS``, else :func:`default_threads`) intra-op threads
    and ``min(2, n)`` inter-op threads (``TF_NUM_INTEROP_THREADS`` overrides).
    A later call asking for another number gets a warning saying what
    TensorFlow runs with, never a silent change.
    """
    global _started
    tf = _import()
    if _started is None:
        intra = int(threads) if threads else (_env_threads("TF_NUM_INTRAOP_THREADS") or default_threads())
        inter = _env_threads("TF_NUM_INTEROP_THREADS") or min(2, intra)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError:  # the host program ran TensorFlow ops before us: its pools stay
            intra = tf.config.threading.get_intra_op_parallelism_threads() or 0
            inter = tf.config.threading.get_inter_op_parallelism_threads() or 0
        _started = (intra, inter)
        with _quiet_stderr():
            tf.nn.conv2d(tf.zeros((1, 4, 4, 1)), tf.zeros((2, 2, 1, 1)), 1, "VALID")  # first-op banner
    if threads and int(threads) != _started[0] and int(threads) not in _warned:
        _warned.add(int(threads))
        have = _threads_text(_started[0]) if _started[0] else "its default number of threads"
        warnings.warn(
            f"TensorFlow already runs in this process with {have}; {_threads_text(int(threads))} asked for "
            "cannot be set any more (TensorFlow fixes them at its first operation)", stacklevel=2)
    return tf


def _threads_text(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def tensorflow_threads() -> tuple[int, int] | None:
    """``(intra-op, inter-op)`` threads TensorFlow runs with here (0 = its default), or None before it started."""
    return _started


@functools.lru_cache(maxsize=None)
def _import():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _quiet_stderr():
            import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - a dependency
        from sfx_cnn_veto.errors import MissingDependencyError

        raise MissingDependencyError("tensorflow-cpu", purpose="the CNN") from exc
    return tf


def import_keras():
    import_tensorflow()
    import keras

    return keras


@contextlib.contextmanager
def _quiet_stderr():
    """Hide TensorFlow's C++ start-up banners (printed before absl logging starts, so
    ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them). ``SFX_CNN_VETO_TF_LOGS=1`` shows them."""
    if os.environ.get("SFX_CNN_VETO_TF_LOGS") == "1":
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no stderr
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
