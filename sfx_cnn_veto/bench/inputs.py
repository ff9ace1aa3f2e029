"""What the bench measures on: frames (synthetic or simulated), their CXI file and list, untrained models."""

from __future__ import annotations

from typing import Iterable

import numpy as np

FRAME_SHAPE = (1750, 1750)
CROP_SHAPE = (350, 350)


def synthetic_frame(rng: np.random.Generator, shape=FRAME_SHAPE, *, hit: bool) -> np.ndarray:
    """A float32 frame: water ring + noise, hot pixels, and Bragg-like spots when ``hit``.

    A stand-in for the simulator (branch ``sim``): enough structure for the
    peak finder and the network to do their normal amount of work.
    """
    h, w = shape
    y, x = np.ogrid[:h, :w]
    r = np.hypot(y - h / 2.0, x - w / 2.0).astype(np.float32)
    background = 8.0 + 40.0 * np.exp(-(((r - 0.35 * min(h, w)) / (0.08 * min(h, w))) ** 2))
    frame = background + np.sqrt(background) * rng.standard_normal(shape, dtype=np.float32)
    hot = rng.integers(0, [h, w], size=(20, 2))
    frame[hot[:, 0], hot[:, 1]] += 5e4
    if hit:
        n = int(rng.integers(40, 160))
        # half the spots near the beam (inside the crop), half anywhere
        near = rng.normal([h / 2, w / 2], min(h, w) / 8, size=(n // 2, 2))
        far = rng.uniform([4, 4], [h - 4, w - 4], size=(n - n // 2, 2))
        centres = np.clip(np.concatenate([near, far]), 4, [h - 5, w - 5])
        amplitude = rng.uniform(300, 3000, size=n).astype(np.float32)
        yy, xx = np.mgrid[-3:4, -3:4]
        for (cy, cx), a in zip(centres, amplitude):
            iy, ix = int(cy), int(cx)
            fy, fx = cy - iy, cx - ix
            frame[iy - 3:iy + 4, ix - 3:ix + 4] += a * np.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / 2.0)
    return frame.astype(np.float32, copy=False)

def simulated_frames(frames: int, shape=FRAME_SHAPE, *, run_name: str = "run90"):
    """``frames`` frames of the project's simulator (:mod:`sfx_cnn_veto.simulate`), detector resized to ``shape``."""
    import dataclasses

    from sfx_cnn_veto.simulate import default_experiment, simulate_run

    experiment = default_experiment()
    run = experiment.run(run_name)
    run = dataclasses.replace(run, detector=dataclasses.replace(run.detector, shape=tuple(shape)))
    for frame, truth in simulate_run(run, experiment.run_seed(run), frames):
        yield np.asarray(frame, dtype=np.float32), bool(truth.get("crystal"))

def write_cxi(path: str, frames: int, *, seed: int = 0, shape=FRAME_SHAPE, simulator: bool = False) -> list[bool]:
    """Write ``frames`` frames to ``/entry_1/data_1/data`` (one chunk a frame); returns hit flags.

    ``simulator=True`` uses the project's simulator (run ``run90`` of the
    default experiment on a ``shape`` detector, ~0.6 s a 1750x1750 frame
    here), else :func:`synthetic_frame` (fast).
    """
    from sfx_cnn_veto.io.cxi import write_cxi as write_frames

    rng = np.random.default_rng(seed)
    if simulator:
        source = simulated_frames(frames, shape)
    else:
        source = ((synthetic_frame(rng, shape, hit=bool(i % 2)), bool(i % 2)) for i in range(frames))
    hits: list[bool] = []

    def frames_only():
        for frame, hit in source:
            hits.append(hit)
            yield frame

    write_frames(path, frames_only(), n_frames=frames, shape=shape)
    return hits

def write_lst(path: str, cxi: Iterable[str], frames_per_file: int, events: int) -> str:
    """A CrystFEL list of ``events`` lines cycling over the files' events."""
    cxi = list(cxi)
    with open(path, "w") as handle:
        for i in range(events):
            handle.write(f"{cxi[(i // frames_per_file) % len(cxi)]} //{i % frames_per_file}\n")
    return path


def make_model(path: str, architecture: str, *, seed: int = 0) -> str:
    """Save an untrained model of ``architecture`` (timings do not depend on the weights' values)."""
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel

    spec = manager.architectures()[architecture]
    try:
        keras_model = spec.build(spec.input_shape, seed=seed)
    except TypeError:
        keras_model = spec.build(spec.input_shape)
    meta = ModelMetadata(architecture=architecture, input_shape=tuple(spec.input_shape),
                         crop_shape=tuple(spec.input_shape[:2]), normalize=spec.default_normalize)
    VetoModel(keras_model, meta).save(path)
    return path

def default_architecture(name: str | None = None) -> str | None:
    """The project's default network: ``name``, else ``default``, else the one described as the default."""
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.errors import ConfigError

    specs = manager.architectures()
    if name:
        if name not in specs:
            raise ConfigError(f"no architecture {name!r} (have: {', '.join(sorted(specs))})")
        return name
    if "default" in specs:
        return "default"
    described = [n for n, s in sorted(specs.items()) if s.description.lower().startswith("default")]
    return described[0] if described else None

def list_backends() -> list[str]:
    from sfx_cnn_veto import manager

    return sorted(manager.backends())


def om_default_backend() -> str:
    """The backend OM's ``cnn_veto`` group uses when it names none (``auto`` without the OM adapter)."""
    try:
        from sfx_cnn_veto_om.config import CnnVetoConfig
    except ImportError:
        return "auto"
    return str(CnnVetoConfig.backend)
