"""Toy diffraction-like frames for the psana demo and tests (until the project simulator lands).

Poisson background plus, for hits, a few dozen Gaussian Bragg-like spots. Only
meant to give psana something frame-shaped to carry; the project's simulator
(``sfx_cnn_veto.simulate``) is the realistic one.
"""

from __future__ import annotations

import numpy as np


def toy_frames(
    n: int,
    *,
    shape: tuple[int, int] = (400, 400),
    hit_fraction: float = 0.5,
    background: float = 2.0,
    spots: tuple[int, int] = (20, 60),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 frames and their truth labels (True = hit).

    Examples
    --------
    >>> frames, labels = toy_frames(4, shape=(64, 64), seed=1)
    >>> frames.shape, labels.dtype
    ((4, 64, 64), dtype('bool'))
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    frames = rng.poisson(background, size=(n, h, w)).astype(np.float32)
    labels = rng.random(n) < hit_fraction
    for i in np.flatnonzero(labels):
        for _ in range(int(rng.integers(spots[0], spots[1] + 1))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            sigma = rng.uniform(0.8, 1.6)
            amp = rng.uniform(30, 300)
            y0, y1 = max(int(cy) - 5, 0), min(int(cy) + 6, h)
            x0, x1 = max(int(cx) - 5, 0), min(int(cx) + 6, w)
            g = np.exp(-((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2) / (2 * sigma**2))
            frames[i, y0:y1, x0:x1] += rng.poisson(amp * g).astype(np.float32)
    return frames, labels
