"""Where a training step's time goes: one augmented, normalized batch (NumPy) against one Keras step.

Issue 18 asked to profile the training before making ``make demo`` faster. This
times, in one process, ``make_batch`` (the demo's default augmentation and the
``despeckle`` normalization, from a normalized-window cache as ``fit`` uses it)
against ``train_on_batch`` of the default network on the same batch, and prints
a cProfile of one ``make_batch``. Synthetic Poisson crops (350x350 with the
8-pixel margin); a batch of 100 as ``train``'s default::

    PYTHONPATH=.:plugins python examples/speed/train_batch_profile.py
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(func, repeats: int = 3) -> tuple[float, float]:
    """Wall and CPU seconds per call (after one warm-up call)."""
    func()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        func()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def main(n: int = 200, batch: int = 100) -> None:
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.training import datasets
    from sfx_cnn_veto.training.labels import LabelRow

    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 2).astype(np.int64)
    crops = (rng.poisson(3, (n, 366, 366)) * 10 + 1000).astype(np.float32)
    rows = [LabelRow("f", str(i), "r", 20 if labels[i] else 0, int(labels[i])) for i in range(n)]
    crop_set = datasets.CropSet(crops, labels, rows, 8, (350, 350))
    aug = datasets.Augmentation.default(8)
    normalize = datasets.normalizer("despeckle", {})
    cache = datasets.normalized_windows(crop_set, normalize)
    idx = list(range(batch))
    batch_rng = np.random.default_rng(1)

    def make():
        return datasets.make_batch(crop_set, idx, normalize, aug=aug, rng=batch_rng, cache=cache)

    spec = manager.architectures()["veto"]
    model = spec.build(spec.input_shape)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = make(), np.eye(2, dtype=np.float32)[labels[:batch]]
    print(f"load average {os.getloadavg()[0]:.2f}; {aug}")
    print("make_batch(%d): wall %.3f s, CPU %.3f s" % ((batch,) + timed(make)))
    print("train_on_batch(%d), default network: wall %.3f s, CPU %.3f s"
          % ((batch,) + timed(lambda: model.train_on_batch(x, y))))
    profile = cProfile.Profile()
    profile.enable()
    make()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
