"""Write frames to xtc2 with psana's own writer (``psana.dgramedit``).

Used by the tests and the example to make a real psana2 run out of simulated
frames; useful to anyone who wants to try the veto on psana without beamtime
data. Two forms:

- :func:`write_xtc2` writes one ``.xtc2`` file, read with
  ``DataSource(files=[path], skip_calib_load="all")`` (serial only: psana2 never
  splits a ``files=`` run over MPI ranks);
- :func:`write_run` lays a run out as psana2 expects it on disk,
  ``DIR/EXP-rRRRR-s000-c000.xtc2`` plus the small-data index
  ``DIR/smalldata/EXP-rRRRR-s000-c000.smd.xtc2`` (made by psana's ``smdwriter``),
  read with ``DataSource(exp=EXP, run=RUN, dir=DIR, skip_calib_load="all")``,
  serially or under ``mpirun``.

Two detector types (``dettype=``):

- ``"opal"`` (default): an Opal camera (``raw`` 2.0.0, one field ``image``,
  rank 2 or 3), so ``det.raw.raw/calib(evt)`` return the frame as written,
  2-D or ``(panels, ss, fs)`` (there are no calibration constants offline);
  psana has no geometry for it;
- ``"jungfrau"``: a JUNGFRAU of ``P`` modules (``raw`` 0.2.0, one segment per
  module, field ``raw`` of 512x1024 uint16), read by psana's own
  ``jungfrau_raw_0_2_0``: ``det.raw.raw/calib(evt)`` give ``(P, 512, 1024)``
  (calib = raw without pedestals) and ``det.raw._pixel_coords()`` psana's
  default JUNGFRAU geometry (``geometry-def-jungfrau05M/1M/4M/16M.data`` for
  1, 2, 8 or 32 modules).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from sfx_cnn_veto.errors import ConfigError, MissingDependencyError

#: psana2 timestamps count seconds from 1990-01-01 UTC (the EPICS epoch).
EPICS_EPOCH_UNIX = 631152000

_INSTALL_HINT = (
    "psana2 is needed: apt-get install libkrb5-dev libopenmpi-dev openmpi-bin, "
    "then pip install 'sfx-cnn-veto[psana]' (psana==4.3.4)"
)


def _dgramedit():
    try:
        from psana import dgramedit
    except ImportError as exc:
        raise MissingDependencyError(f"cannot import psana.dgramedit ({exc}); {_INSTALL_HINT}") from exc
    return dgramedit


def psana_timestamp(unix_seconds: float) -> int:
    """The psana2 64-bit timestamp ``(sec - 631152000) << 32 | nsec`` of a Unix time."""
    sec = int(unix_seconds)
    nsec = int(round((unix_seconds - sec) * 1e9))
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    if sec < EPICS_EPOCH_UNIX:
        raise ConfigError(f"timestamp: expected a Unix time after 1990-01-01, got {unix_seconds}")
    return ((sec - EPICS_EPOCH_UNIX) << 32) | nsec


def unix_time(timestamp: int) -> float:
    """The Unix time of a psana2 64-bit timestamp (inverse of :func:`psana_timestamp`)."""
    timestamp = int(timestamp)
    return (timestamp >> 32) + EPICS_EPOCH_UNIX + (timestamp & 0xFFFFFFFF) * 1e-9


def default_timestamps(n: int, *, start: float | None = None, rate_hz: float = 120.0) -> np.ndarray:
    """``n`` increasing psana2 timestamps, ``rate_hz`` apart, from ``start`` (default: now)."""
    start = time.time() if start is None else float(start)
    step_ns = int(round(1e9 / rate_hz))
    first = psana_timestamp(start)
    out = []
    sec, nsec = first >> 32, first & 0xFFFFFFFF
    for _ in range(n):
        out.append((sec << 32) | nsec)
        nsec += step_ns
        sec, nsec = sec + nsec // 1_000_000_000, nsec % 1_000_000_000
    return np.array(out, dtype=np.uint64)


@dataclass(frozen=True)
class RunFiles:
    """Where :func:`write_run` put a run, and how to open it."""

    exp: str
    run: int
    dir: str
    xtc2: str
    smd: str
    detector_name: str
    timestamps: np.ndarray

    def datasource_kwargs(self) -> dict:
        """Arguments for ``psana.DataSource`` (offline: calibration service skipped)."""
        return {"exp": self.exp, "run": self.run, "dir": self.dir, "skip_calib_load": "all"}


def write_xtc2(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray] | np.ndarray,
    *,
    detector_name: str = "camera",
    timestamps: Sequence[int] | np.ndarray | None = None,
    exp: str | None = None,
    run: int | None = None,
    dtype: np.dtype | str = np.float32,
    serial_number: str = "sfxsim0001",
    dettype: str = "opal",
) -> np.ndarray:
    """Write ``frames`` as the L1Accept events of one xtc2 file, with psana's ``DgramEdit``.

    Parameters
    ----------
    path : path
        Output ``.xtc2`` file (overwritten).
    frames : iterable of arrays or None
        One frame per event: 2-D, or ``(panels, ss, fs)`` (shapes may differ
        for ``opal``). ``None`` writes an event without this detector's data
        (psana then returns ``None`` for it).
    detector_name : str
        The name to pass to ``run.Detector(...)``.
    timestamps : sequence of int, optional
        psana2 64-bit timestamps, strictly increasing (default: 120 Hz from now).
    exp, run : str, int, optional
        BeginRun's ``runinfo`` (``run.expt``, ``run.runnum``; offline: ``skip_calib_load="all"``).
    dtype : numpy dtype
        Stored pixel type (``jungfrau``: always uint16).
    dettype : {"opal", "jungfrau"}
        The detector type psana reads (see the module docstring).

    Returns the event timestamps written (uint64), in order.
    """
    de = _dgramedit()
    if dettype not in DETTYPES:
        raise ConfigError(f"write_xtc2: dettype: expected one of {', '.join(DETTYPES)}, got {dettype!r}")
    dtype = np.uint16 if dettype == "jungfrau" else dtype
    frames = [None if f is None else np.ascontiguousarray(f, dtype=dtype) for f in frames]
    present = [f for f in frames if f is not None]
    if not present:
        raise ConfigError("write_xtc2: expected at least one frame that is not None, got none")
    _check_frames(frames, dettype)
    ts = _checked_timestamps(timestamps, len(frames))
    bufsize = max(max(f.nbytes for f in present) + (1 << 16), 1 << 20)
    if bufsize > de.MAXBUFSIZE:
        raise ConfigError(f"write_xtc2: a frame of {bufsize} bytes exceeds psana's buffer ({de.MAXBUFSIZE} bytes)")
    from psana.psexp import TransitionId

    config = de.DgramEdit(transition_id=TransitionId.Configure, ts=int(ts[0]) - 7, bufsize=bufsize)
    fill = _declare(de, config, dettype, detector_name, serial_number, np.dtype(dtype), present[0])
    runinfo = None
    if exp is not None or run is not None:
        runinfo = config.Detector(
            de.DetectorDef("runinfo", "runinfo", ""),
            de.AlgDef("runinfo", 0, 0, 1),
            {"expt": (str, 1), "runnum": (np.uint32, 0)},
        )
    path = os.fspath(path)
    with open(path + ".part", "wb") as out:
        save = _saver(out, bytearray(bufsize))
        save(config)
        for k, transition in enumerate([TransitionId.BeginRun, TransitionId.BeginStep, TransitionId.Enable]):
            dg = de.DgramEdit(transition_id=transition, config_dgramedit=config, ts=int(ts[0]) - 6 + k, bufsize=bufsize)
            if transition == TransitionId.BeginRun and runinfo is not None:
                runinfo.runinfo.expt = exp or ""
                runinfo.runinfo.runnum = np.uint32(run or 0)
                dg.adddata(runinfo.runinfo)
            save(dg)
        for frame, stamp in zip(frames, ts):
            dg = de.DgramEdit(transition_id=TransitionId.L1Accept, config_dgramedit=config, ts=int(stamp), bufsize=bufsize)
            if frame is not None:  # None: an event without this detector's data
                fill(dg, frame)
            save(dg)
        for k, transition in enumerate([TransitionId.Disable, TransitionId.EndStep, TransitionId.EndRun]):
            save(de.DgramEdit(transition_id=transition, config_dgramedit=config, ts=int(ts[-1]) + 1 + k,
                              bufsize=bufsize))
    os.replace(path + ".part", path)
    return ts


def _checked_timestamps(timestamps: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    """The events' timestamps: given (strictly increasing, one per frame), else 120 Hz from now."""
    if timestamps is None:
        ts = default_timestamps(n)
    else:
        ts = np.asarray(timestamps, dtype=np.uint64)
        if ts.shape != (n,):
            raise ConfigError(f"write_xtc2: {n} frames but {ts.size} timestamps")
        if len(ts) > 1 and not np.all(np.diff(ts.astype(np.int64)) > 0):
            raise ConfigError("write_xtc2: timestamps must be strictly increasing")
    if int(ts[0]) < 8:
        raise ConfigError("write_xtc2: the first timestamp must leave room for the transitions before it")
    return ts


def _saver(out: Any, buf: bytearray):
    """``save(dgram)``: serialize a DgramEdit into ``buf`` and append it to ``out``."""

    def save(dgram) -> None:
        dgram.save(memoryview(buf))
        out.write(buf[: dgram.size])

    return save


#: Detector types :func:`write_xtc2` can declare.
DETTYPES = ("opal", "jungfrau")

JUNGFRAU_MODULE = (512, 1024)


def _check_frames(frames: list, dettype: str) -> None:
    """Refuse frames psana could not read back as the declared detector, naming the first bad one."""
    ndims = {f.ndim for f in frames if f is not None}
    for i, frame in enumerate(frames):
        if frame is None:
            continue
        if dettype == "opal" and frame.ndim not in (2, 3):
            raise ConfigError(f"write_xtc2: frame {i} has shape {frame.shape}, expected 2-D or (panels, ss, fs)")
        if dettype == "jungfrau" and (frame.ndim != 3 or frame.shape[1:] != JUNGFRAU_MODULE
                                      or frame.shape[0] not in (1, 2, 8, 32)):
            raise ConfigError(f"write_xtc2: frame {i} has shape {frame.shape}; a JUNGFRAU frame is "
                              f"(modules, 512, 1024) with 1, 2, 8 or 32 modules")
    if len(ndims) > 1:
        raise ConfigError(f"write_xtc2: frames mix {sorted(ndims)}-D arrays; one detector field has one rank")
    shapes = {f.shape for f in frames if f is not None}
    if dettype == "jungfrau" and len(shapes) > 1:
        raise ConfigError(f"write_xtc2: JUNGFRAU frames of several shapes {sorted(shapes)}")


def _declare(de, config, dettype: str, name: str, serial: str, dtype: np.dtype, sample: np.ndarray):
    """Declare the detector in the Configure transition; returns ``fill(dgram, frame)`` for one event."""
    if dettype == "opal":
        det = config.Detector(de.DetectorDef(name, "opal", serial), de.AlgDef("raw", 2, 0, 0),
                              {"image": (dtype.type, sample.ndim)})

        def fill(dgram, frame):
            det.raw.image = frame
            dgram.adddata(det.raw)

        return fill
    modules = [
        config.Detector(de.DetectorDef(name, "jungfrau", f"{serial}_{k}"), de.AlgDef("raw", 0, 2, 0),
                        {"raw": (np.uint16, 2)}, segment=k)
        for k in range(sample.shape[0])
    ]

    def fill_segments(dgram, frame):
        for module, plane in zip(modules, frame):
            module.raw.raw = plane
            dgram.adddata(module.raw)

    return fill_segments


def smdwriter_path() -> str:
    """psana's ``smdwriter`` (shipped in the wheel under ``site-packages/bin``, not on PATH)."""
    found = shutil.which("smdwriter")
    if found:
        return found
    try:
        import psana
    except ImportError as exc:
        raise MissingDependencyError(f"cannot import psana ({exc}); {_INSTALL_HINT}") from exc
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(psana.__file__))), "bin", "smdwriter")
    if not os.path.exists(here):
        raise MissingDependencyError(f"psana's smdwriter not found (looked on PATH and at {here})")
    return here


def write_smd(xtc2_path: str | os.PathLike, smd_path: str | os.PathLike) -> str:
    """Make the small-data index of an xtc2 file with psana's ``smdwriter``."""
    xtc2_path = os.path.abspath(os.fspath(xtc2_path))
    smd_path = os.path.abspath(os.fspath(smd_path))
    os.makedirs(os.path.dirname(smd_path), exist_ok=True)
    # smdwriter takes only -f and writes ./smd.xtc2: run it in a scratch directory.
    with tempfile.TemporaryDirectory(dir=os.path.dirname(smd_path)) as scratch:
        proc = subprocess.run(
            [smdwriter_path(), "-f", xtc2_path], cwd=scratch, capture_output=True, text=True, timeout=300
        )
        made = os.path.join(scratch, "smd.xtc2")
        if proc.returncode != 0 or not os.path.exists(made):
            raise RuntimeError(
                f"smdwriter failed (exit {proc.returncode}) on {xtc2_path}: "
                f"{(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        os.replace(made, smd_path)
    return smd_path


def write_run(
    directory: str | os.PathLike,
    frames: Iterable[np.ndarray] | np.ndarray,
    *,
    exp: str = "sfxsim01",
    run: int = 1,
    detector_name: str = "camera",
    timestamps: Sequence[int] | np.ndarray | None = None,
    dtype: np.dtype | str = np.float32,
    dettype: str = "opal",
) -> RunFiles:
    """Write a run psana2 can open with ``exp=, run=, dir=`` (and so spread over MPI ranks).

    Lays out ``DIR/EXP-rRRRR-s000-c000.xtc2`` and its small-data index
    ``DIR/smalldata/EXP-rRRRR-s000-c000.smd.xtc2``.
    """
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    stem = f"{exp}-r{int(run):04d}-s000-c000"
    xtc2 = os.path.join(directory, stem + ".xtc2")
    smd = os.path.join(directory, "smalldata", stem + ".smd.xtc2")
    ts = write_xtc2(xtc2, frames, detector_name=detector_name, timestamps=timestamps, exp=exp, run=run, dtype=dtype,
                    dettype=dettype)
    write_smd(xtc2, smd)
    return RunFiles(exp=exp, run=int(run), dir=directory, xtc2=xtc2, smd=smd, detector_name=detector_name, timestamps=ts)
