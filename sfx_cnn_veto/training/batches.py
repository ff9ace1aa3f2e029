"""Training batches in the serial order, computed ahead in a thread while TensorFlow trains.

The augmentation of a batch is NumPy work (it releases the GIL in most of it)
and TensorFlow trains on one thread (bit-exact), so on a two-core machine a
producer thread that prepares the next batches while the current one trains
uses the idle core. The producer makes exactly the serial path's calls on the
one NumPy generator, in the same order (each epoch's permutation, then each
batch's augmentation), and nothing else draws from that generator: the
batches, and so the trained model, are bit-identical to the serial path's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from sfx_cnn_veto.prefetch import Prefetcher
from sfx_cnn_veto.training.datasets import Augmentation, CropSet, make_batch

__all__ = ["Batch", "Prefetcher", "epoch_batches"]


@dataclass
class Batch:
    """One training batch: its epoch and step (0-based), the training-set rows and the normalized inputs."""

    epoch: int
    step: int
    indices: np.ndarray
    x: np.ndarray


def epoch_batches(train_set: CropSet, normalize: Callable[[np.ndarray], np.ndarray], *, epochs: int,
                  batch_size: int, aug: Augmentation, rng: np.random.Generator,
                  cache: np.ndarray | None = None) -> Iterator[Batch]:
    """Every batch of ``epochs`` epochs in training order: a permutation of the rows per epoch, then its batches.

    ``rng`` is used in this order only (the permutation, then each batch's
    augmentation, :func:`~sfx_cnn_veto.training.datasets.make_batch`), whether the
    batches are made here or ahead in a :class:`Prefetcher`.
    """
    n = len(train_set)
    steps = math.ceil(n / batch_size)
    for epoch in range(epochs):
        order = rng.permutation(n)
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            yield Batch(epoch, step, idx, make_batch(train_set, idx, normalize, aug=aug, rng=rng, cache=cache))
