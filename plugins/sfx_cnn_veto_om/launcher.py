"""``sfx-om-monitor``: OM's ``om_monitor.py``, able to load layers from other packages.

OM 23.8.3 loads the three layers named in ``monitor.yaml`` with
``om.lib.layer_management.import_class_from_layer``, which only looks inside
``om.<layer>`` (a dotted path to another package fails with
``OmMissingLayerClassError``; a module named like the layer on ``sys.path``
makes it return None). This launcher replaces the name ``om.monitor`` uses
with :func:`import_class_from_layer` below, which accepts ``pkg.mod.Class``
and hands bare names to OM's own function, then runs ``om.monitor.main``:
the same click command, the same arguments (``-c/--config``,
``-n/--node-pool-size``, ``SOURCE``). Stock configs behave exactly as with
``om_monitor.py``. Under MPI::

    mpirun -n 3 sfx-om-monitor -c monitor.yaml files.lst

``python -m sfx_cnn_veto_om`` is the same program.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def import_class_from_layer(*, layer_name: str, class_name: str) -> Any:
    """OM's layer loader, extended to dotted ``package.module.Class`` names.

    Parameters
    ----------
    layer_name : str
        ``parallelization_layer``, ``data_retrieval_layer`` or ``processing_layer``.
    class_name : str
        A bare OM class name (looked up by OM itself) or ``pkg.module.Class``.
    """
    from om.lib import layer_management
    from om.lib.exceptions import OmMissingLayerClassError, OmMissingLayerModuleError

    if "." in class_name:
        module_name, _, attr = class_name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise OmMissingLayerModuleError(
                f"{layer_name}: cannot import module {module_name!r} for class {class_name!r} "
                f"({type(exc).__name__}: {exc}); is the package installed in this environment?"
            ) from exc
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise OmMissingLayerClassError(
                f"{layer_name}: module {module_name!r} has no class {attr!r}"
            ) from exc
    found = layer_management.import_class_from_layer(layer_name=layer_name, class_name=class_name)
    if found is None:
        # OM 23.8.3 imported a module called `layer_name` from sys.path and then
        # forgot to look inside it: do what its documentation says it does.
        module = importlib.import_module(layer_name)
        try:
            return getattr(module, class_name)
        except AttributeError as exc:
            raise OmMissingLayerClassError(
                f"The {class_name} class cannot be found in {getattr(module, '__file__', layer_name)}."
            ) from exc
    return found


def install() -> None:
    """Make ``om.monitor`` use :func:`import_class_from_layer` (idempotent)."""
    import om.monitor

    om.monitor.import_class_from_layer = import_class_from_layer


def main(argv: list[str] | None = None) -> Any:
    """Console script ``sfx-om-monitor``: same arguments as ``om_monitor.py``."""
    try:
        install()
        import om.monitor
    except ImportError as exc:
        from sfx_cnn_veto.errors import MissingDependencyError

        err = MissingDependencyError(
            "ondamonitor", hint='pip install "sfx-cnn-veto[om]"  (ondamonitor==23.8.3, mpi4py; numpy<2)',
            purpose="sfx-om-monitor",
        )
        print(f"sfx-om-monitor ERROR: {err} ({exc})", file=sys.stderr)
        return 1
    from sfx_cnn_veto.errors import VetoError

    try:
        return om.monitor.main(args=argv, prog_name="sfx-om-monitor")
    except VetoError as exc:
        print(f"sfx-om-monitor ERROR: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
