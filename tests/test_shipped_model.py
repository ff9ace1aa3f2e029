"""The shipped ``default.keras``: it loads, its metadata says what the model card says, and on
simulated frames of a run it was not trained on it scores every crystal frame above every blank one."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from sfx_cnn_veto.core.model import VetoModel, default_model_path


@pytest.fixture(scope="module")
def shipped():
    path = default_model_path()
    assert path is not None and os.path.exists(path), "the package ships sfx_cnn_veto/data/default.keras"
    return path


def test_shipped_model_metadata_matches_the_model_card(shipped):
    meta = VetoModel.read_metadata(shipped)
    assert meta.architecture == "veto"
    assert tuple(meta.input_shape) == (350, 350, 1) and tuple(meta.crop_shape) == (350, 350)
    assert tuple(meta.class_order) == ("miss", "hit")
    assert meta.normalize == "despeckle" and meta.use_mask
    assert meta.training["seed"] == 1 and meta.training["train_runs"] == ["run90", "run91", "run92", "run93"]
    card = open(os.path.join(os.path.dirname(shipped), "MODEL_CARD.md"), encoding="utf-8").read()
    stated = float(re.search(r"Decision threshold (0\.\d+)", card).group(1))
    assert round(meta.threshold, 3) == stated


def test_shipped_model_scores_simulated_hits_above_misses(shipped):
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.simulate import RunSimulator, default_experiment

    experiment = default_experiment()
    run = experiment.run("run94")  # nominal conditions, not a training run
    sim = RunSimulator(run, experiment.run_seed(run, 5))
    pairs = [sim.frame(i) for i in range(16)]
    frames = np.stack([frame for frame, _ in pairs])
    crystal = np.array([truth["crystal"] for _, truth in pairs], dtype=bool)
    assert 3 <= crystal.sum() <= len(crystal) - 3  # both kinds among these frames
    veto = Veto.load(shipped, mask=sim.detector.mask == 0)
    decisions = veto.decide(frames)
    assert not any(d.error for d in decisions)
    scores = np.array([d.score for d in decisions])
    assert scores[crystal].min() > scores[~crystal].max()
    assert all(d.is_hit for d, c in zip(decisions, crystal) if c)  # every crystal frame kept
    assert np.mean(scores[~crystal] < veto.threshold) >= 0.8       # most blank frames vetoed
