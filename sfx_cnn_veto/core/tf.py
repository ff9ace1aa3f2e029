"""Import TensorFlow/Keras once, with settings that suit a 2-core CPU.

oneDNN is off by default on AMD CPUs in TensorFlow 2.21 and gives 2.4-4.8x
here, so it is switched on unless the user set ``TF_ENABLE_ONEDNN_OPTS``.
Threads default to the cores available (``SFX_CNN_VETO_THREADS`` overrides).
"""

from __future__ import annotations

import contextlib
import functools
import os


def default_threads() -> int:
    env = os.environ.get("SFX_CNN_VETO_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=None)
def import_tensorflow(threads: int | None = None):
    """TensorFlow, imported once with oneDNN on and thread pools set."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _quiet_stderr():
            import tensorflow as tf

            tf.nn.conv2d(tf.zeros((1, 4, 4, 1)), tf.zeros((2, 2, 1, 1)), 1, "VALID")  # first-op banner
    except ImportError as exc:  # pragma: no cover - a dependency
        from sfx_cnn_veto.errors import MissingDependencyError

        raise MissingDependencyError("tensorflow-cpu", purpose="the CNN") from exc
    n = threads or default_threads()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, n))
    except RuntimeError:
        pass  # already initialised by the host program: keep its settings
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
