"""Small synthetic runs for the label/train/evaluate tests: CXI files with Gaussian spots (hits) or noise (misses).

A stand-in for the simulator, written by the tests themselves so they need
nothing else: frames of ``shape`` float32 ADU, background ``bg`` with Gaussian
noise, hits with ``n_spots`` Gaussian spots (sigma ~0.8 px) inside the central
``spot_box`` (so a centred crop of that size sees them), a few hot pixels.
"""

from __future__ import annotations

import os

import numpy as np

from sfx_cnn_veto.io.cxi import write_cxi


def make_frames(n: int, *, shape=(96, 96), hit_rate=0.5, n_spots=(16, 24), amplitude=(150.0, 400.0),
                bg=100.0, noise=5.0, hot=3, spot_box=64, seed=0):
    rng = np.random.default_rng(seed)
    h, w = shape
    frames = rng.normal(bg, noise, size=(n, h, w)).astype(np.float32)
    truth = rng.random(n) < hit_rate
    yy, xx = np.mgrid[-3:4, -3:4]
    lo_y, lo_x = (h - spot_box) // 2 + 3, (w - spot_box) // 2 + 3
    for i in range(n):
        if truth[i]:
            for _ in range(int(rng.integers(n_spots[0], n_spots[1] + 1))):
                y = int(rng.integers(lo_y, lo_y + spot_box - 6))
                x = int(rng.integers(lo_x, lo_x + spot_box - 6))
                dy, dx = rng.uniform(-0.5, 0.5, 2)
                amp = rng.uniform(*amplitude)
                frames[i, y - 3:y + 4, x - 3:x + 4] += amp * np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * 0.8 ** 2))
        ys = rng.integers(0, h, hot)
        xs = rng.integers(0, w, hot)
        frames[i, ys, xs] += 5000.0
    return frames, truth


def write_run(directory: str, name: str, n: int, **kwargs) -> tuple[str, np.ndarray]:
    """Write ``name.cxi`` and ``name.lst`` (absolute ``path //N`` lines); returns (lst path, truth)."""
    frames, truth = make_frames(n, **kwargs)
    os.makedirs(directory, exist_ok=True)
    cxi = os.path.abspath(os.path.join(directory, f"{name}.cxi"))
    write_cxi(cxi, frames)
    lst = os.path.join(directory, f"{name}.lst")
    with open(lst, "w") as handle:
        for i in range(n):
            handle.write(f"{cxi} //{i}\n")
    return lst, truth


def max_pixel_model(path, shape, cut, *, scale=0.25, threshold=0.5, train_runs=("train",)):
    """A fixed network: hit probability = sigmoid((max pixel - cut) / scale), saved with ``threshold``.

    With the default ``scale``, a frame is a hit iff its maximum is at least ``cut`` (threshold 0.5).
    """
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    inp = keras.Input(shape=tuple(shape) + (1,))
    x = keras.layers.GlobalMaxPooling2D()(inp)
    dense = keras.layers.Dense(2)
    model = keras.Model(inp, keras.layers.Softmax()(dense(x)))
    a = 0.5 / scale
    dense.set_weights([np.array([[-a, a]], dtype=np.float32), np.array([a * cut, -a * cut], dtype=np.float32)])
    VetoModel(model, ModelMetadata(architecture="max", input_shape=tuple(shape) + (1,), crop_shape=tuple(shape),
                                   normalize="none", threshold=threshold,
                                   training={"train_runs": list(train_runs)})).save(str(path))
