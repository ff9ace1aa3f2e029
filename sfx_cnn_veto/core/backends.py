"""Classifier backends: how a trained Keras model is run on a batch.

``keras``
    A ``tf.function`` with a fixed input signature ``(None, H, W, 1)``: traced
    once, no per-call retracing, none of ``model.predict``'s ~90 ms overhead.
Other backends (faster runtimes) register through ``sfxveto_backends``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
