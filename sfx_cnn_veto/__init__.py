"""sfx-cnn-veto: a CNN hit/miss veto for serial crystallography frames.

Importing this package is cheap: it does not import TensorFlow, Keras, psana
or OM. Heavy pieces load on first use (``Veto`` is resolved lazily).
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "sfx_cnn_veto"

#: Marker for hook implementations, for built-in and third-party plugins alike.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

from sfx_cnn_veto.errors import (  # noqa: E402
    ConfigError,
    FrameReadError,
    MissingDependencyError,
    ModelFormatError,
    PluginError,
    VetoError,
)

__all__ = [
    "__version__",
    "hookimpl",
    "Veto",
    "Decision",
    "Audit",
    "VetoError",
    "ConfigError",
    "PluginError",
    "MissingDependencyError",
    "ModelFormatError",
    "FrameReadError",
]


def __getattr__(name: str):
    # Lazy: the pipeline module is NumPy-only, but keep the top level minimal.
    if name in ("Veto", "Decision"):
        from sfx_cnn_veto.core import pipeline

        return getattr(pipeline, name)
    if name == "Audit":
        from sfx_cnn_veto.core.audit import Audit

        return Audit
    raise AttributeError(f"module 'sfx_cnn_veto' has no attribute {name!r}")
