"""The OM veto step decides a synthetic frame at start-up, so the first real event pays no set-up.

Without it, the OM example's first frame on each rank took 0.5-1.3 s (crop map, kernels) and
counted in ``cnn_ms_per_frame`` (50.7 ms against 6.3 ms with it, same run otherwise).
"""

from __future__ import annotations

import pytest

from test_om_adapter import needs_om


@needs_om
def test_warm_up_builds_the_crop_map_and_runs_the_compiled_normalization(monkeypatch):
    from sfx_cnn_veto.core import fastnorm
    from sfx_cnn_veto.core.model import default_model_path
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto.simulate.panels import eight_panel_geometry
    from sfx_cnn_veto_om.processing import warm_up

    kernels = fastnorm._kernels()
    if kernels is None:
        pytest.skip("numba is not installed")
    calls = []
    scale_into = kernels["scale_into"]
    monkeypatch.setitem(kernels, "scale_into", lambda *a: calls.append(1) or scale_into(*a))
    geometry = eight_panel_geometry((700, 700))
    veto = Veto.load(default_model_path(), batch_size=1, threads=1, geometry=geometry, file_masks=False)
    assert not veto.preprocess.mapper._maps
    warm_up(veto, geometry.frame_shape)
    assert tuple(geometry.frame_shape) in {key[0] for key in veto.preprocess.mapper._maps}
    assert calls, "the warm-up frame took the normalization's fallback: its compiled pass is still cold"
