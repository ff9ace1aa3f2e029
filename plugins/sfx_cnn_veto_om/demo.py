"""Demo data and a tiny model for the OM example and tests (no OM import).

Stand-in until the project's simulator (``sfx_cnn_veto.simulate``) and the
shipped default model land: frames are Gaussian Bragg-like spots on a Poisson
background, written the way OM's ``EigerFilesDataRetrieval`` reads them
(``entry/data/data`` of shape ``(N, ss, fs)``). Hits are obvious on purpose,
so that "no peakfinder8 hit is vetoed by a good model" is a meaningful check.

Command line::

    python -m sfx_cnn_veto_om.demo data OUTDIR --files 4 --frames 10
    python -m sfx_cnn_veto_om.demo model OUT.keras
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import numpy as np

FRAME_SHAPE = (700, 700)
CROP_SHAPE = (350, 350)
DATASET = "entry/data/data"


@dataclass(frozen=True)
class DemoTruth:
    """What was written: ``paths`` of the HDF5 files and the truth of every frame."""

    paths: list[str]
    is_hit: list[list[bool]]  # per file, per frame
    num_spots: list[list[int]]

    @property
    def num_frames(self) -> int:
        return sum(len(h) for h in self.is_hit)

    @property
    def num_hits(self) -> int:
        return sum(sum(h) for h in self.is_hit)


def synth_frame(
    rng: np.random.Generator,
    *,
    hit: bool,
    shape: tuple[int, int] = FRAME_SHAPE,
    background: float = 3.0,
    spots: tuple[int, int] = (40, 80),
    amplitude: tuple[float, float] = (150.0, 600.0),
) -> tuple[np.ndarray, int]:
    """One frame (uint16 photon counts) and its number of spots.

    Spots are Gaussians (sigma 0.8-1.4 px) placed within 0.45 x the frame size
    of the centre, so most of them fall inside a centred crop as well as in
    peakfinder8's resolution range.
    """
    h, w = shape
    frame = rng.poisson(background, size=shape).astype(np.float64)
    n = int(rng.integers(spots[0], spots[1] + 1)) if hit else 0
    if n:
        radius = 0.45 * min(h, w) * np.sqrt(rng.uniform(0.02, 1.0, n))
        angle = rng.uniform(0, 2 * np.pi, n)
        ys = h / 2 + radius * np.sin(angle)
        xs = w / 2 + radius * np.cos(angle)
        amps = rng.uniform(*amplitude, n)
        sigmas = rng.uniform(0.8, 1.4, n)
        yy, xx = np.mgrid[-4:5, -4:5]
        for y, x, a, s in zip(ys, xs, amps, sigmas):
            iy, ix = int(round(y)), int(round(x))
            dy, dx = y - iy, x - ix
            patch = a * np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * s * s))
            y0, x0 = iy - 4, ix - 4
            if y0 < 0 or x0 < 0 or y0 + 9 > h or x0 + 9 > w:
                continue
            frame[y0 : y0 + 9, x0 : x0 + 9] += rng.poisson(patch)
    return np.clip(frame, 0, 65535).astype(np.uint16), n


def write_eiger_files(
    outdir: str,
    *,
    files: int = 4,
    frames: int = 10,
    hit_fraction: float = 0.5,
    seed: int = 0,
    shape: tuple[int, int] = FRAME_SHAPE,
    list_file: str | None = "files.lst",
) -> DemoTruth:
    """Write ``files`` HDF5 files of ``frames`` frames each (``entry/data/data``), plus a file list.

    The list (one absolute path a line, OM's ``EigerFilesDataRetrieval``
    source) is written to ``outdir/list_file`` unless ``list_file`` is None.
    """
    import h5py

    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, hits, spots = [], [], []
    for f in range(files):
        path = os.path.abspath(os.path.join(outdir, f"frames_{f:03d}.h5"))
        is_hit = [bool(v) for v in rng.random(frames) < hit_fraction]
        stack = np.empty((frames,) + tuple(shape), dtype=np.uint16)
        counts = []
        for i, hit in enumerate(is_hit):
            stack[i], n = synth_frame(rng, hit=hit, shape=shape)
            counts.append(n)
        with h5py.File(path, "w") as h5:
            h5.create_dataset(DATASET, data=stack, chunks=(1,) + tuple(shape))
            h5.create_dataset("entry/truth/is_hit", data=np.array(is_hit, dtype=bool))
            h5.create_dataset("entry/truth/num_spots", data=np.array(counts, dtype=np.int32))
        paths.append(path)
        hits.append(is_hit)
        spots.append(counts)
    if list_file:
        with open(os.path.join(outdir, list_file), "w") as fh:
            fh.writelines(p + "\n" for p in paths)
    return DemoTruth(paths, hits, spots)


def build_tiny_model(input_shape=(350, 350, 1), *, seed: int = 0):
    """A small, fast network (about 200 parameters) for tests and the demo, not for real data."""
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="frame")
    x = layers.MaxPooling2D(5, name="pool1")(inputs)
    x = layers.Conv2D(4, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(4, name="pool2")(x)
    x = layers.Conv2D(4, 3, activation="relu", name="conv2")(x)
    x = layers.GlobalMaxPooling2D(name="gmax")(x)
    x = layers.Dense(2, name="fc")(x)
    outputs = layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny_demo")


def train_tiny_model(
    path: str,
    *,
    frames: int = 160,
    epochs: int = 12,
    seed: int = 1,
    shape: tuple[int, int] = FRAME_SHAPE,
    normalize: str = "robust",
) -> dict:
    """Train :func:`build_tiny_model` on fresh demo frames and save it with metadata to ``path``.

    Returns ``{"accuracy": ..., "path": ...}`` measured on held-out demo frames.
    The same crop/normalize code as inference is used (the model's Preprocessor).
    """
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.pipeline import Preprocessor
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    meta = ModelMetadata(
        architecture="tiny_demo",
        input_shape=CROP_SHAPE + (1,),
        crop_shape=CROP_SHAPE,
        normalize=normalize,
        threshold=0.5,
        training={"data": "sfx_cnn_veto_om.demo synthetic frames", "frames": frames, "epochs": epochs},
    )
    prep = Preprocessor(meta)
    rng = np.random.default_rng(seed)

    def make(n):
        labels = np.arange(n) % 2
        rng.shuffle(labels)
        x = np.stack([prep(synth_frame(rng, hit=bool(l), shape=shape)[0]) for l in labels])
        return x[..., None].astype(np.float32), labels.astype(np.int32)

    x, y = make(frames)
    xv, yv = make(max(20, frames // 4))
    model = build_tiny_model(CROP_SHAPE + (1,), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=True)
    prob = np.asarray(model(xv, training=False))[:, 1]
    accuracy = float(np.mean((prob >= 0.5) == (yv == 1)))
    meta = ModelMetadata(**{**meta.__dict__, "metrics": {"demo_validation_accuracy": accuracy}})
    VetoModel(model, meta).save(path)
    return {"accuracy": accuracy, "path": os.path.abspath(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfx_cnn_veto_om.demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="write demo HDF5 files (entry/data/data) and files.lst")
    d.add_argument("outdir")
    d.add_argument("--files", type=int, default=4)
    d.add_argument("--frames", type=int, default=10, help="frames per file")
    d.add_argument("--hit-fraction", type=float, default=0.5)
    d.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("model", help="train the tiny demo model and save it (.keras)")
    m.add_argument("path")
    m.add_argument("--frames", type=int, default=160)
    m.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    if args.what == "data":
        truth = write_eiger_files(
            args.outdir, files=args.files, frames=args.frames, hit_fraction=args.hit_fraction, seed=args.seed
        )
        print(f"wrote {truth.num_frames} frames ({truth.num_hits} hits) in {len(truth.paths)} files; "
              f"list: {os.path.join(args.outdir, 'files.lst')}")
    else:
        info = train_tiny_model(args.path, frames=args.frames, epochs=args.epochs)
        print(f"saved {info['path']} (held-out demo accuracy {info['accuracy']:.3f})")
        if info["accuracy"] < 0.95:
            print("warning: the demo model is weak; rerun with more --frames/--epochs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
