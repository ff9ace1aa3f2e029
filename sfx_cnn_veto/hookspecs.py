"""Every hook a plugin can implement.

Registration hooks are plural nouns that return a list of records
(:mod:`sfx_cnn_veto.types`); the manager gathers them from all plugins.
Decision hooks are ``firstresult`` verbs returning ``None`` to pass.
Observers return ``None``. Call hooks only through
:mod:`sfx_cnn_veto.manager`, always by keyword.

A plugin module looks like this::

    from sfx_cnn_veto import hookimpl
    from sfx_cnn_veto.types import CommandSpec

    @hookimpl
    def sfxveto_commands():
        return [CommandSpec(name="hello", help="say hello",
                            configure=lambda p: None, run=lambda a: print("hi") or 0)]

and is registered with an entry point in the group ``sfx_cnn_veto``::

    [project.entry-points.sfx_cnn_veto]
    hello = "my_package.plugin"
"""

from __future__ import annotations

from typing import Any, Sequence

import pluggy

from sfx_cnn_veto import PROJECT_NAME
from sfx_cnn_veto.types import (
    ArchitectureSpec,
    BackendSpec,
    CommandSpec,
    ConfigGroupSpec,
    LabelerSpec,
    ReaderSpec,
    SinkSpec,
    StepSpec,
)

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def sfxveto_readers() -> Sequence[ReaderSpec]:
    """Frame readers this plugin provides.

    Called once when the reader registry is first needed. Every plugin's
    list is gathered; two readers with the same name are an error naming both
    plugins. Example::

        return [ReaderSpec(name="myformat", patterns=("*.myf",), open=MySource)]

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_preprocessing_steps() -> Sequence[StepSpec]:
    """Crop and normalization methods this plugin provides.

    A model file names its crop and normalize methods; the pipeline looks
    them up here, so a plugin can add ``normalize: {method: mine}``.

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_architectures() -> Sequence[ArchitectureSpec]:
    """Keras model architectures this plugin provides (``sfx-cnn-veto models``).

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_backends() -> Sequence[BackendSpec]:
    """Classifier backends (how a trained Keras model is run) this plugin provides.

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_labelers() -> Sequence[LabelerSpec]:
    """Peak counters used to label frames for training.

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_sinks() -> Sequence[SinkSpec]:
    """Decision sinks: places per-event hit/miss decisions can be written to.

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_commands() -> Sequence[CommandSpec]:
    """Sub-commands of the ``sfx-cnn-veto`` console script.

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_config_groups() -> Sequence[ConfigGroupSpec]:
    """Top-level groups of the YAML config (``--config``) this plugin owns.

    The config accepts the core's groups and the ones declared here; any
    other key is an error naming the allowed ones. A group with a dataclass
    ``schema`` is validated field by field. Example::

        @dataclass(frozen=True)
        class MyOptions:
            level: int = 1

        return [ConfigGroupSpec(name="mine", schema=MyOptions, description="my adapter")]

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def sfxveto_select_reader(path: str, options: dict[str, Any]) -> str | None:
    """Choose the reader for ``path`` before pattern matching does.

    Return a reader name to claim the file, or ``None`` to pass. The first
    non-``None`` result wins.

    .. versionadded:: 0.1
    """


@hookspec
def sfxveto_decision(event: Any, decision: Any) -> None:
    """Observe one decision as it is made (``event`` is an :class:`~sfx_cnn_veto.io.events.EventRef`).

    Called for every event the CLI scores, hits, misses and errors alike.
    Return value ignored.

    .. versionadded:: 0.1
    """
