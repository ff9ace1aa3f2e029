"""``sfx-cnn-veto bench``: the veto and OM's peakfinder8 timed side by side, in one run.

Everything is measured in one process on the same frames, which the command
writes itself: a temporary CXI file of 1750x1750 float32 frames (one HDF5
chunk a frame, as detectors write them) with Bragg-like spots on a water-ring
background, and a ``.lst`` that cycles over its events. Reported, as the
median and the 10th-90th percentile of ms/frame, with frames/s:

* reading a 350x350 crop from the CXI file (hyperslab) against reading the
  whole frame and cropping it;
* normalization (``standardize``, ``robust``);
* the CNN alone at batch 1 and at the streaming batch size, for every backend
  and for the paper's network and the project's default one (architecture
  ``default``, when registered);
* the whole veto end to end on the ``.lst`` (the ``score`` path:
  ``iter_events`` + ``Veto.stream_events``, reading only crops, prefetching);
* OM's compiled peakfinder8 on the full frames and on the crops;
* peak memory (RSS) of streaming runs of 1k and 10k events (subprocesses),
  and ``mpirun -n 2`` against one rank (when ``mpirun`` is there).

Timings on a shared machine are noisy: compare figures of the same run. The
JSON (``--json``) holds everything, with the machine and its load average.

Modules: :mod:`~sfx_cnn_veto.bench.inputs` (frames, files, models),
:mod:`~sfx_cnn_veto.bench.timing` (percentiles, CPU time, the machine),
:mod:`~sfx_cnn_veto.bench.cases` (the in-process measurements),
:mod:`~sfx_cnn_veto.bench.processes` (memory, MPI, filter-lst in other processes),
:mod:`~sfx_cnn_veto.bench.report` (headline keys, the printed table),
:mod:`~sfx_cnn_veto.bench.commands` (the sub-command).
"""

from __future__ import annotations

from sfx_cnn_veto.bench.inputs import CROP_SHAPE, FRAME_SHAPE, synthetic_frame, write_cxi, write_lst

__all__ = ["CROP_SHAPE", "FRAME_SHAPE", "synthetic_frame", "write_cxi", "write_lst"]
