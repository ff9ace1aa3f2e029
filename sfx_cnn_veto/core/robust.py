"""The robust default pipeline: a despeckling normalization and a small translation-invariant CNN.

``despeckle`` (normalization)
    Clip every pixel to the largest of its 8 neighbours, then ``robust``
    (signed log of ``(x - median) / 1.4826 MAD``). An isolated bright pixel
    (hot pixel, zinger) drops to its neighbourhood; a Bragg spot of two or more
    pixels keeps its contrast. peakfinder8 labels with ``min_pix_count >= 2``
    never count single pixels either, so the network sees what the labeller
    counts, whatever a run's hot-pixel map.

``veto`` (architecture)
    Max-pooling first (Bragg spots of 1-3 pixels survive it), three small
    3x3 convolutions with pooling, then global max and global average pooling
    (translation invariant: a beam centre that moves by tens of pixels moves
    the spots, not the answer), a 16-unit dense layer and a 2-way softmax.
    About 15 MFLOP a 350x350 frame (the paper's: 52, 88% of it in its first layer) and 5,642
    trainable parameters.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sfx_cnn_veto.core.normalize import _finite, robust


def despeckle_raw(frame: np.ndarray) -> np.ndarray:
    """``min(x, max of the 8 neighbours)`` per pixel (edges use the neighbours that exist)."""
    frame = np.asarray(frame, dtype=np.float32)
    h, w = frame.shape
    if h < 3 or w < 3:
        return frame.copy()
    pad = np.pad(frame, 1, mode="edge")
    # the max over the 8 neighbours, excluding the pixel itself: edge padding repeats the
    # pixel at the border, so use -inf padding instead
    pad[0, :] = -np.inf
    pad[-1, :] = -np.inf
    pad[:, 0] = -np.inf
    pad[:, -1] = -np.inf
    neigh = np.maximum(pad[:-2, :-2], pad[:-2, 1:-1])
    np.maximum(neigh, pad[:-2, 2:], out=neigh)
    np.maximum(neigh, pad[1:-1, :-2], out=neigh)
    np.maximum(neigh, pad[1:-1, 2:], out=neigh)
    np.maximum(neigh, pad[2:, :-2], out=neigh)
    np.maximum(neigh, pad[2:, 1:-1], out=neigh)
    np.maximum(neigh, pad[2:, 2:], out=neigh)
    return np.minimum(frame, neigh)


def despeckle(frame: np.ndarray, *, min_scale: float = 1.0, subsample: int = 4) -> np.ndarray:
    """Isolated-pixel removal (:func:`despeckle_raw`) followed by :func:`~sfx_cnn_veto.core.normalize.robust`.

    Non-finite pixels are first set to the frame's median so they neither
    spread nor count as spots (the robust step then sets them to 0).
    """
    frame, good = _finite(frame)
    if good is not None:
        fill = np.float32(np.median(frame[good]))
        frame = np.where(good, frame, fill).astype(np.float32)
    return robust(despeckle_raw(frame), min_scale=min_scale, subsample=subsample)


def build_veto_model(input_shape: Sequence[int] = (350, 350, 1), *, filters: Sequence[int] = (8, 16, 24),
                     dense: int = 16, dropout: float = 0.1, first_pool: int = 3, seed: int | None = None):
    """The default network: early max-pooling, 3 conv blocks, global max + average pooling, dense, softmax."""
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="frame")
    x = layers.MaxPooling2D(first_pool, name="pool0")(inputs)
    for i, n in enumerate(filters, start=1):
        x = layers.Conv2D(n, 3, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        if i < len(filters):
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    gmax = layers.GlobalMaxPooling2D(name="global_max")(x)
    gavg = layers.GlobalAveragePooling2D(name="global_avg")(x)
    x = layers.Concatenate(name="pooled")([gmax, gavg])
    x = layers.Dense(dense, name="fc1")(x)
    x = layers.ReLU(name="relu_fc1")(x)
    x = layers.Dropout(dropout, seed=seed, name="drop_fc1")(x)
    x = layers.Dense(2, name="fc2")(x)
    outputs = layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="veto")


def flops_estimate(input_shape: Sequence[int] = (350, 350, 1), *, filters: Sequence[int] = (8, 16, 24),
                   first_pool: int = 3) -> int:
    """Multiply-adds x 2 of the convolutions of :func:`build_veto_model` (the dense part is negligible)."""
    h, w = int(input_shape[0]) // first_pool, int(input_shape[1]) // first_pool
    cin = int(input_shape[2])
    total = 0
    for i, n in enumerate(filters, start=1):
        total += 2 * h * w * 9 * cin * n
        cin = n
        if i < len(filters):
            h, w = h // 2, w // 2
    return total
