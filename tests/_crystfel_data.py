"""Test data for the CrystFEL adapter tests: a tiny model, CXI files, lists and streams.

The model is the paper's network on 64x64 crops with random weights (seeded);
its threshold is set to the median score of the frames written here, so a
run has both hits and misses. Nothing here imitates CrystFEL itself: streams
are written in format 2.3 by :mod:`sfx_cnn_veto.io.stream`'s writer.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from sfx_cnn_veto.io.cxi import write_cxi  # noqa: F401 (the tests write their files through data.write_cxi)

CROP = 64
FRAME = 72
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_dir(directory, argv) -> int:
    """``sfx-cnn-veto ARGV`` run in this process from ``directory`` (relative paths in lists resolve there)."""
    from sfx_cnn_veto.cli import main

    cwd = os.getcwd()
    os.chdir(directory)
    try:
        return main([str(a) for a in argv])
    finally:
        os.chdir(cwd)


def env() -> dict:
    """Environment for subprocesses: this checkout first on the path, TF quiet."""
    e = dict(os.environ)
    paths = [ROOT, os.path.join(ROOT, "plugins")]
    e["PYTHONPATH"] = os.pathsep.join(paths + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e["TF_CPP_MIN_LOG_LEVEL"] = "3"
    e["SFX_CNN_VETO_THREADS"] = e.get("SFX_CNN_VETO_THREADS", "1")
    return e


def cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sfx_cnn_veto.cli", *args], env=env(), capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def frames(n: int, seed: int, shape=(FRAME, FRAME)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.2, 20.0, size=(n, 1, 1)).astype(np.float32)
    data = rng.normal(size=(n,) + tuple(shape)).astype(np.float32) * scale
    # a few bright "peaks" on some frames, so scores spread out
    for i in range(0, n, 3):
        ys, xs = rng.integers(8, shape[0] - 8, 12), rng.integers(8, shape[1] - 8, 12)
        data[i, ys, xs] += 500.0
    return data


def make_model(directory: str, data: np.ndarray | None = None) -> str:
    """The tiny model; threshold = median score of ``data`` (hits and misses both occur)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from sfx_cnn_veto.core.architectures import build_paper_model
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel

    path = os.path.join(directory, "tiny.keras")
    keras_model = build_paper_model((CROP, CROP, 1), seed=7)
    threshold = 0.5
    if data is not None:
        from sfx_cnn_veto.core.pipeline import Veto

        meta = ModelMetadata(architecture="paper", input_shape=(CROP, CROP, 1), crop_shape=(CROP, CROP),
                             normalize="standardize", threshold=0.5)
        veto = Veto(VetoModel(keras_model, meta), batch_size=64)
        threshold = float(np.median(veto.score(data)))
    meta = ModelMetadata(architecture="paper", input_shape=(CROP, CROP, 1), crop_shape=(CROP, CROP),
                         normalize="standardize", threshold=threshold)
    VetoModel(keras_model, meta).save(path)
    return path


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        text = handle.read()
    assert text == "" or text.endswith("\n"), f"{path} does not end in a newline"
    assert "\r" not in text
    return text.splitlines()


def read_csv(path: str) -> list[dict]:
    import csv

    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def journal_blocks(journal_dir) -> int:
    """Blocks a filter-lst journal has recorded so far (one line each, over its .jsonl files)."""
    total = 0
    if os.path.isdir(journal_dir):
        for name in os.listdir(journal_dir):
            if name.endswith(".jsonl"):
                with open(os.path.join(journal_dir, name), "rb") as handle:
                    total += handle.read().count(b"\n")
    return total
