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


#: The OM tests' demo data (files x frames per file) and the tiny model's training frames.
OM_DEMO_FILES, OM_DEMO_FRAMES, OM_DEMO_TRAIN_FRAMES = 4, 10, 200


@pytest.fixture(scope="session")
def om_demo(tmp_path_factory):
    """Demo HDF5 files (4 x 10 frames, 700x700; the simulator's when installed) + a tiny model trained on others.

    Shared by the OM tests (test_om_adapter.py, test_om_geometry.py): the model is trained once a session.
    """
    from sfx_cnn_veto_om import example_data

    root = tmp_path_factory.mktemp("om_demo")
    truth = example_data.write_eiger_files(str(root / "data"), files=OM_DEMO_FILES, frames=OM_DEMO_FRAMES, seed=7)
    info = example_data.train_tiny_model(str(root / "model.keras"), frames=OM_DEMO_TRAIN_FRAMES, seed=1)
    print(f"\n[om demo] {truth.source} frames: {truth.num_frames} ({truth.num_hits} hits); tiny model {info}")
    assert info["accuracy"] >= 0.95, f"the demo model did not learn the demo frames: {info}"
    return {"root": root, "truth": truth, "list": root / "data" / "files.lst", "model": root / "model.keras"}
