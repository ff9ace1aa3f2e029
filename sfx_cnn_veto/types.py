"""Records that plugins return from registration hooks.

Each record names what it provides; the manager collects them, checks that no
two plugins claim the same name, and says which plugin provided what.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class ReaderSpec:
    """A frame reader for one family of files.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"hdf5"``.
    patterns : sequence of str
        Glob patterns of the file names it claims (``"*.cxi"``); checked
        without importing the reader.
    open : callable
        ``open(path, options) -> FrameSource``: a :class:`sfx_cnn_veto.io.base.FrameSource`.
    priority : int
        Higher wins when several readers claim a file.
    """

    name: str
    patterns: Sequence[str]
    open: Callable[..., Any]
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class StepSpec:
    """A preprocessing step: ``kind`` is ``"crop"`` or ``"normalize"``.

    ``func(frame, **params) -> ndarray`` works on one 2-D float32 frame.
    """

    kind: str
    name: str
    func: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class ArchitectureSpec:
    """A Keras architecture: ``build(input_shape, **kwargs) -> keras.Model``."""

    name: str
    build: Callable[..., Any]
    input_shape: tuple[int, int, int] = (350, 350, 1)
    description: str = ""
    #: Preprocessing this architecture is meant to be trained with.
    default_normalize: str = "standardize"


@dataclass(frozen=True)
class BackendSpec:
    """A classifier backend: ``create(keras_model, options) -> Classifier``.

    A Classifier has ``predict(batch) -> ndarray`` taking float32 ``(N, H, W, 1)``
    and returning the hit probability ``(N,)``. The pipeline reuses the batch
    array for the next batch once ``predict`` has returned: do not keep it.
    ``options`` holds ``hit_index``, ``threads`` and ``batch_size``; backend
    ``auto`` takes the first of ``AUTO_ORDER`` that loads and reproduces Keras (no timing).
    """

    name: str
    create: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class LabelerSpec:
    """A peak counter: ``create(options) -> callable(frame) -> int``."""

    name: str
    create: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class SinkSpec:
    """Where decisions go: ``create(options) -> sink`` with ``write(decision)`` and ``close()``."""

    name: str
    create: Callable[..., Any]
    description: str = ""


#: Role of a command that filters a CrystFEL ``.lst`` before indexamajig. Its
#: arguments: ``LIST -m MODEL -o HITS.lst [--misses F] [--errors F] [--scores CSV]
#: [--mpi on|off]``; exit 0 when every event was decided, 2 when some were kept
#: as errors. The demo and the bench run the command that declares it (the
#: CrystFEL adapter's ``filter-lst``), never an adapter by name.
ROLE_FILTER_LIST = "filter-list"


@dataclass(frozen=True)
class CommandSpec:
    """A CLI sub-command.

    ``configure(parser)`` adds its arguments; ``run(args) -> int`` is its exit
    status. ``roles`` name the contracts the command fulfils (e.g.
    :data:`ROLE_FILTER_LIST`), so the core can use a plugin's command without
    knowing its name (:func:`sfx_cnn_veto.manager.command_with_role`).
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    aliases: tuple[str, ...] = field(default_factory=tuple)
    roles: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ConfigGroupSpec:
    """A top-level group of the YAML config (``--config``) that a plugin owns.

    The core knows its own groups (``model``, ``decision``, ``crop``,
    ``reader``, ``plugins``); an adapter declares its group here, so that
    ``crystfel: {...}`` in a config is accepted only where the CrystFEL adapter
    is installed (like pytest's ``addoption``).

    Parameters
    ----------
    name : str
        The group's key at the top of the config, e.g. ``"crystfel"``.
    schema : type or None
        A dataclass: the group is validated against its fields and types like
        the core's groups (unknown keys are errors naming the allowed ones) and
        parsed into an instance. ``None``: any mapping, kept as a ``dict``.
    description : str
        One line for ``sfx-cnn-veto plugins``.
    """

    name: str
    schema: type | None = None
    description: str = ""
