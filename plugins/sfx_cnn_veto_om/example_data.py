"""Example data and a tiny model for the OM example (examples/om/run.sh) and tests (no OM import).

Frames are written the way OM's ``EigerFilesDataRetrieval`` reads them
(``entry/data/data`` of shape ``(N, ss, fs)``), with a bad-pixel map
``mask.h5`` (``/data/data``, 1 = good) for peakfinder8. Two sources:

``simulator``
    The project's simulator (``sfx_cnn_veto.simulate``): a CSPAD-like
    700x700 detector with panel gaps and a beamstop, kinematic Bragg spots,
    water ring, gain and noise. Used whenever it is installed (``auto``).
``spots``
    A stand-in: Gaussian Bragg-like spots on a Poisson background. Hits are
    obvious on purpose.

Command line::

    python -m sfx_cnn_veto_om.example_data data OUTDIR --files 4 --frames 10
    python -m sfx_cnn_veto_om.example_data model OUT.keras
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np

FRAME_SHAPE = (700, 700)
CROP_SHAPE = (350, 350)
DATASET = "entry/data/data"
MASK_FILE, MASK_DATASET = "mask.h5", "/data/data"
SIM_RUN = "run90"  # streptavidin-like nominal run of the simulator's default experiment
SOURCES = ("auto", "simulator", "spots")


def simulator_available() -> bool:
    """True when the project's simulator (``sfx_cnn_veto.simulate``) can be imported."""
    try:
        return importlib.util.find_spec("sfx_cnn_veto.simulate") is not None
    except (ImportError, ValueError):
        return False


def resolve_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"source: expected one of {', '.join(SOURCES)}, got {source!r}")
    if source == "auto":
        return "simulator" if simulator_available() else "spots"
    if source == "simulator" and not simulator_available():
        raise ImportError("source 'simulator' needs sfx_cnn_veto.simulate, which is not installed")
    return source


@dataclass(frozen=True)
class ExampleTruth:
    """What was written: ``paths`` of the HDF5 files and the truth of every frame."""

    paths: list[str]
    is_hit: list[list[bool]]  # per file, per frame
    num_spots: list[list[int]]
    source: str = "spots"
    mask: str | None = None

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


def frames(
    n: int, *, hit_fraction: float = 0.5, seed: int = 0, source: str = "auto", balanced: bool = False
) -> Iterator[tuple[np.ndarray, bool, int]]:
    """``n`` frames as ``(frame, is_hit, num_spots)``; ``balanced`` alternates hits and misses exactly.

    With the simulator, frames come from run ``run90`` of its default
    experiment with ``hit_rate`` set to ``hit_fraction`` and the given seed;
    ``num_spots`` is its truth ``n_spots_frame`` (spots above 5 sigma).
    """
    source = resolve_source(source)
    rng = np.random.default_rng(seed)
    if source == "spots":
        for i in range(n):
            hit = bool(i % 2 == 0) if balanced else bool(rng.random() < hit_fraction)
            frame, count = synth_frame(rng, hit=hit)
            yield frame, hit, count
        return
    sim = _simulator(hit_fraction, seed)
    want = {True: (n + 1) // 2, False: n // 2} if balanced else None
    index = 0
    made = 0
    while made < n:
        frame, truth = sim.frame(index)
        index += 1
        hit = bool(truth["crystal"])
        if want is not None:
            if want[hit] == 0:
                continue
            want[hit] -= 1
        made += 1
        yield frame, hit, int(truth.get("n_spots_frame", truth.get("n_spots", 0)))


def _simulator(hit_fraction: float, seed: int):
    from sfx_cnn_veto.simulate import RunSimulator, default_experiment

    experiment = default_experiment()
    run = dataclasses.replace(experiment.run(SIM_RUN), hit_rate=float(hit_fraction))
    return RunSimulator(run, experiment.run_seed(run) + int(seed))


def bad_pixel_map(
    source: str = "auto", shape: tuple[int, int] = FRAME_SHAPE, *, hit_fraction: float = 0.5, seed: int = 0
) -> np.ndarray:
    """OM's bad-pixel map for the frames (int8, 1 = use the pixel): the simulator's gaps and beamstop."""
    if resolve_source(source) == "spots":
        return np.ones(shape, dtype=np.int8)
    return (_simulator(hit_fraction, seed).detector.mask == 0).astype(np.int8)


def write_eiger_files(
    outdir: str,
    *,
    files: int = 4,
    frames: int = 10,
    hit_fraction: float = 0.5,
    seed: int = 0,
    source: str = "auto",
    list_file: str | None = "files.lst",
) -> ExampleTruth:
    """Write ``files`` HDF5 files of ``frames`` frames each (``entry/data/data``), a file list and ``mask.h5``.

    The list (one absolute path a line, OM's ``EigerFilesDataRetrieval``
    source) is written to ``outdir/list_file`` unless ``list_file`` is None;
    ``outdir/mask.h5`` holds the bad-pixel map at ``/data/data`` (1 = good).
    Each file also keeps its truth in ``entry/truth/{is_hit,num_spots}``.
    """
    import h5py

    from sfx_cnn_veto.io.cxi import write_cxi

    source = resolve_source(source)
    os.makedirs(outdir, exist_ok=True)
    stream = globals()["frames"](files * frames, hit_fraction=hit_fraction, seed=seed, source=source)
    paths, hits, spots = [], [], []
    for f in range(files):
        path = os.path.abspath(os.path.join(outdir, f"frames_{f:03d}.h5"))
        batch = [next(stream) for _ in range(frames)]
        stack = np.stack([b[0] for b in batch])
        is_hit = [b[1] for b in batch]
        counts = [b[2] for b in batch]
        write_cxi(path, stack, dataset=DATASET)
        with h5py.File(path, "a") as h5:
            h5.create_dataset("entry/truth/is_hit", data=np.array(is_hit, dtype=bool))
            h5.create_dataset("entry/truth/num_spots", data=np.array(counts, dtype=np.int32))
            h5["entry/truth"].attrs["source"] = source
        paths.append(path)
        hits.append(is_hit)
        spots.append(counts)
    mask_path = os.path.abspath(os.path.join(outdir, MASK_FILE))
    with h5py.File(mask_path, "w") as h5:
        h5.create_dataset(MASK_DATASET, data=bad_pixel_map(source, stack.shape[1:], hit_fraction=hit_fraction, seed=seed))
    if list_file:
        with open(os.path.join(outdir, list_file), "w") as fh:
            fh.writelines(p + "\n" for p in paths)
    return ExampleTruth(paths, hits, spots, source, mask_path)


def build_tiny_model(input_shape=(350, 350, 1), *, seed: int = 0):
    """A small, fast network (about 2,300 parameters) for tests and the OM example, not for real data.

    Average-pooling first (not max-pooling) so single hot pixels and zingers do
    not look like Bragg spots; 100% held-out accuracy on simulated run90
    frames after 15 epochs on 96-200 frames (Adam, learning rate 0.003; 0.01
    sometimes collapses to a constant output).
    """
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="frame")
    x = layers.AveragePooling2D(2, name="pool0")(inputs)
    x = layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(4, name="pool1")(x)
    x = layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(4, name="pool2")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(2, name="fc")(x)
    outputs = layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny_demo")


def train_tiny_model(
    path: str,
    *,
    frames: int = 200,
    epochs: int = 15,
    seed: int = 1,
    source: str = "auto",
    normalize: str = "robust",
    learning_rate: float = 0.003,
) -> dict:
    """Train :func:`build_tiny_model` on fresh example frames (hits and misses alternating) and save it to ``path``.

    The training frames use ``seed`` (keep it different from the data the
    model is tested on).

    Returns ``{"accuracy": ..., "path": ...}`` measured on held-out example frames.
    The same crop/normalize code as inference is used (the model's Preprocessor).
    """
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel
    from sfx_cnn_veto.core.pipeline import Preprocessor
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    source = resolve_source(source)
    meta = ModelMetadata(
        architecture="tiny_demo",
        input_shape=CROP_SHAPE + (1,),
        crop_shape=CROP_SHAPE,
        normalize=normalize,
        threshold=0.5,
        training={"data": f"sfx_cnn_veto_om.example_data frames ({source})", "frames": frames, "epochs": epochs,
                  "seed": seed},
    )
    prep = Preprocessor(meta)
    n_val = max(20, frames // 4)
    pairs = [(prep(f), h) for f, h, _ in globals()["frames"](frames + n_val, seed=seed, source=source, balanced=True)]
    order = np.random.default_rng(seed).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    x = np.stack([p[0] for p in pairs])[..., None].astype(np.float32)
    y = np.array([int(p[1]) for p in pairs], dtype=np.int32)
    x, y, xv, yv = x[:frames], y[:frames], x[frames:], y[frames:]
    model = build_tiny_model(CROP_SHAPE + (1,), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=True)
    prob = np.asarray(model(xv, training=False))[:, 1]
    accuracy = float(np.mean((prob >= 0.5) == (yv == 1)))
    meta = ModelMetadata(**{**meta.__dict__, "metrics": {"demo_validation_accuracy": accuracy}})
    VetoModel(model, meta).save(path)
    return {"accuracy": accuracy, "path": os.path.abspath(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfx_cnn_veto_om.example_data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="write example HDF5 files (entry/data/data) and files.lst")
    d.add_argument("outdir")
    d.add_argument("--files", type=int, default=4)
    d.add_argument("--frames", type=int, default=10, help="frames per file")
    d.add_argument("--hit-fraction", type=float, default=0.5)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--source", choices=SOURCES, default="auto", help="auto: the simulator when installed")
    m = sub.add_parser("model", help="train the tiny example model and save it (.keras)")
    m.add_argument("path")
    m.add_argument("--frames", type=int, default=200)
    m.add_argument("--epochs", type=int, default=15)
    m.add_argument("--seed", type=int, default=1, help="keep it different from the data's seed")
    m.add_argument("--source", choices=SOURCES, default="auto")
    args = parser.parse_args(argv)
    if args.what == "data":
        truth = write_eiger_files(
            args.outdir, files=args.files, frames=args.frames, hit_fraction=args.hit_fraction, seed=args.seed,
            source=args.source,
        )
        print(f"wrote {truth.num_frames} {truth.source} frames ({truth.num_hits} hits) in {len(truth.paths)} files; "
              f"list: {os.path.join(args.outdir, 'files.lst')}; bad-pixel map: {truth.mask}")
    else:
        info = train_tiny_model(args.path, frames=args.frames, epochs=args.epochs, seed=args.seed,
                                source=args.source)
        print(f"saved {info['path']} (held-out example accuracy {info['accuracy']:.3f})")
        if info["accuracy"] < 0.95:
            print("warning: the example model is weak; rerun with more --frames/--epochs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
