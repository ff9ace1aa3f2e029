"""The plugin manager: built-ins first, then entry points, then typed wrappers.

``get_plugin_manager()`` is cached; tests swap it with
``reset_plugin_manager()`` or build a fresh one with ``new_plugin_manager()``.
A third-party plugin that fails to load logs a warning and the host goes on,
unless ``strict=True`` (or ``SFX_CNN_VETO_STRICT_PLUGINS=1``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from importlib import metadata
from typing import Any, Iterable, TypeVar

import pluggy

from sfx_cnn_veto import PROJECT_NAME, hookspecs
from sfx_cnn_veto.errors import PluginError
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

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT_NAME

#: Built-in plugins, registered before any entry point, like pytest's default_plugins.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "sfx_cnn_veto.io.plugin",
    "sfx_cnn_veto.io.sinks",
    "sfx_cnn_veto.core.plugin",
    "sfx_cnn_veto.cli_commands",
    "sfx_cnn_veto.training.plugin",
    "sfx_cnn_veto.bench.commands",
    "sfx_cnn_veto.demo",
    "sfx_cnn_veto.simulate.commands",
)


class VetoPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        #: plugin name -> "builtin" or "entry point NAME (dist VERSION)"
        self.origins: dict[str, str] = {}
        #: entry point name -> error text, for plugins that failed to load
        self.failed: dict[str, str] = {}

    def load_builtins(self) -> None:
        for modname in BUILTIN_PLUGINS:
            if self.is_blocked(modname):
                continue
            module = importlib.import_module(modname)
            self.register(module, name=modname)
            self.origins[modname] = "builtin"

    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP, *, strict: bool = False) -> None:
        """Register every plugin of ``group``; a broken one is logged and skipped."""
        for ep in metadata.entry_points(group=group):
            name = ep.name
            if self.has_plugin(name) or self.is_blocked(name):
                continue
            dist = getattr(ep, "dist", None)
            where = f"entry point {name!r} = {ep.value}"
            if dist is not None:
                where += f" ({dist.name} {dist.version})"
            try:
                plugin = ep.load()
                self.register(plugin, name=name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop a beamtime
                message = f"{type(exc).__name__}: {exc}"
                self.failed[name] = message
                if strict:
                    raise PluginError(f"plugin {where} failed to load: {message}") from exc
                log.warning("plugin %s failed to load and is skipped: %s", where, message)
                continue
            self.origins[name] = where


def new_plugin_manager(*, entrypoints: bool = True, strict: bool | None = None) -> VetoPluginManager:
    """A fresh manager with the built-ins, and entry points unless told not to."""
    if strict is None:
        strict = os.environ.get("SFX_CNN_VETO_STRICT_PLUGINS", "") not in ("", "0")
    pm = VetoPluginManager()
    for name in filter(None, os.environ.get("SFX_CNN_VETO_BLOCK", "").split(",")):
        pm.set_blocked(name.strip())
    pm.load_builtins()
    if entrypoints:
        pm.load_entrypoints(strict=strict)
    pm.check_pending()
    return pm


@functools.lru_cache(maxsize=None)
def get_plugin_manager() -> VetoPluginManager:
    """The process-wide manager (built once)."""
    return new_plugin_manager()


def reset_plugin_manager() -> None:
    """Forget the cached manager (tests, or after installing a plugin)."""
    get_plugin_manager.cache_clear()


# ---------------------------------------------------------------------------
# Typed wrappers: the only way the rest of the package calls hooks.

T = TypeVar("T")


def _collect(hook_name: str, pm: VetoPluginManager | None, **kwargs: Any) -> dict[str, Any]:
    """Flatten a registration hook's lists into ``{name: record}``, refusing duplicates."""
    pm = pm or get_plugin_manager()
    hook = getattr(pm.hook, hook_name)
    records: dict[str, Any] = {}
    providers: dict[str, str] = {}
    for impl in hook.get_hookimpls():  # built-ins (trylast) first, then in registration order
        result = impl.function(**kwargs)
        for record in result or ():
            key = getattr(record, "kind", "") + ":" + record.name if hasattr(record, "kind") else record.name
            if key in records:
                raise PluginError(
                    f"{hook_name}: {record.name!r} is provided by both plugin "
                    f"{providers[key]!r} and plugin {impl.plugin_name!r}; "
                    f"uninstall one, or block it with SFX_CNN_VETO_BLOCK={impl.plugin_name}"
                )
            records[key] = record
            providers[key] = impl.plugin_name
    return records


def readers(pm: VetoPluginManager | None = None) -> dict[str, ReaderSpec]:
    return _collect("sfxveto_readers", pm)


def preprocessing_steps(pm: VetoPluginManager | None = None) -> dict[str, StepSpec]:
    """``{"crop:centre": StepSpec, "normalize:standardize": StepSpec, ...}``."""
    return _collect("sfxveto_preprocessing_steps", pm)


def architectures(pm: VetoPluginManager | None = None) -> dict[str, ArchitectureSpec]:
    return _collect("sfxveto_architectures", pm)


def backends(pm: VetoPluginManager | None = None) -> dict[str, BackendSpec]:
    return _collect("sfxveto_backends", pm)


def labelers(pm: VetoPluginManager | None = None) -> dict[str, LabelerSpec]:
    return _collect("sfxveto_labelers", pm)


def sinks(pm: VetoPluginManager | None = None) -> dict[str, SinkSpec]:
    return _collect("sfxveto_sinks", pm)


def commands(pm: VetoPluginManager | None = None) -> dict[str, CommandSpec]:
    return _collect("sfxveto_commands", pm)


def command_with_role(role: str, pm: VetoPluginManager | None = None) -> CommandSpec | None:
    """The registered command that declares ``role`` (the first by name when several do), or ``None``.

    Parameters
    ----------
    role
        A contract a command fulfils, e.g. :data:`sfx_cnn_veto.types.ROLE_FILTER_LIST`.
    pm
        The plugin manager (default: the process-wide one).
    """
    for _name, spec in sorted(commands(pm).items()):
        if role in spec.roles:
            return spec
    return None


def config_groups(pm: VetoPluginManager | None = None) -> dict[str, ConfigGroupSpec]:
    """The config groups plugins declare (``sfxveto_config_groups``), by name."""
    return _collect("sfxveto_config_groups", pm)


def select_reader(path: str, options: dict[str, Any], pm: VetoPluginManager | None = None) -> str | None:
    pm = pm or get_plugin_manager()
    return pm.hook.sfxveto_select_reader(path=path, options=options)


def notify_decision(event: Any, decision: Any, pm: VetoPluginManager | None = None) -> None:
    pm = pm or get_plugin_manager()
    pm.hook.sfxveto_decision(event=event, decision=decision)


def provider_of(hook_name: str, name: str, pm: VetoPluginManager | None = None) -> str:
    """Which plugin provides record ``name`` of ``hook_name`` (for ``sfx-cnn-veto plugins``)."""
    pm = pm or get_plugin_manager()
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        for record in impl.function() or ():
            if record.name == name:
                return impl.plugin_name
    return "?"


def iter_plugins(pm: VetoPluginManager | None = None) -> Iterable[tuple[str, str, list[str]]]:
    """``(plugin name, origin, [hooks it implements])`` for each registered plugin."""
    pm = pm or get_plugin_manager()
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or ())
        yield name, pm.origins.get(name, "registered at run time"), hooks
