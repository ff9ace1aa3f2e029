"""YAML configuration: one group per step, parsed once into frozen dataclasses.

Example ``veto.yaml``::

    model:
      path: /data/models/run90-93.keras
      backend: auto          # auto: numba when installed and it reproduces Keras, else keras
      batch_size: 64
    decision:
      threshold: null        # null: the model's own
    crop:
      center: [880.5, 875.0] # beam center (row, col) in pixels; null: frame center
    reader:
      dataset: /entry_1/data_1/data
      prefix: ""
    crystfel: {...}          # a group an installed adapter declares
    plugins:
      myplugin: {option: 1}

The core's groups are ``model``, ``decision``, ``crop``, ``reader`` and
``plugins``; every other group belongs to a plugin that declares it through
the ``sfxveto_config_groups`` hook (the CrystFEL, OM and psana adapters
declare ``crystfel``, ``om`` and ``psana``), so a third-party adapter adds its
own group the same way, with or without a dataclass to validate it against.
Only ``yaml.safe_load`` is used: Python tags (``!!python/object``) are refused.
Unknown keys and wrong types are errors naming the key, the expected type and
the allowed keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, get_args, get_origin, get_type_hints

from sfx_cnn_veto.errors import ConfigError, PluginError


@dataclass(frozen=True)
class ModelConfig:
    path: str | None = None
    backend: str = "auto"
    batch_size: int = 64
    threads: int | None = None


@dataclass(frozen=True)
class DecisionConfig:
    threshold: float | None = None
    #: Undecidable frames are kept as hits (fail open). ``False`` treats them as misses.
    fail_open: bool = True


@dataclass(frozen=True)
class CropConfig:
    #: Beam centre ``[row, col]`` in pixels, overriding the model's (or the frame centre).
    center: list[float] | None = None
    #: CrystFEL .geom of the detector: the crop is taken around the beam of the assembled image.
    geometry: str | None = None


@dataclass(frozen=True)
class ReaderConfig:
    dataset: str | None = None
    prefix: str = ""


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    plugins: dict[str, Any] = field(default_factory=dict)
    #: The groups plugins declare, parsed: name -> dataclass instance (or dict when the plugin gave no schema).
    groups: dict[str, Any] = field(default_factory=dict, metadata={"yaml": False})

    def group(self, name: str, default: Any = None) -> Any:
        """The parsed group ``name`` that a plugin declared (``default`` when there is none)."""
        return self.groups.get(name, default)


def _type_name(tp: Any) -> str:
    if get_origin(tp) is not None and type(None) in get_args(tp):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + " or null"
    return getattr(tp, "__name__", str(tp))


def _check_value(where: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(where, value, inner[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_value(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


def _yaml_keys(cls: type) -> list[str]:
    """The fields of a config dataclass that a YAML file may set."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


def _mapping(data: Any, where: str) -> Mapping:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    return data


def _build(cls: type, data: Any, where: str, allowed: list[str] | None = None):
    data = _mapping(data, where)
    hints = get_type_hints(cls)
    names = _yaml_keys(cls)
    allowed = names if allowed is None else allowed
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise ConfigError(
            f"{(where + '.') if where else ''}{unknown[0]}: unknown key; allowed keys: {', '.join(allowed)}"
        )
    values = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, data[name], key)
        else:
            try:
                values[name] = _check_value(key, data[name], tp)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (type {_type_name(tp)})") from None
    return cls(**values)


def declared_groups(pm=None) -> dict:
    """The config groups plugins declare (name -> :class:`~sfx_cnn_veto.types.ConfigGroupSpec`), sorted by name.

    Raises
    ------
    PluginError
        A plugin declares a group the core owns.
    """
    from sfx_cnn_veto import manager

    groups = manager.config_groups(pm)
    clash = sorted(set(groups) & set(_yaml_keys(Config)))
    if clash:
        raise PluginError(f"config group {clash[0]!r} is the core's: a plugin may not declare it "
                          f"(declared by plugin {manager.provider_of('sfxveto_config_groups', clash[0], pm)!r})")
    return dict(sorted(groups.items()))


def _parse_group(spec, data: Any) -> Any:
    """One plugin group: against its dataclass, or any mapping kept as a dict."""
    if spec.schema is None:
        return dict(_mapping(data, spec.name))
    if not dataclasses.is_dataclass(spec.schema):
        raise PluginError(f"config group {spec.name!r}: schema must be a dataclass, got {spec.schema!r}")
    return _build(spec.schema, data, spec.name)


def parse_config(data: Any, *, pm=None) -> Config:
    """Validate a mapping (as ``yaml.safe_load`` returns it) into a :class:`Config`.

    Parameters
    ----------
    data
        The loaded YAML.
    pm
        The plugin manager whose declared groups are accepted (default: the process-wide one).

    Returns
    -------
    Config
        The core's groups as dataclasses; the plugins' groups in :attr:`Config.groups`.

    Raises
    ------
    ConfigError
        An unknown key (naming the allowed ones), a wrong type, or a value out of range.
    """
    data = _mapping(data, "")
    declared = declared_groups(pm)
    core = [name for name in _yaml_keys(Config) if name != "plugins"]
    allowed = core + list(declared) + ["plugins"]
    config = _build(Config, {k: v for k, v in data.items() if k not in declared}, "", allowed)
    groups = {name: _parse_group(spec, data.get(name)) for name, spec in declared.items()}
    config = dataclasses.replace(config, groups=groups)
    if config.model.batch_size < 1:
        raise ConfigError(f"model.batch_size: expected a positive integer, got {config.model.batch_size}")
    if config.decision.threshold is not None and not 0 <= config.decision.threshold <= 1:
        raise ConfigError(f"decision.threshold: expected a number in [0, 1], got {config.decision.threshold}")
    if config.crop.center is not None and len(config.crop.center) != 2:
        raise ConfigError(f"crop.center: expected [row, col], got {config.crop.center}")
    return config


def read_yaml(path: str | os.PathLike, *, what: str = "config") -> Any:
    """Load a YAML file with ``yaml.safe_load`` only: Python tags are refused, never run.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for the error message (``config``, ``experiment config`` ...).

    Returns
    -------
    Any
        What ``safe_load`` returns (``None`` for an empty file).

    Raises
    ------
    ConfigError
        The file cannot be read, or is not YAML that ``safe_load`` accepts (one line naming the file).
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read {what} ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)}: not valid YAML for safe_load ({str(exc).splitlines()[0]})") from exc


def load_config(path: str | os.PathLike | None, *, pm=None) -> Config:
    """Read and validate a YAML file (``None``: all defaults)."""
    if path is None:
        return Config()
    data = read_yaml(path)
    try:
        return parse_config(data, pm=pm)
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from None
