import os

import pytest

from _cenv import c_environ_keys

pytest_plugins = ["sfx_cnn_veto.testing"]


@pytest.fixture(autouse=True)
def _no_open_mpi_singleton_leak():
    """An in-process ``MPI_Init`` (mpi4py, via psana or OM) writes OMPI_*/PMIX_* variables into the
    C environment, not ``os.environ``; a later ``mpirun`` child inheriting them fails. Drop them
    after every test, whichever test imported MPI first."""
    yield
    for key in c_environ_keys():
        if key.startswith(("OMPI_", "PMIX_")) and key not in os.environ:
            os.unsetenv(key)
