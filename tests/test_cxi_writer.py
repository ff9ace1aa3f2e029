"""The one CXI writer (sfx_cnn_veto.io.cxi) that tests, bench and the simulator share."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.io.cxi import DATA_PATH, write_cxi


def test_frames_written_one_by_one_equal_the_array_one_chunk_a_frame(tmp_path):
    frames = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)
    whole = write_cxi(tmp_path / "a.cxi", frames)
    streamed = write_cxi(tmp_path / "b.cxi", iter(frames), n_frames=3, shape=(5, 7), compression="gzip")
    with h5py.File(whole, "r") as a, h5py.File(streamed, "r") as b:
        np.testing.assert_array_equal(a[DATA_PATH][()], b[DATA_PATH][()])
        assert b[DATA_PATH].chunks == (1, 5, 7)
        assert b[DATA_PATH].compression == "gzip"


@pytest.mark.parametrize("count", [2, 4])
def test_a_stream_of_another_length_than_n_frames_is_an_error(tmp_path, count):
    frames = np.zeros((count, 4, 4), np.float32)
    with pytest.raises(ConfigError, match="n_frames=3"):
        write_cxi(tmp_path / "c.cxi", iter(frames), n_frames=3, shape=(4, 4))


def test_an_unknown_compression_name_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="compression must be one of"):
        write_cxi(tmp_path / "d.cxi", np.zeros((1, 4, 4), np.float32), compression="zstd")
