"""The compiled despeckle/robust pass (core/fastnorm.py) gives NumPy's normalization, fallbacks included."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from sfx_cnn_veto.core import fastnorm, normalize  # noqa: E402
from sfx_cnn_veto.core.model import ModelMetadata  # noqa: E402
from sfx_cnn_veto.core.pipeline import Preprocessor  # noqa: E402
from sfx_cnn_veto.errors import FrameReadError  # noqa: E402

PAIRS = [(normalize.despeckle, fastnorm.compiled_despeckle), (normalize.robust, fastnorm.compiled_robust)]
IDS = ["despeckle", "robust"]


def random_frames(count: int, seed: int = 3):
    """Frames of many kinds: Poisson backgrounds from nearly empty to bright, gains, pedestals, hot pixels, spots."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = (int(rng.integers(3, 400)), int(rng.integers(3, 400))) if i % 5 == 4 else (350, 350)
        lam = float(rng.choice([0.02, 0.3, 2.0, 40.0]))
        frame = rng.poisson(lam, shape) * rng.uniform(0.1, 30) + rng.uniform(-500, 5000)
        frame = frame + rng.normal(0, float(rng.choice([0.0, 0.5, 5.0])), shape)
        if i % 3 == 0:
            frame[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)] += 1e4  # hot pixels
        if i % 4 == 1:
            r, c = rng.integers(1, shape[0] - 1), rng.integers(1, shape[1] - 1)
            frame[r - 1:r + 1, c - 1:c + 1] += 3e3  # a 2x2 spot (despeckle keeps it)
        yield f"random-{i}", frame.astype(np.float32)


def special_frames():
    """The cases the compiled pass hands to NumPy, and odd dtypes and layouts."""
    rng = np.random.default_rng(5)
    base = (rng.poisson(3.0, (350, 350)) * 10 + 1000 + rng.standard_normal((350, 350)) * 3).astype(np.float32)
    counting = np.zeros((350, 350), np.float32)  # photon counting, mostly 0: MAD 0, the quantile fallbacks
    counting[rng.integers(0, 350, 3000), rng.integers(0, 350, 3000)] = 1.0
    sparse = np.zeros((350, 350), np.float32)  # fewer than 1% nonzero: the mean-deviation fallback
    sparse[rng.integers(0, 350, 40), rng.integers(0, 350, 40)] = 5.0
    nan = base.copy()
    nan[:20] = np.nan
    nan[50, 50] = np.inf
    big = rng.standard_normal((700, 900)).astype(np.float32) * 50 + 1e4
    return {
        "poisson": base, "photon-counting (MAD 0)": counting, "sparse (mean-deviation fallback)": sparse,
        "constant (no spread)": np.full((350, 350), 7.0, np.float32), "zeros": np.zeros((350, 350), np.float32),
        "nan and inf (filled)": nan, "non-contiguous view": big[100:450, 200:550], "int16": (base / 10).astype(np.int16),
        "float64": base.astype(np.float64) * 1.5, "negative": -base, "2x5 (too small to clip)": base[:2, :5],
    }


@pytest.mark.parametrize("numpy_func,compiled", PAIRS, ids=IDS)
def test_compiled_pass_equals_numpy_on_300_random_frames(numpy_func, compiled):
    for name, frame in random_frames(300):
        expected = numpy_func(frame)
        got = compiled(frame)
        assert got.dtype == np.float32 and got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("numpy_func,compiled", PAIRS, ids=IDS)
@pytest.mark.parametrize("name", list(special_frames()))
def test_compiled_pass_equals_numpy_on_fallback_cases(numpy_func, compiled, name):
    frame = special_frames()[name]
    for subsample in (1, 2, 4):
        np.testing.assert_allclose(compiled(frame, subsample=subsample), numpy_func(frame, subsample=subsample),
                                   rtol=0, atol=1e-6, err_msg=f"{name}, subsample {subsample}")


@pytest.mark.parametrize("compiled", [c for _, c in PAIRS], ids=IDS)
def test_compiled_pass_refuses_a_mostly_nan_frame_as_numpy_does(compiled):
    frame = np.full((350, 350), np.nan, np.float32)
    frame[:100] = 1.0
    with pytest.raises(FrameReadError, match="NaN or infinite"):
        compiled(frame)


def test_compiled_pass_runs_numba_on_an_ordinary_frame_and_numpy_only_for_a_zero_mad(monkeypatch):
    calls = []
    real_robust = normalize.robust
    monkeypatch.setattr(normalize, "robust", lambda *a, **k: calls.append("robust") or real_robust(*a, **k))
    monkeypatch.setattr(normalize, "despeckle", lambda *a, **k: calls.append("despeckle"))
    frames = special_frames()
    fastnorm.compiled_despeckle(frames["poisson"])
    assert calls == []
    fastnorm.compiled_despeckle(frames["photon-counting (MAD 0)"])
    assert calls == ["robust"]


def test_preprocessor_takes_the_compiled_pass_for_despeckle_and_robust_models_only(monkeypatch):
    def preprocessor(norm, **params):
        return Preprocessor(ModelMetadata(architecture="paper", input_shape=(64, 64, 1), crop_shape=(64, 64),
                                          normalize=norm, normalize_params=params))

    assert preprocessor("despeckle")._normalize is fastnorm.compiled_despeckle
    assert preprocessor("robust", subsample=2)._normalize is fastnorm.compiled_robust
    assert preprocessor("standardize")._normalize is normalize.standardize
    assert preprocessor("despike")._normalize is normalize.despike
    monkeypatch.setenv("SFX_CNN_VETO_COMPILED_NORMALIZE", "0")
    assert preprocessor("despeckle")._normalize is normalize.despeckle
