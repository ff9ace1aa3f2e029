"""Classifier backends: how a trained Keras model is run on a batch.

``keras``
    A ``tf.function`` with a fixed input signature ``(None, H, W, 1)``: traced
    once, no per-call retracing, none of ``model.predict``'s ~90 ms overhead.
``numba``
    Fused compiled kernels built from the same Keras weights
    (:mod:`sfx_cnn_veto.core.fused`); 2-4x faster on the paper's network here.
``auto`` (the default)
    Of the backends in :data:`AUTO_ORDER` that are registered, installed,
    support the network and match Keras at load, the fastest on a small
    timed batch; ``keras`` when it is the only one.
Other backends register through ``sfxveto_backends``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sfx_cnn_veto.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

#: Backends ``auto`` loads and times (measured figures: docs/benchmark.md); keras last, the fallback.
AUTO_ORDER = ("numba", "keras")


def create_classifier(model: Any, name: str, options: dict[str, Any], pm=None) -> tuple[str, Any]:
    """``(backend name, classifier)`` for backend ``name``.

    ``"auto"`` loads every backend of :data:`AUTO_ORDER` that is registered,
    installed and reproduces Keras on this network, times each on a small
    batch (best of 3), and keeps the fastest: the fused kernels win by 2-4x
    on the paper's network, where one wide first convolution dominates, but
    not on every architecture. A backend that cannot load is skipped; the
    last one (``keras``) must load.
    """
    from sfx_cnn_veto import manager

    specs = manager.backends(pm)
    if name != "auto":
        if name not in specs:
            raise ConfigError(f"backend {name!r} is not registered (have: auto, {', '.join(sorted(specs))})")
        return name, specs[name].create(model, options)
    loaded: list[tuple[str, Any]] = []
    reasons = []
    for candidate in AUTO_ORDER:
        if candidate not in specs:
            continue
        try:
            loaded.append((candidate, specs[candidate].create(model, options)))
        except (MissingDependencyError, ConfigError) as exc:
            if candidate == AUTO_ORDER[-1] and not loaded:
                raise
            reasons.append(f"{candidate}: {exc}")
            log.info("backend %s not used: %s", candidate, exc)
    if not loaded:
        raise ConfigError("no usable classifier backend (" + "; ".join(reasons) + ")")
    if len(loaded) == 1:
        return loaded[0]
    timings = {name: _best_time(clf, model, int(options.get("batch_size") or 16)) for name, clf in loaded}
    best = min(loaded, key=lambda item: timings[item[0]])
    log.info("backend auto: %s (seconds a batch: %s)", best[0],
             ", ".join(f"{k} {v:.4f}" for k, v in timings.items()))
    best[1].auto_timings = timings
    return best


def _best_time(classifier: Any, model: Any, batch: int, repeats: int = 3) -> float:
    """Best of ``repeats`` wall times of one call on ``min(batch, 16)`` synthetic frames (after a warm-up)."""
    import time

    shape = tuple(int(d) for d in model.input_shape[1:])
    x = np.random.default_rng(0).standard_normal((max(1, min(batch, 16)),) + shape).astype(np.float32)
    classifier.predict(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.predict(x)
        best = min(best, time.perf_counter() - start)
    return best


class KerasClassifier:
    """Runs ``model(x, training=False)`` through one compiled ``tf.function``.

    Parameters
    ----------
    model : keras.Model
        Trained network returning class probabilities ``(N, C)``.
    hit_index : int
        Column of the hit class.
    """

    name = "keras"

    def __init__(self, model: Any, hit_index: int = 1, *, threads: int | None = None) -> None:
        from sfx_cnn_veto.core.tf import import_tensorflow

        tf = import_tensorflow(threads)
        self.model = model
        self.hit_index = hit_index
        shape = (None,) + tuple(int(d) for d in model.input_shape[1:])
        spec = tf.TensorSpec(shape=shape, dtype=tf.float32)

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def _predict(x):
            return model(x, training=False)[:, hit_index]

        self._predict = _predict

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Hit probabilities of a float32 batch ``(N, H, W, 1)``."""
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float64)
        out = self._predict(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(out, dtype=np.float64)


def create_keras(model: Any, options: dict[str, Any]) -> KerasClassifier:
    return KerasClassifier(model, options.get("hit_index", 1), threads=options.get("threads"))
