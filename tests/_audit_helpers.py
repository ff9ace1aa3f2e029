"""Helpers of the audit tests: a simulated run with known truth, and a model that vetoes every frame."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins"), e.get("PYTHONPATH", "")])
    e.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    e["SFX_CNN_VETO_PROGRESS"] = "0"
    return e


def cli(*args: str, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``sfx-cnn-veto ARGS`` in a subprocess (this checkout first on the path)."""
    return subprocess.run([sys.executable, "-c", "from sfx_cnn_veto.cli import main; raise SystemExit(main())",
                           *args], env=env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def simulate(outdir: Path, *, frames: int, seed: int, run: str = "90", size: str = "400x400") -> Path:
    """One simulated run (``sfx-cnn-veto simulate``): returns its ``.lst``; truth in ``runNN.truth.csv``."""
    done = cli("simulate", str(outdir), "--frames", str(frames), "--runs", run, "--size", size,
               "--seed", str(seed), "--compression", "none")
    assert done.returncode == 0, done.stderr[-3000:]
    return outdir / f"run{run}.lst"


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def blind_model(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose last layer ignores the frame and says "miss": every frame vetoed, hits too."""
    from sfx_cnn_veto.core.model import VetoModel

    model = VetoModel.load(str(src))
    last = [layer for layer in model.keras_model.layers if layer.weights][-1]
    kernel, bias = last.get_weights()
    # one sigmoid output: a large negative bias; two softmax outputs (miss, hit): miss wins
    blind_bias = np.array([-20.0] if bias.shape == (1,) else [20.0, -20.0], dtype="float32")
    last.set_weights([np.zeros_like(kernel), blind_bias])
    VetoModel(model.keras_model, model.metadata).save(str(dst))
    return dst
