"""The measurements in other processes: peak memory of streaming runs, ``mpirun``, and ``filter-lst``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Iterable

from sfx_cnn_veto.bench.inputs import write_lst


#: The directory that holds the ``sfx_cnn_veto`` package (children import this copy of it).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: How the bench starts ``mpirun``: as root in containers, more ranks than cores allowed, no core binding
#: (``--bind-to none``: one rank may use every core).
MPIRUN_OPTIONS = ("--allow-run-as-root", "--oversubscribe", "--bind-to", "none")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    here = PACKAGE_PARENT
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env

def memory_child(model: str, lst: str, backend: str, out_csv: str) -> None:
    """Run the ``score`` command on ``lst`` and print its peak RSS (KiB) as JSON."""
    import resource

    from sfx_cnn_veto.cli import main

    def rss_kib() -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    start = time.perf_counter()
    code = main(["score", lst, "-m", model, "--backend", backend, "-o", out_csv])
    elapsed = time.perf_counter() - start
    with open(out_csv) as handle:
        rows = sum(1 for _ in handle) - 1
    print(json.dumps({"exit": code, "rows": rows, "seconds": elapsed, "rss_end_kib": rss_kib(),
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))

def bench_memory(model: str, cxi: str, frames: int, tmp: str, sizes: Iterable[int], backend: str) -> dict[str, Any]:
    out = {}
    for n in sizes:
        lst = write_lst(os.path.join(tmp, f"memory-{n}.lst"), [cxi], frames, n)
        cmd = [sys.executable, "-c",
               "import sys; from sfx_cnn_veto.bench.processes import memory_child; memory_child(*sys.argv[1:])",
               model, lst, backend, os.path.join(tmp, f"memory-{n}.csv")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        result["events"] = n
        if "peak_rss_kib" in result:
            result["peak_rss_mib"] = round(result["peak_rss_kib"] / 1024, 1)
        out[str(n)] = result
    return out

def mpi_child(model: str, lst: str, backend: str) -> None:
    """Each rank scores every size-th event of the list; rank 0 prints frames/s of all ranks together."""
    from mpi4py import MPI

    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.core.tf import default_threads
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    veto = Veto.load(model, backend=backend, threads=max(1, default_threads() // size))
    counts = {"hit": 0, "miss": 0, "error": 0}

    def run() -> None:
        with FrameStore() as store:
            mine = (item for i, item in enumerate(iter_events([lst], store)) if i % size == rank)
            for _ref, decision in veto.stream_events(mine, store):
                counts[decision.label] += 1

    run()  # warm-up
    counts.update({"hit": 0, "miss": 0, "error": 0})
    comm.Barrier()
    start = MPI.Wtime()
    run()
    elapsed = MPI.Wtime() - start
    events = comm.reduce(sum(counts.values()), op=MPI.SUM)
    slowest = comm.reduce(elapsed, op=MPI.MAX)
    if rank == 0:
        print(json.dumps({"ranks": size, "events": events, "seconds": slowest, "fps": events / slowest,
                          "backend": veto.backend_name, "cores_per_rank": default_threads(),
                          "threads_per_rank": getattr(veto.classifier, "threads", None)}))

def list_filter():
    """The command that filters a ``.lst`` (:data:`~sfx_cnn_veto.types.ROLE_FILTER_LIST`), or ``None``.

    The CrystFEL adapter's ``filter-lst`` when it is installed; the bench asks
    the plugin manager for the role and never names an adapter's command.
    """
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.types import ROLE_FILTER_LIST

    return manager.command_with_role(ROLE_FILTER_LIST)


def bench_filter_lst(model: str, lst: str, tmp: str, mpi_ranks: Iterable[int] = ()) -> dict[str, Any]:
    """The list filter (the CrystFEL adapter's ``filter-lst``), when installed: wall time of whole commands.

    In-process once (``--mpi off``), then under ``mpirun -n N`` for each of
    ``mpi_ranks``. These figures include loading the model (and, under
    mpirun, starting Python and TensorFlow in each rank): they are the
    user's wall clock, not the steady-state rate of the rows above.
    """
    from sfx_cnn_veto.cli import main

    command = list_filter()
    if command is None:
        return {"error": "no command filters a .lst (the CrystFEL adapter's filter-lst is not installed)"}
    with open(lst) as handle:
        events = sum(1 for line in handle if line.strip())
    out: dict[str, Any] = {"events": events}
    try:
        start = time.perf_counter()
        code = main([command.name, lst, "-m", model, "-o", os.path.join(tmp, "filter-hits.lst"), "--mpi", "off"])
        elapsed = time.perf_counter() - start
        out["in_process"] = {"exit": code, "seconds": elapsed, "fps_including_model_load": events / elapsed}
    except Exception as exc:  # noqa: BLE001 - a benchmark row, not the benchmark
        out["in_process"] = {"error": f"{type(exc).__name__}: {exc}"}
    mpirun = shutil.which("mpirun")
    for ranks in mpi_ranks:
        if mpirun is None:
            out[f"mpirun_{ranks}"] = {"error": "mpirun not found"}
            continue
        cmd = [mpirun, *MPIRUN_OPTIONS, "-n", str(ranks), sys.executable, "-m",
               "sfx_cnn_veto.cli", command.name, lst, "-m", model, "-o",
               os.path.join(tmp, f"filter-hits-{ranks}.lst"), "--mpi", "on" if ranks > 1 else "off"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        elapsed = time.perf_counter() - start
        out[f"mpirun_{ranks}"] = {"exit": proc.returncode, "seconds_including_startup": elapsed,
                                  "fps_including_startup": events / elapsed,
                                  "summary": (proc.stderr.strip().splitlines() or [""])[-1][:300]}
    return out


def bench_mpi(model: str, lst: str, backend: str) -> dict[str, Any]:
    """The score path under ``mpirun -n 1`` and ``-n 2`` (``--bind-to none``: one rank may use every core)."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return {"error": "mpirun not found (Debian: openmpi-bin)"}
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return {"error": "mpi4py not installed"}
    out = {}
    for ranks in (1, 2):
        cmd = [mpirun, *MPIRUN_OPTIONS, "-n", str(ranks), sys.executable, "-c",
               "import sys; from sfx_cnn_veto.bench.processes import mpi_child; mpi_child(*sys.argv[1:])",
               model, lst, backend]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        try:
            out[f"ranks_{ranks}"] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            out[f"ranks_{ranks}"] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    one, two = out.get("ranks_1", {}).get("fps"), out.get("ranks_2", {}).get("fps")
    if one and two:
        out["speedup_2_over_1"] = two / one
    return out
