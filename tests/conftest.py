import ctypes
import ctypes.util
import os

import pytest

pytest_plugins = ["sfx_cnn_veto.testing"]


def _c_environ_keys() -> set[str]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    envp = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
    keys, i = set(), 0
    while envp[i]:
        keys.add(envp[i].split(b"=", 1)[0].decode(errors="replace"))
        i += 1
    return keys


@pytest.fixture(autouse=True)
def _no_open_mpi_singleton_leak():
    """An in-process ``MPI_Init`` (mpi4py, via psana or OM) writes OMPI_*/PMIX_* variables into the
    C environment, not ``os.environ``; a later ``mpirun`` child inheriting them fails. Drop them
    after every test, whichever test imported MPI first."""
    yield
    for key in _c_environ_keys():
        if key.startswith(("OMPI_", "PMIX_")) and key not in os.environ:
            os.unsetenv(key)
