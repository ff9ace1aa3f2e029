"""Hook implementations of the OM adapter (entry point ``om`` in group ``sfx_cnn_veto``).

OM is imported only inside functions: listing plugins must stay cheap and
must work where OM is not installed.
"""

from __future__ import annotations

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.types import CommandSpec, ConfigGroupSpec


def _configure(parser) -> None:
    parser.add_argument("config", nargs="?", default=None, help="a monitor.yaml to check (default: print an example)")


def _run(args) -> int:
    """Check a monitor.yaml's cnn_veto group (or print the example's), without starting OM."""
    import os

    from sfx_cnn_veto.config import read_yaml
    from sfx_cnn_veto.errors import ConfigError
    from sfx_cnn_veto_om import PROCESSING_LAYER
    from sfx_cnn_veto_om.config import GROUP, CnnVetoConfig

    if args.config is None:
        print(
            "om:\n"
            f"  processing_layer: {PROCESSING_LAYER}\n"
            f"{GROUP}:\n"
            "  model: /path/model.keras   # null = the installed default model\n"
            "  mode: veto                 # veto | tag | off\n"
            "  threshold: null            # null = the model's\n"
            "# run: mpirun -n 3 sfx-om-monitor -c monitor.yaml SOURCE"
        )
        return 0
    data = read_yaml(args.config, what="the monitor config") or {}  # safe_load: Python tags refused, never run
    if not isinstance(data, dict):
        raise ConfigError(f"{args.config}: expected a mapping at the top, got {type(data).__name__}")
    layer = (data.get("om") or {}).get("processing_layer")
    cfg = CnnVetoConfig.from_group(data.get(GROUP))
    print(f"{os.path.basename(args.config)}: processing_layer={layer} {GROUP}={cfg}")
    if cfg.enabled:  # the geometry the veto will crop with, as the collector reports it at start
        from sfx_cnn_veto.core.model import VetoModel
        from sfx_cnn_veto_om.geometry import load_veto_geometry, startup_line

        print(startup_line(cfg, data, load_veto_geometry(cfg, data), VetoModel.read_metadata(cfg.model)))
    if layer != PROCESSING_LAYER:
        print(f"note: om.processing_layer is not {PROCESSING_LAYER}: the veto will not run")
    return 0


@hookimpl
def sfxveto_commands():
    return [
        CommandSpec(
            name="om-config",
            help="print the monitor.yaml lines that enable the OM veto, or check a monitor.yaml's cnn_veto group",
            configure=_configure,
            run=_run,
        )
    ]


@hookimpl
def sfxveto_config_groups():
    return [ConfigGroupSpec(name="om", description="options of the OM adapter (the processing layer reads its cnn_veto group from monitor.yaml); any mapping")]
