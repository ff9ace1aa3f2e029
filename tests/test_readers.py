"""Frame readers: CXI multi-event, Cheetah single-frame, compressed HDF5, fabio formats."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from sfx_cnn_veto import FrameReadError
from sfx_cnn_veto.io.events import EventRef
from sfx_cnn_veto.io.store import FrameStore, choose_reader, iter_events
from sfx_cnn_veto.testing import write_cxi


@pytest.fixture
def frames():
    return np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)


def test_cxi_events_and_hyperslab(tmp_path, frames):
    path = write_cxi(tmp_path / "r.cxi", frames)
    with FrameStore() as store:
        refs = store.expand(EventRef(path, None, path))
        assert [r.event for r in refs] == ["//0", "//1", "//2"]
        region = (slice(10, 20), slice(5, 25))
        np.testing.assert_array_equal(store.read(refs[2], region), frames[2][region])
        assert store.frame_shape(refs[0]) == (40, 50)


def test_cheetah_single_frame(tmp_path, frames):
    path = tmp_path / "cheetah.h5"
    with h5py.File(path, "w") as f:
        f["/data/data"] = frames[1]
    with FrameStore() as store:
        ref = EventRef(str(path), None, str(path))
        assert store.expand(ref) == [ref]
        np.testing.assert_array_equal(store.read(ref), frames[1])


@pytest.mark.parametrize("filt", ["bitshuffle", "blosc"])
def test_compressed_hdf5(tmp_path, frames, filt):
    import hdf5plugin

    compression = hdf5plugin.Bitshuffle(cname="lz4") if filt == "bitshuffle" else hdf5plugin.Blosc()
    path = write_cxi(tmp_path / "c.cxi", frames, compression={"compression": compression})
    with FrameStore() as store:
        np.testing.assert_array_equal(store.read(EventRef(path, "//1", path)), frames[1])


def test_configurable_dataset(tmp_path, frames):
    path = write_cxi(tmp_path / "e.h5", frames, dataset="/my/frames")
    with FrameStore({"dataset": "/my/frames"}) as store:
        np.testing.assert_array_equal(store.read(EventRef(path, "//0", path)), frames[0])
    with FrameStore() as store, pytest.raises(FrameReadError, match="no data set"):
        store.read(EventRef(path, "//0", path))


@pytest.mark.parametrize("ext", ["cbf", "edf", "tif"])
def test_fabio_single_frames(tmp_path, ext):
    import fabio

    data = (np.arange(60 * 70) % 1000).reshape(60, 70).astype(np.int32)
    image = {"cbf": fabio.cbfimage.CbfImage, "edf": fabio.edfimage.EdfImage,
             "tif": fabio.tifimage.TifImage}[ext](data=data)
    path = str(tmp_path / f"f.{ext}")
    image.write(path)
    assert choose_reader(path) == "fabio"
    with FrameStore() as store:
        ref = EventRef(path, None, path)
        assert store.expand(ref) == [ref]
        np.testing.assert_array_equal(store.read(ref), data)
        np.testing.assert_array_equal(store.read(ref, (slice(0, 5), slice(3, 9))), data[:5, 3:9])


def test_errors_name_the_file_and_event(tmp_path, frames):
    path = write_cxi(tmp_path / "r.cxi", frames)
    with FrameStore() as store:
        with pytest.raises(FrameReadError, match=r"r\.cxi //9: event out of range"):
            store.read(EventRef(path, "//9", path))
        with pytest.raises(FrameReadError, match="file not found"):
            store.read(EventRef("nope.cxi", "//0", str(tmp_path / "nope.cxi")))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"junk" * 10)
    with FrameStore() as store, pytest.raises(FrameReadError, match="not a readable HDF5"):
        store.read(EventRef(str(bad), "//0", str(bad)))


def test_growing_dataset_is_refreshed(tmp_path, frames):
    path = tmp_path / "grow.cxi"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry_1/data_1/data", data=frames[:1], maxshape=(None, 40, 50), chunks=(1, 40, 50))
    with FrameStore() as store:
        assert store.read(EventRef(str(path), "//0", str(path))).shape == (40, 50)
        # Another process (the DAQ) appends two frames while the file is open here.
        code = (
            "import h5py, numpy as np, sys\n"
            "with h5py.File(sys.argv[1], 'a') as f:\n"
            "    ds = f['/entry_1/data_1/data']\n"
            "    ds.resize(3, axis=0)\n"
            "    ds[1:] = np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)[1:]\n"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True)
        np.testing.assert_array_equal(store.read(EventRef(str(path), "//2", str(path))), frames[2])


def test_iter_events_accounts_for_unlistable_files(tmp_path, frames, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cxi(tmp_path / "r.cxi", frames)
    (tmp_path / "in.lst").write_text("r.cxi //1\nmissing.cxi\nr.cxi\n")
    with FrameStore() as store:
        out = [(str(ref), err is not None) for ref, err in iter_events(["in.lst"], store)]
    assert out == [("r.cxi //1", False), ("missing.cxi", True),
                   ("r.cxi //0", False), ("r.cxi //1", False), ("r.cxi //2", False)]
