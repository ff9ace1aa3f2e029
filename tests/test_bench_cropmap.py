"""The crop-map timings (sfx_cnn_veto/bench/cropmap.py): one row per layout, gaps only where there are panels."""

from __future__ import annotations

from sfx_cnn_veto.bench.cropmap import crop_map_timings, default_layouts, timings_markdown


def test_crop_map_timings_cover_each_layout_and_report_its_gaps():
    rows = crop_map_timings(repeats=3)
    assert [r["layout"] for r in rows] == list(default_layouts())
    single, *panels = rows
    assert single["panels"] == 1 and single["gap_fraction"] == 0.0 and single["slab"] == [700, 700]
    assert [r["panels"] for r in panels] == [8, 64, 8]
    assert all(0.0 < r["gap_fraction"] < 0.2 for r in panels)  # the crop crosses the gaps around the beam
    assert all(r["build_ms"] > 0 and r["crop_us"] > 0 for r in rows)
    table = timings_markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "4096x1024" in table
