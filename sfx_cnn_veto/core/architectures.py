"""Keras architectures. Keras is imported inside the builders, never at module import.

``paper``
    Table I of Li (2018), layer for layer: output shapes 344x344x4, 68x68x4,
    62x62x4, 12x12x4, 576, 16, 2 and 11,098 trainable parameters. Its layers 3
    and 7 are "sample-wise" batch normalization along the row axis
    (``BatchNormalization(axis=1)``: 2 x 344 = 688 and 2 x 62 = 124 trainable
    parameters), layer 13 feature-wise (32). The table's last rows are read as
    ``Dense(2)`` (34 = 16 x 2 + 2 parameters) with a softmax, since the
    network classifies two classes with cross-entropy.
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
