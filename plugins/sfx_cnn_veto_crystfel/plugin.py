"""Hook implementations of the CrystFEL adapter: its sub-commands.

Registered through the ``sfx_cnn_veto`` entry-point group (``crystfel =
sfx_cnn_veto_crystfel.plugin``) exactly as a third-party plugin would be.
Importing this module is cheap: each command imports its code when it runs.
"""

from __future__ import annotations

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.types import ROLE_FILTER_LIST, CommandSpec, ConfigGroupSpec, SinkSpec


def _lazy(module: str, name: str):
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(f"sfx_cnn_veto_crystfel.{module}"), name)(*args, **kwargs)

    return call


@hookimpl
def sfxveto_commands():
    return [
        CommandSpec(
            "filter-lst",
            "veto a CrystFEL .lst before indexamajig: hits.lst (+ misses, errors, scores CSV); resumable, MPI-aware",
            _lazy("filter_lst", "configure"), _lazy("filter_lst", "run"), roles=(ROLE_FILTER_LIST,),
        ),
        CommandSpec(
            "tag-stream",
            "add cnn_hit_score / cnn_hit to each chunk of a CrystFEL stream; optionally split it into hits and misses",
            _lazy("tag_stream", "configure"), _lazy("tag_stream", "run"), aliases=("filter-stream",),
        ),
        CommandSpec(
            "tag-cxi",
            "write per-event scores beside CXI files (sidecar /entry_1/result_1/cnnHitScore, cnnHit), or --in-place",
            _lazy("sidecar", "configure"), _lazy("sidecar", "run"),
        ),
        CommandSpec(
            "convert",
            "convert hit lists: OM/Cheetah lists to indexamajig .lst (hitlist), a .lst to a scores CSV (lst-scores)",
            _lazy("convert", "configure"), _lazy("convert", "run"),
        ),
    ]


@hookimpl
def sfxveto_sinks():
    return [
        SinkSpec("cxi-sidecar", _lazy("sinks", "SidecarSink"),
                 "per-event scores in DIR/<stem>.cnn.h5 (--sink cxi-sidecar:DIR; empty DIR: beside each CXI file)"),
    ]


@hookimpl
def sfxveto_config_groups():
    return [ConfigGroupSpec(name="crystfel",
                            description="options of the CrystFEL adapter (filter-lst, tag-stream, tag-cxi, convert); "
                                        "any mapping")]
