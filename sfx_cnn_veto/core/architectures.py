"""Keras architectures. Keras is imported inside the builders, never at module import.

``paper``
    Table I of Li (2018), layer for layer: output shapes 344x344x4, 68x68x4,
    62x62x4, 12x12x4, 576, 16, 2 and 11,098 trainable parameters. Its layers 3
    and 7 are "sample-wise" batch normalization along the row axis
    (``BatchNormalization(axis=1)``: 2 x 344 = 688 and 2 x 62 = 124 trainable
    parameters), layer 13 feature-wise (32). The table's last rows are read as
    ``Dense(2)`` (34 = 16 x 2 + 2 parameters) with a softmax, since the
    network classifies two classes with cross-entropy.

``veto`` (the default)
    Max-pooling first (Bragg spots of 1-3 pixels survive it), three small
    3x3 convolutions with pooling, then global max and global average pooling
    (translation invariant: a beam centre that moves by tens of pixels moves
    the spots, not the answer), a 16-unit dense layer and a 2-way softmax.
    About 15 MFLOP a 350x350 frame (the paper's: 52, 88% of it in its first
    layer) and 5,642 trainable parameters.

``veto_fr``
    ``veto`` with a full-resolution 3x3 convolution before the first pooling.
"""

from __future__ import annotations

from typing import Sequence

#: Output shapes of the paper's Table I, layer by layer with parameters (trainable).
PAPER_TABLE_I = [
    ("Conv", (344, 344, 4), 200),
    ("Drop", (344, 344, 4), 0),
    ("BN", (344, 344, 4), 688),
    ("ReLU", (344, 344, 4), 0),
    ("Max", (68, 68, 4), 0),
    ("Conv", (62, 62, 4), 788),
    ("BN", (62, 62, 4), 124),
    ("ReLU", (62, 62, 4), 0),
    ("Max", (12, 12, 4), 0),
    ("Drop", (12, 12, 4), 0),
    ("Flat", (576,), 0),
    ("FC", (16,), 9232),
    ("BN", (16,), 32),
    ("ReLU", (16,), 0),
    ("Drop", (16,), 0),
    ("FC", (2,), 34),
    ("Softmax", (2,), 0),
]


def build_paper_model(input_shape: Sequence[int] = (350, 350, 1), *, dropout: float = 0.25, seed: int | None = None):
    """The paper's 18-layer CNN (Table I). Only ``350x350x1`` reproduces the table exactly."""
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="frame")
    x = layers.Conv2D(4, 7, name="conv1")(inputs)
    x = layers.Dropout(dropout, seed=seed, name="drop1")(x)
    x = layers.BatchNormalization(axis=1, name="bn1_samplewise")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(5, name="max1")(x)
    x = layers.Conv2D(4, 7, name="conv2")(x)
    x = layers.BatchNormalization(axis=1, name="bn2_samplewise")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(5, name="max2")(x)
    x = layers.Dropout(dropout, seed=seed, name="drop2")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(16, name="fc1")(x)
    x = layers.BatchNormalization(name="bn3_featurewise")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Dropout(dropout, seed=seed, name="drop3")(x)
    x = layers.Dense(2, name="fc2")(x)
    outputs = layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="paper")


def trainable_parameters(model) -> int:
    """Number of trainable parameters of a Keras model."""
    import numpy as np

    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


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
