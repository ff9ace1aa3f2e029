"""MPI, only when running under ``mpirun`` with more than one rank.

mpi4py is imported only when a launcher's environment variables say there is
a world of more than one rank, so a serial run never pays for (or depends on)
MPI. Open MPI here needs ``mpirun --allow-run-as-root --oversubscribe`` when
run as root or with more ranks than cores.
"""

from __future__ import annotations

import os
import time

_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
_LAUNCHER_VARS = _SIZE_VARS + ("PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")


class SerialComm:
    """A one-rank stand-in with the few mpi4py calls used here (not MPI: the serial path)."""

    rank = 0
    size = 1

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 1

    def bcast(self, obj, root=0):
        return obj

    def gather(self, obj, root=0):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def barrier(self) -> None:
        pass

    def Abort(self, code: int = 1) -> None:  # pragma: no cover
        raise SystemExit(code)


def under_mpi_launcher() -> bool:
    """Whether a launcher says this process is one of several ranks (no import of mpi4py)."""
    if not any(name in os.environ for name in _LAUNCHER_VARS):
        return False
    for name in _SIZE_VARS:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value) > 1
    return True  # a launcher without a size variable we know: ask MPI


def world(mode: str = "auto"):
    """``mpi4py.MPI.COMM_WORLD`` when under ``mpirun -n N`` (N > 1), else a :class:`SerialComm`.

    ``mode``: ``"auto"`` (the default), ``"off"`` (always serial) or ``"on"``
    (require MPI; a clear error when mpi4py is missing).
    """
    if mode == "off" or (mode == "auto" and not under_mpi_launcher()):
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError as exc:
        if mode == "on":
            from sfx_cnn_veto.errors import MissingDependencyError

            raise MissingDependencyError("mpi4py", purpose="MPI scale-out") from exc
        return SerialComm()
    comm = MPI.COMM_WORLD
    if comm.Get_size() <= 1:
        return SerialComm()
    return comm


def local_size() -> int:
    """Ranks on this node (for sharing its cores between them)."""
    for name in ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


# ---------------------------------------------------------------------------
# Collectives that wait by sleeping, not spinning.
#
# A rank that has finished its share would otherwise sit in MPI_Gather/Bcast
# polling at 100 % CPU (Open MPI spins even with --oversubscribe), taking the
# cores that the ranks still scoring need. These poll every ``poll`` seconds.

_TAG_GATHER = 7301
_TAG_BCAST = 7302


def _wait(request, poll: float):
    while True:
        done, message = request.test()
        if done:
            return message
        time.sleep(poll)


def gather(comm, obj, *, root: int = 0, poll: float = 0.02):
    """``comm.gather(obj, root)`` for small Python objects, without busy-waiting."""
    size = comm.Get_size()
    if size == 1:
        return [obj]
    rank = comm.Get_rank()
    if rank != root:
        _wait(comm.isend(obj, dest=root, tag=_TAG_GATHER), poll)
        return None
    out = [None] * size
    out[root] = obj
    pending = {r: comm.irecv(source=r, tag=_TAG_GATHER) for r in range(size) if r != root}
    while pending:
        for r, request in list(pending.items()):
            done, message = request.test()
            if done:
                out[r] = message
                del pending[r]
        if pending:
            time.sleep(poll)
    return out


def bcast(comm, obj, *, root: int = 0, poll: float = 0.02):
    """``comm.bcast(obj, root)`` for small Python objects, without busy-waiting."""
    size = comm.Get_size()
    if size == 1:
        return obj
    if comm.Get_rank() == root:
        requests = [comm.isend(obj, dest=r, tag=_TAG_BCAST) for r in range(size) if r != root]
        for request in requests:
            _wait(request, poll)
        return obj
    return _wait(comm.irecv(source=root, tag=_TAG_BCAST), poll)
