"""One-thread numba kernels with and without ``parallel``: the same process, the two variants interleaved.

At one thread the numba backend runs each kernel's ``NAME_serial`` copy (compiled without ``parallel``);
this script forces one variant or the other (``sfx_cnn_veto.core.fused._serial``) and times, alternately:

- the batch-1 max-pooling of a 350x350 frame and a 58x58x8 -> 16 convolution (the kernels alone);
- ``Veto.decide([frame])`` on a 1750x1750 frame with the shipped model, one thread (as an OM rank runs it).

It prints the minimum and median of each over ``--repeats`` calls, per variant, and their ratio, and
checks the scores are the same bits. Used for docs/benchmark.md::

    python examples/speed/serial_kernels.py
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def timed(call, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="calls per variant and case (interleaved)")
    args = parser.parse_args()
    os.environ.setdefault("SFX_CNN_VETO_PROGRESS", "0")
    from sfx_cnn_veto.bench import synthetic_frame
    from sfx_cnn_veto.core import fused
    from sfx_cnn_veto.core.model import default_model_path
    from sfx_cnn_veto.core.pipeline import Veto

    numba = fused.import_numba()
    veto = Veto.load(default_model_path(), backend="numba", batch_size=1, threads=1, center=(875, 875))
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    frame = synthetic_frame(rng, (1750, 1750), hit=True)
    image = rng.standard_normal((1, 1, 350, 350)).astype(np.float32)
    maps = rng.standard_normal((1, 8, 60, 60)).astype(np.float32)
    conv = fused._kernels(3, 4)
    weights = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    scale, shift = np.ones((58, 16), np.float32), np.zeros((58, 16), np.float32)
    cases = {
        "max-pool 350x350 / 3, batch 1": lambda serial: (conv.pool_stage_serial if serial else conv.pool_stage)(
            image, False, 3, 3, 3, 3, 116, 116),
        "conv 58x58x8 -> 16 + pool, batch 1": lambda serial: (conv.conv_stage_serial if serial else conv.conv_stage)(
            maps, weights, scale, shift, True, False, 2, 2, 2, 2, 29, 29),
        "decide([1750x1750 frame]), 1 thread": lambda serial: veto.decide([frame])[0].score,
    }
    original = fused._serial
    print(f"{'case':40s} {'variant':10s} {'min ms':>8s} {'median ms':>10s}")
    try:
        for name, case in cases.items():
            results, times = {}, {True: [], False: []}
            for serial in (True, False):
                fused._serial = (lambda s=serial: s)
                results[serial] = case(serial)  # compile / warm
            for _ in range(args.repeats):
                for serial in (True, False):
                    fused._serial = (lambda s=serial: s)
                    times[serial] += timed(lambda: case(serial), 1)
            for serial in (True, False):
                t = np.array(times[serial]) * 1e3
                print(f"{name:40s} {'serial' if serial else 'parallel':10s} {t.min():8.3f} {np.median(t):10.3f}")
            ratio = np.median(times[False]) / np.median(times[True])
            same = np.array_equal(np.asarray(results[True]), np.asarray(results[False]))
            print(f"{'':40s} parallel / serial, medians: {ratio:.2f}x; same bits: {same}")
    finally:
        fused._serial = original
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
