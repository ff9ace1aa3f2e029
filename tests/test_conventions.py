"""Detector file conventions: CBF ``Beam_xy``, NeXus/EIGER beam centre, ``pixel_mask`` and data blocks."""

from __future__ import annotations

import gzip
from pathlib import Path

import fabio.cbfimage
import h5py
import numpy as np
import pytest

from sfx_cnn_veto.io.conventions import NEXUS_PIXEL_MASK, own_beam_center
from sfx_cnn_veto.io.hdf5 import HDF5Source
from sfx_cnn_veto.io.masks import cxi_mask, own_mask
from sfx_cnn_veto.io.geometry import read_geometry

from _real import REAL

#: PILATUS 6M: 5 x 12 modules of 487 (fast) x 195 (slow) pixels, gaps of 7 and 17 pixels.
MODULE, GAP = (195, 487), (17, 7)


def pilatus_frame(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """An int32 PILATUS frame: photon counts, -1 in the gaps between modules, -2 on a few bad pixels."""
    rng = np.random.default_rng(seed)
    frame = rng.poisson(0.3, shape).astype(np.int32)
    for axis in (0, 1):
        pitch = MODULE[axis] + GAP[axis]
        for start in range(MODULE[axis], shape[axis], pitch):
            index = [slice(None), slice(None)]
            index[axis] = slice(start, start + GAP[axis])
            frame[tuple(index)] = -1
    frame[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)] = -2
    return frame


def write_cbf(path: Path, frame: np.ndarray, header_lines: list[str]) -> Path:
    contents = "\n".join(["# Detector: PILATUS 6M, S/N 60-0100", "# Pixel_size 172e-6 m x 172e-6 m"]
                         + header_lines) + "\n"
    image = fabio.cbfimage.CbfImage(data=frame, header={"_array_data.header_convention": "PILATUS_1.2",
                                                        "_array_data.header_contents": contents})
    image.write(str(path))
    return path


def test_cbf_beam_xy_is_x_fast_y_slow_from_the_first_pixels_corner(tmp_path):
    frame = pilatus_frame((407, 981))  # 2 x 2 modules
    path = write_cbf(tmp_path / "f.cbf", frame, ["# Beam_xy (531.50, 212.25) pixels", "# Wavelength 1.0 A"])
    assert own_beam_center(str(path)) == (212.25, 531.5)  # (row, col) = (y, x), no half-pixel shift
    back = fabio.open(str(path)).data
    np.testing.assert_array_equal(back, frame)  # fast scan = columns
    assert (back[195:212] < 0).all() and (back[:, 487:494] < 0).all() and (back == -1).any() and (back == -2).any()


def test_gzipped_cbf_and_cbf_without_beam_xy(tmp_path):
    path = write_cbf(tmp_path / "f.cbf", pilatus_frame((20, 30)), ["# Beam_xy (3, 4) pixels"])
    gz = tmp_path / "g.cbf.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert own_beam_center(str(gz)) == (4.0, 3.0)
    bare = write_cbf(tmp_path / "bare.cbf", pilatus_frame((20, 30)), ["# Wavelength 1.0 A"])
    assert own_beam_center(str(bare)) is None


def test_cbf_beam_xy_in_another_unit_is_not_used_and_says_so(tmp_path):
    path = write_cbf(tmp_path / "mm.cbf", pilatus_frame((20, 30)), ["# Beam_xy (3.0, 4.0) mm"])
    with pytest.warns(UserWarning, match="Beam_xy in 'mm', expected pixels"):
        assert own_beam_center(str(path)) is None


def test_other_formats_have_no_own_beam_center(tmp_path):
    assert own_beam_center(str(tmp_path / "frame.edf")) is None


def test_cbf_beam_xy_agrees_with_the_real_pilatus_geometry(tmp_path):
    """A 2527 x 2463 PILATUS 6M CBF whose Beam_xy states the beam of ../shared/real/geometry/pilatus.geom.

    CrystFEL's ``corner_x``/``corner_y`` place the outer corner of the panel's
    first pixel relative to the beam (in pixels), so the beam lies at
    ``(min_ss - corner_y, min_fs - corner_x)`` in this package's convention.
    """
    geom = read_geometry(str(REAL / "geometry" / "pilatus.geom"))
    shape, beam = geom.frame_shape, geom.beam_center()
    assert shape == (2527, 2463) and beam == (1240.0, 1257.0)
    path = write_cbf(tmp_path / "p6m.cbf", pilatus_frame(shape), ["# Beam_xy (1257.00, 1240.00) pixels"])
    assert fabio.open(str(path)).data.shape == shape
    assert own_beam_center(str(path)) == pytest.approx(beam)


def write_eiger(tmp_path: Path, *, blocks=(3, 2), shape=(24, 32), missing_block=False, units="pixel"):
    """An EIGER-like master (beam centre, pixel_mask, external links to data files) and its frames."""
    rng = np.random.default_rng(5)
    frames = rng.poisson(2.0, (sum(blocks),) + shape).astype(np.uint32)
    mask = np.zeros(shape, np.uint32)
    mask[:, 16:18] = 1  # gap
    mask[3, 4] = 2  # dead
    mask[7, 9] = 16  # noisy
    master = tmp_path / "run_master.h5"
    start = 0
    with h5py.File(master, "w") as handle:
        det = handle.create_group("/entry/instrument/detector")
        if units == "pixel":
            det["beam_center_x"], det["beam_center_y"] = 15.5, 11.25
        else:  # mm, with the pixel size in metres
            det["beam_center_x"], det["beam_center_y"] = 15.5 * 0.075, 11.25 * 0.075
            det["x_pixel_size"] = det["y_pixel_size"] = 75e-6
        for name in ("beam_center_x", "beam_center_y"):
            det[name].attrs["units"] = units
        det["pixel_mask"] = mask
        data = handle.create_group("/entry/data")
        for i, n in enumerate(blocks, start=1):
            name = f"data_{i:06d}"
            with h5py.File(tmp_path / f"run_{name}.h5", "w") as block:
                block["entry/data/data"] = frames[start:start + n]
            start += n
            data[name] = h5py.ExternalLink(f"run_{name}.h5", "/entry/data/data")
        if missing_block:
            data[f"data_{len(blocks) + 1:06d}"] = h5py.ExternalLink("run_not_written_yet.h5", "/entry/data/data")
    return master, frames, mask


def test_nexus_beam_center_and_pixel_mask(tmp_path):
    master, frames, mask = write_eiger(tmp_path)
    assert own_beam_center(str(master)) == (11.25, 15.5)
    good = own_mask(str(master), frames.shape[1:])
    np.testing.assert_array_equal(good, mask == 0)
    assert not good[3, 4] and not good[7, 9] and not good[:, 16].any() and good.sum() == mask.size - 24 * 2 - 2


def test_nexus_beam_center_in_a_length_unit_uses_the_pixel_size(tmp_path):
    master, _, _ = write_eiger(tmp_path, units="mm")
    assert own_beam_center(str(master)) == pytest.approx((11.25, 15.5))


def test_eiger_master_reads_every_data_block_as_one_stack(tmp_path):
    master, frames, _ = write_eiger(tmp_path, missing_block=True)
    source = HDF5Source(str(master))
    try:
        assert source.dataset_path == "/entry/data/data_000001"
        assert source.events() == [f"//{i}" for i in range(5)]  # both blocks; the unwritten one ends the stack
        for i in range(5):
            np.testing.assert_array_equal(source.read(f"//{i}"), frames[i])
        np.testing.assert_array_equal(source.read("//4", (slice(2, 9), slice(5, 20))), frames[4, 2:9, 5:20])
    finally:
        source.close()


def test_per_frame_mask_reads_only_its_first_frame(tmp_path):
    """A (N, H, W) mask whose frames 1.. live in a raw file that is gone: frame 0 alone must be read."""
    shape, n = (16, 20), 4
    first = np.zeros(shape, np.uint8)
    first[2, 3] = 1
    raw0, raw1 = tmp_path / "mask0.raw", tmp_path / "mask1.raw"
    raw0.write_bytes(first.tobytes())
    raw1.write_bytes(np.ones((n - 1,) + shape, np.uint8).tobytes())
    path = tmp_path / "frames.cxi"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("/entry_1/data_1/mask", shape=(n,) + shape, dtype=np.uint8,
                              external=[(str(raw0), 0, first.nbytes), (str(raw1), 0, (n - 1) * first.nbytes)])
    raw1.unlink()  # reading the whole stack now fails
    with h5py.File(path, "r") as handle, pytest.raises(OSError):
        handle["/entry_1/data_1/mask"][()]
    good = cxi_mask(str(path), shape)
    assert good is not None and not good[2, 3] and good.sum() == good.size - 1


def test_nexus_per_frame_pixel_mask_gives_its_first_frame(tmp_path):
    shape = (12, 14)
    stack = np.zeros((3,) + shape, np.uint32)
    stack[0, 1, 1] = 4
    stack[1] = 8  # frame 1 would mask everything
    path = tmp_path / "m.nxs"
    with h5py.File(path, "w") as handle:
        handle[NEXUS_PIXEL_MASK] = stack
    good = own_mask(str(path), shape)
    assert not good[1, 1] and good.sum() == good.size - 1
