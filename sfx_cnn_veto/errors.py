"""The exception hierarchy: one root, a few kinds a user can act on."""

from __future__ import annotations


class VetoError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(VetoError):
    """A configuration value or file is wrong."""


class PluginError(VetoError):
    """A plugin failed to load, or two plugins claim the same name."""


class MissingDependencyError(VetoError):
    """An optional dependency is not installed; the message says how to get it."""

    def __init__(self, package: str, hint: str | None = None, purpose: str = "") -> None:
        hint = hint or f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}; install it with: {hint}")
        self.package = package
        self.hint = hint


class ModelFormatError(VetoError):
    """A model file is unreadable, unsafe, or does not fit the frames."""


class FrameReadError(VetoError):
    """A frame could not be read or does not have the expected shape."""
