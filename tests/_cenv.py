"""The C environment's variable names (``os.environ`` does not see what C code such as MPI_Init sets)."""

from __future__ import annotations

import ctypes
import ctypes.util


def c_environ_keys() -> set[str]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    envp = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
    keys, i = set(), 0
    while envp[i]:
        keys.add(envp[i].split(b"=", 1)[0].decode(errors="replace"))
        i += 1
    return keys
