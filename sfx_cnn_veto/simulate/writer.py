"""Write a simulated run as a beamline would leave it: CXI file, .lst, .geom, truth CSV.

Per run ``NAME`` in ``outdir``:

* ``NAME.cxi``: ``/entry_1/data_1/data`` float32 ``(N, H, W)`` ADU, one chunk a
  frame; ``/entry_1/data_1/mask`` uint16 (CXI convention: 0 = good, bit 1 = panel
  gap, bit 2 = beamstop shadow, bit 4 =
  hot/cold pixel known from a dark run, 90 % of them); geometry under ``/entry_1/instrument_1``
  (``detector_1/distance``, ``x_pixel_size``, ``y_pixel_size`` in m,
  ``beam_center_x``/``_y`` in pixels, ``adu_per_photon``; ``source_1/energy`` in J
  and ``photon_energy_ev``); the run's configuration as JSON in
  ``/entry_1/sfx_cnn_veto/run_config``.
* ``NAME.lst``: ``/abs/path/NAME.cxi //N`` for every frame (what indexamajig reads).
* ``NAME.geom``: a CrystFEL geometry for the file (single panel, multi-event, mask); with a
  multi-panel ``layout`` the data set and the mask hold raw slabs and the geometry has the panels.
* ``NAME.truth.csv``: ``file,event,run,crystal,n_crystals,strength,n_spots,...``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.geometry import format_geometry
from sfx_cnn_veto.prefetch import Prefetcher
from sfx_cnn_veto.simulate.detector import MASK_GAP
from sfx_cnn_veto.simulate.layouts import SlabLayout, slab_layout
from sfx_cnn_veto.io.cxi import create_frames
from sfx_cnn_veto.simulate.generate import TRUTH_FIELDS, RunSimulator
from sfx_cnn_veto.simulate.runs import Experiment, RunConfig, dump_experiment

ELECTRON_VOLT_J = 1.602176634e-19


@dataclass(frozen=True)
class RunFiles:
    """Paths of the files written for one run (absolute)."""

    run: str
    cxi: str
    lst: str
    geom: str
    truth: str
    n_frames: int


def write_run(
    outdir: str,
    run: RunConfig,
    seed: int,
    n_frames: int,
    *,
    compression: str = "lz4",
    progress: Optional[Callable[[int], None]] = None,
    layout: str = "assembled",
) -> RunFiles:
    """Simulate ``n_frames`` frames of ``run`` with ``seed`` and write its four files.

    ``layout`` (:mod:`sfx_cnn_veto.simulate.layouts`): ``assembled`` writes the frames as simulated,
    with a one-panel geometry; ``eight-panel``, ``cspad``, ``jungfrau4m`` (or a ``.geom`` file) write
    each frame as that detector's raw slab, the file's mask in slab layout, and the slab's geometry
    as ``NAME.geom``. The truth is the same for every layout.

    ``progress(n)`` is called after each frame with the number of frames done
    (e.g. a tqdm bar's ``update``). The CXI file is written to ``NAME.cxi.part``
    and renamed when complete. Returns the absolute paths.
    """
    import h5py

    if n_frames < 1:
        raise ConfigError(f"n_frames must be >= 1, got {n_frames}")
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    base = os.path.join(outdir, run.name)
    paths = RunFiles(run=run.name, cxi=base + ".cxi", lst=base + ".lst", geom=base + ".geom",
                     truth=base + ".truth.csv", n_frames=int(n_frames))
    sim = RunSimulator(run, seed)
    det = run.detector
    slabs = slab_layout(layout, sim.detector.shape, run.beam_center, res=1.0 / (det.pixel_size_um * 1e-6))
    if slabs is not None and slabs.outside > 0.01:
        print(f"sfx-cnn-veto: warning: {run.name}: {slabs.outside:.0%} of the {layout} panels' pixels lie outside "
              f"the simulated {det.shape[0]}x{det.shape[1]} frame; they read 0 and are masked (a larger --size "
              "covers them)", file=sys.stderr)
    height, width = sim.detector.shape if slabs is None else slabs.slab_shape
    part = paths.cxi + ".part"
    truths = []
    with h5py.File(part, "w", libver=("earliest", "v110")) as f:
        f.attrs["creator"] = "sfx-cnn-veto simulate"
        f.attrs["NX_class"] = "NXroot"
        entry = f.create_group("entry_1")
        entry.create_dataset("experiment_identifier", data=np.array([f"{run.name} //{i}".encode() for i in range(n_frames)]))
        data_1 = entry.create_group("data_1")
        data = create_frames(data_1, "data", n_frames, (height, width), compression=compression)
        data.attrs["units"] = "ADU"
        data.attrs["axes"] = "experiment_identifier:y:x"
        own_mask = sim.detector.mask if slabs is None else slabs.slab_mask(sim.detector.mask, MASK_GAP)
        mask = data_1.create_dataset("mask", data=own_mask)
        mask.attrs["convention"] = "CXI: 0 = good pixel; bit 1 = panel gap, bit 2 = beamstop shadow, bit 4 = hot/cold pixel known from a dark run"
        _write_instrument(entry, data, mask, run, seed, slabs)
        # frames are made one or two ahead in a thread (each from its own seeded generator, so the same
        # frames) while this one compresses and writes the previous ones
        with Prefetcher((sim.frame(index) for index in range(n_frames)), depth=2,
                        name="sfx-cnn-veto-simulate") as frames:
            for index, (frame, truth) in enumerate(frames):
                data[index] = frame if slabs is None else slabs.slab(frame)
                truths.append(truth)
                if progress is not None:
                    progress(1)
    os.replace(part, paths.cxi)
    with open(paths.lst, "w", encoding="utf-8", newline="\n") as handle:
        for index in range(n_frames):
            handle.write(f"{paths.cxi} //{index}\n")
    with open(paths.geom, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(geometry_text(run) if slabs is None else slab_geometry_text(run, slabs))
    with open(paths.truth, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        fields = ["file", "event", "run"] + [k for k in TRUTH_FIELDS if k != "event"]
        writer.writerow(fields)
        for truth in truths:
            writer.writerow([paths.cxi, f"//{truth['event']}", run.name] + [truth[k] for k in fields[3:]])
    return paths


def _write_instrument(entry, data, mask, run: RunConfig, seed: int, slabs: SlabLayout | None) -> None:
    """The CXI file's ``instrument_1`` (detector and source values) and the run's configuration."""
    inst = entry.create_group("instrument_1")
    det_g = inst.create_group("detector_1")
    det_g["data"] = data                               # hard links, as CXI files have
    det_g["mask"] = mask
    for name, value, unit in _detector_values(run, slabs is None):
        det_g.create_dataset(name, data=value).attrs["units"] = unit
    if slabs is not None:
        det_g.attrs["layout"] = (f"raw slab of {slabs.geometry.source} ({len(slabs.geometry.panels)} panels): "
                                 "read it with the geometry written beside the run")
    source = inst.create_group("source_1")
    source.create_dataset("energy", data=run.beam.photon_energy_ev * ELECTRON_VOLT_J).attrs["units"] = "J"
    source.create_dataset("photon_energy_ev", data=run.beam.photon_energy_ev).attrs["units"] = "eV"
    source.create_dataset("wavelength", data=run.beam.wavelength_a * 1e-10).attrs["units"] = "m"
    meta = entry.create_group("sfx_cnn_veto")
    meta.create_dataset("run_config", data=json.dumps(run.to_dict(), sort_keys=True))
    meta.create_dataset("seed", data=np.int64(seed))


def _detector_values(run: RunConfig, assembled: bool) -> list[tuple[str, float, str]]:
    """The ``detector_1`` values of a run's CXI file (no beam centre in pixels for a raw slab: the geometry has it)."""
    det = run.detector
    values = [
        ("distance", det.distance_mm * 1e-3, "m"),
        ("x_pixel_size", det.pixel_size_um * 1e-6, "m"),
        ("y_pixel_size", det.pixel_size_um * 1e-6, "m"),
        ("beam_center_x", run.beam_center[0], "pixel (fast scan, pixel centres at integers)"),
        ("beam_center_y", run.beam_center[1], "pixel (slow scan, pixel centres at integers)"),
        ("adu_per_photon", run.adu_per_photon, "ADU/photon"),
        ("saturation", det.saturation_adu, "ADU"),
    ]
    return values if assembled else [v for v in values if not v[0].startswith("beam_center")]


def slab_geometry_text(run: RunConfig, slabs: SlabLayout) -> str:
    """The CrystFEL geometry of a run written as raw slabs: the layout's panels, the run's beam, clen, mask."""
    det = run.detector
    header = {
        "photon_energy": f"{run.beam.photon_energy_ev:g}",
        "adu_per_photon": f"{run.adu_per_photon:g}",
        "clen": f"{det.distance_mm * 1e-3:g}",
        "res": f"{1.0 / (det.pixel_size_um * 1e-6):.6g}",
        "data": "/entry_1/data_1/data",
        "dim0": "%",
        "dim1": "ss",
        "dim2": "fs",
        "mask": "/entry_1/data_1/mask",
        "mask_good": "0x0",
        "mask_bad": "0xffff",
    }
    comment = (f"; CrystFEL geometry of the simulated run {run.name} as raw slabs (written by sfx-cnn-veto "
               f"simulate --layout {slabs.name}):\n; {slabs.geometry.source}; {len(slabs.geometry.panels)} panels; "
               "slab pixels no panel uses are masked\n")
    return comment + format_geometry(slabs.geometry, header=header)


def geometry_text(run: RunConfig) -> str:
    """A CrystFEL geometry file for a run's CXI file (one panel; gaps and beamstop masked)."""
    det = run.detector
    height, width = det.shape
    fs0, ss0 = run.beam_center
    res = 1.0 / (det.pixel_size_um * 1e-6)
    lines = [
        f"; CrystFEL geometry of the simulated run {run.name} (written by sfx-cnn-veto simulate)",
        "; One panel covering the whole CSPAD-like frame; panel gaps and the beamstop are masked.",
        f"photon_energy = {run.beam.photon_energy_ev:g}",
        f"adu_per_photon = {run.adu_per_photon:g}",
        f"clen = {det.distance_mm * 1e-3:g}",
        f"res = {res:.6g}",
        "",
        "data = /entry_1/data_1/data",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        "",
        "; a static 2-D mask in a multi-event file: CrystFEL skips the placeholder for it",
        "mask = /entry_1/data_1/mask",
        "mask_good = 0x0",
        "mask_bad = 0xffff",
        "",
        "p0/min_fs = 0",
        f"p0/max_fs = {width - 1}",
        "p0/min_ss = 0",
        f"p0/max_ss = {height - 1}",
        f"p0/corner_x = {-(fs0 + 0.5):g}",
        f"p0/corner_y = {-(ss0 + 0.5):g}",
        "p0/fs = +1.0x",
        "p0/ss = +1.0y",
        "",
    ]
    return "\n".join(lines)


def write_experiment(
    outdir: str,
    experiment: Experiment,
    *,
    seed: int | None = None,
    n_frames: int | None = None,
    compression: str = "lz4",
    progress_factory: Optional[Callable[[int, str], object]] = None,
    layout: str = "assembled",
) -> list[RunFiles]:
    """Write every run of ``experiment`` and ``experiment.yaml`` (the configuration used).

    ``seed`` replaces the experiment's master seed; ``n_frames`` its frames per run
    (for every run). ``progress_factory(total, desc)`` may return a tqdm-like bar.
    """
    import dataclasses

    if seed is not None:
        experiment = dataclasses.replace(experiment, seed=int(seed))
    if n_frames is not None:
        runs = tuple(dataclasses.replace(r, frames=None) for r in experiment.runs)
        experiment = dataclasses.replace(experiment, frames_per_run=int(n_frames), runs=runs)
    os.makedirs(outdir, exist_ok=True)
    dump_experiment(experiment, os.path.join(outdir, "experiment.yaml"))
    written = []
    for run in experiment.runs:
        frames = experiment.frames_of(run)
        bar = progress_factory(frames, run.name) if progress_factory else None
        try:
            written.append(write_run(outdir, run, experiment.run_seed(run), frames, compression=compression,
                                     progress=bar.update if bar is not None else None, layout=layout))
        finally:
            if bar is not None:
                bar.close()
    return written
