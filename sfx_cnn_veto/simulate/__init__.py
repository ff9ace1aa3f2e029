"""A simulated SFX experiment: kinematic diffraction, a CSPAD-like detector, runs that drift.

Library use (the demo, the adapters' tests and the benchmarks)::

    from sfx_cnn_veto.simulate import default_experiment, simulate_run, write_run

    exp = default_experiment()                      # the paper's 10 runs (streptavidin-like)
    run = exp.run("run90")
    for frame, truth in simulate_run(run, exp.run_seed(run), 10):
        ...                                         # float32 (700, 700) ADU, dict
    paths = write_run("out/", run, exp.run_seed(run), n_frames=100)

``default_experiment("lysozyme")`` is a second experiment (another cell,
detector distance and wavelength) for cross-experiment tests.
"""

from sfx_cnn_veto.simulate.generate import CROP_SHAPE, TRUTH_FIELDS, RunSimulator, simulate_frame, simulate_run
from sfx_cnn_veto.simulate.runs import (
    BeamConfig,
    CrystalConfig,
    DetectorConfig,
    Experiment,
    RunConfig,
    default_experiment,
    dump_experiment,
    experiment_from_dict,
    load_experiment,
    run_seed,
    shipped_experiments,
)
from sfx_cnn_veto.simulate.writer import RunFiles, write_experiment, write_run

__all__ = [
    "BeamConfig", "CROP_SHAPE", "CrystalConfig", "DetectorConfig", "Experiment", "RunConfig", "RunFiles",
    "RunSimulator", "TRUTH_FIELDS", "default_experiment", "dump_experiment", "experiment_from_dict",
    "load_experiment", "run_seed", "shipped_experiments", "simulate_frame", "simulate_run",
    "write_experiment", "write_run",
]
