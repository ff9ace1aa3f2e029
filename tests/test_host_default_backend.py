"""OM and psana run the fast backend by default: ``auto`` (numba when it reproduces Keras at load, else keras)."""

from __future__ import annotations

import inspect

import pytest


def test_om_cnn_veto_group_defaults_to_the_auto_backend():
    from sfx_cnn_veto_om.config import CnnVetoConfig

    cfg = CnnVetoConfig.from_group({"model": "model.keras", "mode": "veto"}, check_model=False)
    assert cfg.backend == "auto"


def test_psana_veto_load_defaults_to_the_auto_backend():
    pytest.importorskip("psana")
    from sfx_cnn_veto_psana.veto import PsanaVeto

    assert inspect.signature(PsanaVeto.load).parameters["backend"].default == "auto"
