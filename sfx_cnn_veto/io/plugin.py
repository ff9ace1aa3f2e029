"""Built-in readers, registered exactly as a third-party reader plugin would be."""

from __future__ import annotations

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.types import ReaderSpec


def _open_hdf5(path, options):
    from sfx_cnn_veto.io.hdf5 import HDF5Source

    return HDF5Source(path, options)


def _open_fabio(path, options):
    from sfx_cnn_veto.io.fabio_reader import FabioSource

    return FabioSource(path, options)


@hookimpl(trylast=True)
def sfxveto_readers():
    from sfx_cnn_veto.io.fabio_reader import PATTERNS

    return [
        ReaderSpec(
            name="hdf5",
            patterns=("*.h5", "*.hdf5", "*.cxi", "*.nxs", "*.hdf"),
            open=_open_hdf5,
            description="CXI multi-event and Cheetah single-frame HDF5 (hdf5plugin filters)",
        ),
        ReaderSpec(
            name="fabio",
            patterns=PATTERNS,
            open=_open_fabio,
            priority=-1,
            description="single-frame formats fabio reads: CBF, EDF, TIFF, MCCD ...",
        ),
    ]
