"""Classifier backends: how a trained Keras model is run on a batch.

``keras``
    A ``tf.function`` with a fixed input signature ``(None, H, W, 1)``: traced
    once, no per-call retracing, none of ``model.predict``'s ~90 ms overhead.
``numba``
    Fused compiled kernels built from the same Keras weights
    (:mod:`sfx_cnn_veto.core.fused`); 2-4x faster on the paper's network here.
``auto`` (the default)
    The first backend of :data:`AUTO_ORDER` that is registered, installed,
    supports the network and reproduces Keras on a check batch at load: a
    fixed rule, no timing, so the same installation always resolves ``auto``
    to the same backend (and the same scores).
Other backends register through ``sfxveto_backends``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sfx_cnn_veto.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

#: Backends ``auto`` tries, in order (numba is 2-4x faster on the paper's network: docs/benchmark.md);
#: keras last, the fallback.
AUTO_ORDER = ("numba", "keras")


def create_classifier(model: Any, name: str, options: dict[str, Any], pm=None) -> tuple[str, Any]:
    """``(backend name, classifier)`` for backend ``name``; ``"auto"`` returns the backend it resolved to.

    ``"auto"`` takes the first backend of :data:`AUTO_ORDER` that is
    registered, installed and loads (the numba backend loads only when it
    reproduces Keras on a check batch, see
    :meth:`~sfx_cnn_veto.core.fused.FusedClassifier.verify`); the last one
    (``keras``) must load. Nothing is timed: the choice depends on what is
    installed and on the network, never on the load of the machine.
    """
    from sfx_cnn_veto import manager

    specs = manager.backends(pm)
    if name != "auto":
        if name not in specs:
            raise ConfigError(f"backend {name!r} is not registered (have: auto, {', '.join(sorted(specs))})")
        return name, specs[name].create(model, options)
    reasons = []
    candidates = [c for c in AUTO_ORDER if c in specs]
    for candidate in candidates:
        try:
            classifier = specs[candidate].create(model, options)
        except (MissingDependencyError, ConfigError) as exc:
            if candidate == candidates[-1]:
                raise
            reasons.append(f"{candidate}: {exc}")
            log.info("backend %s not used: %s", candidate, exc)
            continue
        log.info("backend auto: %s%s", candidate, f" ({'; '.join(reasons)})" if reasons else "")
        return candidate, classifier
    raise ConfigError("no usable classifier backend (none of " + ", ".join(AUTO_ORDER) + " is registered)")


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
