"""A pytest plugin for plugin authors (and this project's own tests).

Enable it in a ``conftest.py`` with ``pytest_plugins = ["sfx_cnn_veto.testing"]``.

Fixtures
--------
``plugin_manager``
    A fresh plugin manager (built-ins only), installed as the process-wide one
    for the test and restored afterwards.
``register_plugin``
    ``register_plugin(obj, name)`` adds a plugin to ``plugin_manager`` for the
    test; it is removed in ``finally``.
``make_cxi``
    ``make_cxi(path, frames, dataset=...)`` writes a CXI-style multi-event file
    (:func:`sfx_cnn_veto.io.cxi.write_cxi`).
``paper_model_file``
    A ``.keras`` file of the paper's network with random weights (session scope).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import pytest

from sfx_cnn_veto import manager
from sfx_cnn_veto.io.cxi import write_cxi

__all__ = ["using_plugin_manager", "write_cxi", "spot_frames"]


@contextlib.contextmanager
def using_plugin_manager(pm) -> Iterator[Any]:
    """Make ``pm`` the cached process-wide manager inside the block."""
    manager.reset_plugin_manager()
    original = manager.get_plugin_manager
    cached = lambda: pm  # noqa: E731
    cached.cache_clear = lambda: None  # type: ignore[attr-defined]
    manager.get_plugin_manager = cached  # type: ignore[assignment]
    try:
        yield pm
    finally:
        manager.get_plugin_manager = original
        manager.reset_plugin_manager()


@pytest.fixture
def plugin_manager():
    pm = manager.new_plugin_manager(entrypoints=False)
    with using_plugin_manager(pm):
        yield pm


@pytest.fixture
def register_plugin(plugin_manager):
    names: list[str] = []

    def register(plugin: Any, name: str | None = None) -> str:
        registered = plugin_manager.register(plugin, name=name)
        names.append(registered)
        return registered

    try:
        yield register
    finally:
        for name in names:
            if plugin_manager.has_plugin(name):
                plugin_manager.unregister(name=name)


@pytest.fixture
def make_cxi():
    return write_cxi


def spot_frames(n: int, shape=(400, 400), *, hits=None, seed: int = 0, spots: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Frames of Poisson background, with sharp Bragg-like spots on the ``hits``."""
    rng = np.random.default_rng(seed)
    if hits is None:
        hits = rng.random(n) < 0.5
    frames = rng.poisson(10.0, size=(n,) + tuple(shape)).astype(np.float32)
    h, w = shape
    for i in np.flatnonzero(hits):
        ys = rng.integers(h // 4, 3 * h // 4, spots)
        xs = rng.integers(w // 4, 3 * w // 4, spots)
        frames[i, ys, xs] += rng.uniform(200, 800, spots).astype(np.float32)
    return frames, np.asarray(hits, dtype=bool)


@pytest.fixture(scope="session")
def paper_model_file(tmp_path_factory) -> str:
    from sfx_cnn_veto.core.architectures import build_paper_model
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel

    path = tmp_path_factory.mktemp("models") / "paper.keras"
    meta = ModelMetadata(architecture="paper", input_shape=(350, 350, 1), crop_shape=(350, 350),
                         normalize="standardize")
    return VetoModel(build_paper_model(seed=0), meta).save(path)
