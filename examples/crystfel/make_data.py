"""Stand-in data for the CrystFEL example until ``sfx-cnn-veto simulate`` is available.

Writes ``OUTDIR/run_demo.cxi`` (frames at /entry_1/data_1/data, a third of
them with bright spots), ``run_demo.lst`` and ``run_demo.geom`` (the
single-panel geometry of HOSTS.md), and, with ``--model PATH``, an UNTRAINED
model of the paper's network (random weights: its decisions mean nothing; it
only lets the example run where no trained model is at hand).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

GEOM = """\
; single panel, one frame per event along dim0
photon_energy = 9500
clen = 0.100
res = 13333.3
adu_per_photon = 1
data = /entry_1/data_1/data
dim0 = %
dim1 = ss
dim2 = fs
p0/min_fs = 0
p0/max_fs = {w1}
p0/min_ss = 0
p0/max_ss = {h1}
p0/corner_x = {cx}
p0/corner_y = {cy}
p0/fs = +1.0x
p0/ss = +1.0y
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outdir")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--model", default=None, help="also write an untrained model here")
    parser.add_argument("--calibrate", default=None, metavar="FILE.cxi",
                        help="set the untrained model's threshold to the median score of these frames")
    args = parser.parse_args()
    import h5py
    import hdf5plugin  # noqa: F401 - the simulator writes bitshuffle/LZ4 frames

    from sfx_cnn_veto.io.cxi import write_cxi

    os.makedirs(args.outdir, exist_ok=True)
    rng = np.random.default_rng(2018)
    n, s = args.frames, args.size
    data = rng.poisson(3.0, size=(n, s, s)).astype(np.float32)
    for i in range(0, n, 3):  # "hits": a few hundred bright spots
        ys, xs = rng.integers(0, s, 300), rng.integers(0, s, 300)
        data[i, ys, xs] += rng.uniform(50, 500, 300).astype(np.float32)
    cxi = os.path.join(args.outdir, "run_demo.cxi")
    write_cxi(cxi, data)
    with open(os.path.join(args.outdir, "run_demo.lst"), "w") as f:
        f.writelines(f"{os.path.abspath(cxi)} //{i}\n" for i in range(n))
    with open(os.path.join(args.outdir, "run_demo.geom"), "w") as f:
        f.write(GEOM.format(w1=s - 1, h1=s - 1, cx=-s // 2, cy=-s // 2))
    if args.model:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from sfx_cnn_veto.core.architectures import build_paper_model
        from sfx_cnn_veto.core.model import ModelMetadata, VetoModel

        def meta(threshold):
            return ModelMetadata(architecture="paper", input_shape=(350, 350, 1), crop_shape=(350, 350),
                                 normalize="standardize", threshold=threshold,
                                 training={"note": "UNTRAINED example model (random weights)"})

        network = build_paper_model((350, 350, 1), seed=1)
        threshold = 0.5
        if args.calibrate:
            from sfx_cnn_veto.core.pipeline import Veto

            with h5py.File(args.calibrate, "r") as f:
                frames = f["/entry_1/data_1/data"][:64]
            threshold = float(np.median(Veto(VetoModel(network, meta(0.5))).score(frames)))
        VetoModel(network, meta(threshold)).save(args.model)


if __name__ == "__main__":
    main()
