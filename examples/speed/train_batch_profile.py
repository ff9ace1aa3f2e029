"""Where a training step's time goes: one augmented, normalized batch (NumPy) against one Keras step.

Issue 18 asked to profile the training before making ``make demo`` faster. This
times, in one process, ``make_batch`` (the demo's default augmentation and the
``despeckle`` normalization, from a normalized-window cache as ``fit`` uses it)
against ``train_on_batch`` of the default network on the same batch, and prints
a cProfile of one ``make_batch``. Synthetic Poisson crops (350x350 with the
8-pixel margin); a batch of 100 as ``train``'s default; TensorFlow on one
thread, as ``train`` runs it (bit-exact). Then ``steps`` training steps twice:
in line (make a batch, train on it) and with the batches made ahead in a
thread (:class:`~sfx_cnn_veto.training.batches.Prefetcher`, as ``fit`` does),
with the wall time of each and the ratio::

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


def steps_in_line_and_ahead(make, train_step, steps: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Wall and CPU seconds of ``steps`` training steps, batches made in line, then made ahead in a thread."""
    from sfx_cnn_veto.training.batches import Prefetcher

    def in_line():
        for _ in range(steps):
            train_step(make())

    def ahead():
        with Prefetcher((make() for _ in range(steps)), depth=2) as batches:
            for x in batches:
                train_step(x)

    return timed(in_line, repeats=1), timed(ahead, repeats=1)


def main(n: int = 200, batch: int = 100, steps: int = 10) -> None:
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.training import datasets
    from sfx_cnn_veto.training.labels import LabelRow
    from sfx_cnn_veto.training.train import _pin_threads

    _pin_threads(1)  # as train runs TensorFlow (bit-exact)

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
    (line_wall, line_cpu), (ahead_wall, ahead_cpu) = steps_in_line_and_ahead(
        make, lambda xb: model.train_on_batch(xb, y), steps)
    print(f"{steps} steps, batches made in line: wall {line_wall:.2f} s, CPU {line_cpu:.2f} s; made ahead in a "
          f"thread: wall {ahead_wall:.2f} s, CPU {ahead_cpu:.2f} s ({line_wall / ahead_wall:.2f}x)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    profile = cProfile.Profile()
    profile.enable()
    make()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
