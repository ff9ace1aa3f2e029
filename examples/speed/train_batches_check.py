"""The demo's augmented training batches: a sha256 of their bits and their CPU cost, to compare two checkouts.

Reads the demo's training runs from ``LABELS`` (``sfx-cnn-veto demo`` writes
``demo-output/labels.csv``; ``--max-per-run`` keeps it short), builds
``--epochs`` epochs of batches as ``train`` does (the default augmentation and
normalization, the normalized-window cache, one generator seeded with
``--seed``), and prints the sha256 of every batch's bytes, the generator's next
draw, and the CPU seconds a batch took in each epoch. Run it with each
checkout on ``PYTHONPATH``: equal hashes mean bit-identical batches::

    PYTHONPATH=.:plugins python examples/speed/train_batches_check.py demo-output/labels.csv
    PYTHONPATH=OTHER:OTHER/plugins python examples/speed/train_batches_check.py demo-output/labels.csv
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("--train-runs", default="run90,run91,run92,run93", help="the demo's training runs")
    parser.add_argument("--max-per-run", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("SFX_CNN_VETO_PROGRESS", "0")
    from sfx_cnn_veto.training import train as T
    from sfx_cnn_veto.training.datasets import make_batch, normalized_windows

    cfg = T.TrainConfig(labels=args.labels, output="unused.keras", train_runs=args.train_runs.split(","),
                        seed=args.seed, max_per_run=args.max_per_run)
    _, train_rows, val_rows = T.select_rows(cfg)
    prep = T.plan_preprocessing(cfg, None)
    crops = T.read_and_split(cfg, train_rows, val_rows, prep).train_set
    cache = normalized_windows(crops, prep.normalize)
    rng = np.random.default_rng(args.seed)
    digest = hashlib.sha256()
    for epoch in range(args.epochs):
        cpu, n = time.process_time(), 0
        order = rng.permutation(len(crops))
        for start in range(0, len(crops), cfg.batch_size):
            x = make_batch(crops, order[start:start + cfg.batch_size], prep.normalize, aug=prep.aug, rng=rng,
                           cache=cache)
            digest.update(x.tobytes())
            n += 1
        print(f"epoch {epoch + 1}: {n} batches of up to {cfg.batch_size}, "
              f"{(time.process_time() - cpu) / n:.3f} s CPU a batch (load average {os.getloadavg()[0]:.1f})")
    print(f"sha256 of the batches {digest.hexdigest()}; the generator's next draw {rng.integers(0, 2**62)}")


if __name__ == "__main__":
    main()
