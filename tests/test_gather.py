"""The compiled crop-map gather (core/gather.py, used by CropMap.gather) gives np.take's crop on real geometries."""

from __future__ import annotations

import numpy as np
import pytest

from _real import REAL
from sfx_cnn_veto.core import gather
from sfx_cnn_veto.core.crop import CropMapper
from sfx_cnn_veto.io.geometry import read_geometry


@pytest.fixture(scope="module", params=["jungfrau4M.geom", "epix10k2M.geom"])
def real_map(request):
    geometry = read_geometry(str(REAL / "geometry" / request.param))
    return CropMapper((350, 350), geometry=geometry)(geometry.frame_shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int32])
def test_gather_equals_np_take_from_a_contiguous_block_and_from_a_full_frame(real_map, dtype):
    rng = np.random.default_rng(1)
    frame = (rng.random(real_map.frame_shape) * 6e4).astype(dtype)
    block = np.ascontiguousarray(real_map.block(frame))
    expected = np.take(block.reshape(-1), real_map.index.astype(np.int64))
    got = real_map.gather(block)
    assert got.dtype == frame.dtype and got.shape == real_map.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(real_map(frame), expected)  # the block a strided view of the frame


def test_crop_map_index_is_int32_and_bool_masks_still_gather(real_map):
    assert real_map.index.dtype == np.int32
    good = np.random.default_rng(2).random(real_map.frame_shape) > 0.3
    expected = np.take(np.ascontiguousarray(real_map.block(good)).reshape(-1), real_map.index)
    np.testing.assert_array_equal(real_map(good), expected)
    assert real_map.crop_good(good).dtype == bool


def test_gather_keeps_np_take_for_byte_swapped_data():
    block = np.arange(100, dtype=">f4").reshape(10, 10)
    index = gather.flat_index(np.array([[5, 99], [0, 42]]), block.size)
    np.testing.assert_array_equal(gather.take(block, index), [[5, 99], [0, 42]])
