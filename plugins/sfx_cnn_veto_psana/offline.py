"""Let psana2 open ``exp=, run=, dir=`` runs on a machine without the SLAC network.

psana 4.3.4, in ``exp=`` mode, first asks the SLAC logbook web service for the
run's file list (``DataSourceBase._get_file_info_from_db``) and only then scans
``dir=`` on disk. The HTTP request is made outside the method's ``try``, so
offline (no DNS, no route) ``DataSource(exp=..., run=..., dir=...)`` dies with
``requests.exceptions.ConnectionError`` instead of falling back to the disk
scan it already implements for an empty answer.

:func:`allow_offline_runs` wraps that one method so that a failed *connection*
(never an HTTP error or a bad answer) counts as "the logbook has no list",
which is psana's own fallback. Live mode (``live=True``) needs the logbook and
is left as it is. It changes nothing when the logbook answers.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_MARK = "_sfx_cnn_veto_offline"


def allow_offline_runs() -> bool:
    """Patch psana2 (once per process) so ``exp=/dir=`` runs open without the network.

    Call it before ``DataSource(exp=..., run=..., dir=...)`` in every MPI
    rank (it is cheap and idempotent). Returns True if the patch is in place.
    """
    try:
        import requests
        from psana.psexp.ds_base import DataSourceBase
    except ImportError:
        return False
    original = DataSourceBase._get_file_info_from_db
    if getattr(original, _MARK, False):
        return True

    def _get_file_info_from_db(self, runnum):
        if getattr(self, "live", False):
            return original(self, runnum)
        try:
            return original(self, runnum)
        except requests.exceptions.ConnectionError as exc:
            log.info("psana logbook not reachable (%s); scanning dir=%s instead", type(exc).__name__, self.dir)
            return {}

    setattr(_get_file_info_from_db, _MARK, True)
    _get_file_info_from_db.__wrapped__ = original
    DataSourceBase._get_file_info_from_db = _get_file_info_from_db
    return True
