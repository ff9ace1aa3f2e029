"""psana adapter for sfx-cnn-veto: score events in psana (psana2 and LCLS-I psana) scripts.

Importing this package does not import psana or TensorFlow::

    from sfx_cnn_veto_psana import PsanaVeto, VetoTable
    veto = PsanaVeto.load("model.keras", detector=run.Detector("jungfrau"), source="calib")
    for evt, decision in veto.events(run): ...

Modules: :mod:`.veto` (PsanaVeto), :mod:`.outputs` (per-event table, hit
list), :mod:`.xtc` (write xtc2 runs with psana's own writer), :mod:`.offline`
(open ``exp=/dir=`` runs without the SLAC network), :mod:`.peaks` (psana's
peakfinder8 as the ``psana-peakfinder8`` labeler).
"""

from __future__ import annotations

__all__ = [
    "PsanaVeto",
    "psana_audit",
    "VetoTable",
    "select_timestamps",
    "psana1_events_at",
    "read_table",
    "audit_counts",
    "hit_rows",
    "read_hits",
    "write_hits",
    "write_xtc2",
    "write_run",
    "allow_offline_runs",
]

_WHERE = {
    "PsanaVeto": "veto",
    "psana_audit": "veto",
    "select_timestamps": "veto",
    "psana1_events_at": "veto",
    "hit_rows": "outputs",
    "VetoTable": "outputs",
    "read_table": "outputs",
    "audit_counts": "outputs",
    "read_hits": "outputs",
    "write_hits": "outputs",
    "write_xtc2": "xtc",
    "write_run": "xtc",
    "allow_offline_runs": "offline",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
