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


def despike_raw(frame: np.ndarray, *, k: float = 20.0, min_scale: float = 1.0, subsample: int = 4) -> np.ndarray:
    """Set a pixel to the largest of its 8 neighbours only where it stands more than ``k`` noise scales above it.

    The noise scale is the frame's robust one (1.4826 MAD, as :func:`robust`).
    Hot pixels and zingers stand 40-500 scales above their neighbourhood in the
    simulated runs; the brightest pixel of a weak Bragg spot, 5-20. Unlike
    :func:`despeckle_raw`, which clips every pixel, weak 1-3 pixel spots keep
    their peak.
    """
    frame = np.asarray(frame, dtype=np.float32)
    sample = frame[::subsample, ::subsample] if subsample > 1 else frame
    median = np.float32(np.median(sample))
    scale = np.float32(max(1.4826 * float(np.median(np.abs(sample - median))), min_scale))
    neigh = despeckle_raw(frame)  # min(x, max8): equals max8 wherever x > max8
    spike = (frame - neigh) > np.float32(k) * scale
    if not spike.any():
        return frame.copy()
    return np.where(spike, neigh, frame)


def despike(frame: np.ndarray, *, k: float = 20.0, min_scale: float = 1.0, subsample: int = 4) -> np.ndarray:
    """Removal of pixels far above all their neighbours (:func:`despike_raw`), then ``robust``.

    Non-finite pixels are first set to the frame's median, as in :func:`despeckle`.
    """
    frame, good = _finite(frame)
    if good is not None:
        fill = np.float32(np.median(frame[good]))
        frame = np.where(good, frame, fill).astype(np.float32)
    return robust(despike_raw(frame, k=k, min_scale=min_scale, subsample=subsample),
                  min_scale=min_scale, subsample=subsample)


def build_veto_model(input_shape: Sequence[int] = (350, 350, 1), *, filters: Sequence[int] = (8, 16, 24),
                     dense: int = 16, dropout: float = 0.1, first_pool: int = 3, stem: int = 0,
                     seed: int | None = None, name: str = "veto"):
    """The default network: early max-pooling, 3 conv blocks, global max + average pooling, dense, softmax.

    ``stem`` > 0 puts a full-resolution 3x3 convolution with that many filters
    (with batch norm and ReLU) before the first max-pooling (:func:`build_veto_fr_model`).
    """
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="frame")
    x = inputs
    if stem:
        x = layers.Conv2D(int(stem), 3, padding="same", name="conv0")(x)
        x = layers.BatchNormalization(momentum=0.9, name="bn0")(x)
        x = layers.ReLU(name="relu0")(x)
    x = layers.MaxPooling2D(first_pool, name="pool0")(x)
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
    return keras.Model(inputs, outputs, name=name)


def build_veto_fr_model(input_shape: Sequence[int] = (350, 350, 1), *, stem: int = 4, seed: int | None = None):
    """``veto`` with a full-resolution first convolution (4 filters 3x3, batch norm, ReLU) before max-pooling.

    The convolution sees a spot's 3x3 neighbourhood before pooling keeps one
    value of each 3x3 block, so a spot's summed contrast (not only its
    brightest pixel) reaches the rest of the network.
    """
    return build_veto_model(input_shape, stem=stem, seed=seed, name="veto_fr")


def flops_estimate(input_shape: Sequence[int] = (350, 350, 1), *, filters: Sequence[int] = (8, 16, 24),
                   first_pool: int = 3, stem: int = 0) -> int:
    """Multiply-adds x 2 of the convolutions of :func:`build_veto_model` (the dense part is negligible)."""
    h, w = int(input_shape[0]) // first_pool, int(input_shape[1]) // first_pool
    cin = int(input_shape[2])
    total = 0
    if stem:
        total += 2 * int(input_shape[0]) * int(input_shape[1]) * 9 * cin * int(stem)
        cin = int(stem)
    for i, n in enumerate(filters, start=1):
        total += 2 * h * w * 9 * cin * n
        cin = n
        if i < len(filters):
            h, w = h // 2, w // 2
    return total
