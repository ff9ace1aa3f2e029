"""Timing helpers of the bench: percentiles of ms/frame, CPU time, and the machine the figures come from."""

from __future__ import annotations

import os
import platform
import time
from typing import Any, Callable

import numpy as np


def stats(seconds: list[float], per: int = 1) -> dict[str, Any]:
    """Median and 10th/90th percentiles of ms/frame, frames/s, from call times of ``per`` frames."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3 / per
    med = float(np.median(ms))
    return {
        "ms_per_frame": med,
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "fps": 1e3 / med if med > 0 else float("inf"),
        "samples": int(len(ms)),
        "frames_per_sample": per,
    }

def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (``CLOCK_PROCESS_CPUTIME_ID``: ns resolution;
    ``os.times`` ticks every 10 ms, too coarse for a few peakfinder8 calls)."""
    return time.process_time()

def timed(func: Callable[[], Any], repeats: int, *, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        func()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return out

def with_cpu(func: Callable[[], dict[str, Any]], frames: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
    """Run ``func`` and add ``cpu_ms_per_frame``: CPU time (all threads) over frames done.

    On a shared machine wall time depends on the other users; CPU time much less.
    """
    start = cpu_seconds()
    result = func()
    n = frames(result)
    result["cpu_ms_per_frame"] = (cpu_seconds() - start) * 1e3 / n if n else None
    return result

def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "node": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": platform.processor() or "",
        "load_average_start": list(os.getloadavg()),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "tensorflow", "keras", "numba", "h5py", "om", "sfx_cnn_veto"):
        try:
            from importlib import metadata

            dist = {"om": "ondamonitor", "sfx_cnn_veto": "sfx-cnn-veto", "tensorflow": "tensorflow-cpu"}.get(name, name)
            versions[name] = metadata.version(dist)
        except Exception:  # noqa: BLE001
            try:
                versions[name] = getattr(__import__(name), "__version__", "?")
            except Exception:  # noqa: BLE001
                versions[name] = None
    info["versions"] = versions
    return info
