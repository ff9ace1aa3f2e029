"""Evaluation: metrics against hand-computed confusion matrices, metrics.json keys, figures, fail-open."""

from __future__ import annotations

import json

import pytest

from sfx_cnn_veto.cli import main
from sfx_cnn_veto.training import metrics as M
from sfx_cnn_veto.training.labels import LabelRow, write_labels

from train_helpers import max_pixel_model, write_run

KEYS = {"events", "hit_fraction", "sensitivity", "specificity", "accuracy", "tp", "fp", "tn", "fn"}


def test_table_row_hand_computed():
    labels = [1, 1, 1, 0, 0, 0, 0]
    predicted = [1, 1, 0, 1, 0, 0, 0]
    cm = M.confusion(labels, predicted)
    assert cm == {"tp": 2, "fp": 1, "tn": 3, "fn": 1}
    row = M.table_row(cm)
    assert set(row) == KEYS
    assert row["events"] == 7
    assert row["hit_fraction"] == pytest.approx(3 / 7)
    assert row["sensitivity"] == pytest.approx(2 / 3)
    assert row["specificity"] == pytest.approx(3 / 4)
    assert row["accuracy"] == pytest.approx(5 / 7)
    assert M.table_row(M.confusion([0, 0], [0, 1]))["sensitivity"] is None


def test_roc_and_balanced_threshold():
    fpr, tpr, auc = M.roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert auc == pytest.approx(0.75)
    assert M.best_balanced_threshold([1, 2, 3, 10, 11, 12], [0, 0, 0, 1, 1, 1]) == 10


def test_evaluate_report_against_hand_computed(tmp_path):
    rows, frames = [], {}
    import h5py

    for i, run in enumerate(("ea", "eb")):
        lst, truth = write_run(str(tmp_path), run, 30, seed=20 + i, hot=0, amplitude=(60.0, 400.0))
        with h5py.File(tmp_path / f"{run}.cxi") as f:
            frames[run] = f["/entry_1/data_1/data"][()]
        for j, hit in enumerate(truth):
            label = int(hit) if j % 7 else None  # every 7th ambiguous
            rows.append(LabelRow(str(tmp_path / f"{run}.cxi"), f"//{j}", run, None, label))
    rows.append(LabelRow(str(tmp_path / "eb.cxi"), "//500", "eb", 12, 1))     # unreadable hit
    rows.append(LabelRow(str(tmp_path / "gone.cxi"), "//0", "eb", 0, 0))      # unreadable miss
    labels = str(tmp_path / "labels.csv")
    write_labels(labels, rows)
    cut = 480.0
    max_pixel_model(str(tmp_path / "max.keras"), (64, 64), cut, train_runs=("ea",))
    report = tmp_path / "rep"
    assert main(["evaluate", "-m", str(tmp_path / "max.keras"), "--labels", labels, "--report", str(report),
                 "--compare-model", str(tmp_path / "max.keras")]) == 2  # two events could not be scored
    data = json.loads((report / "metrics.json").read_text())
    assert set(data) == {"runs", "overall", "peak_bins"}
    assert set(data["runs"]) == {"ea", "eb"}
    # hand-computed: the max of the centred 64x64 crop of the 96x96 frame against the cut
    expected = {}
    for run in ("ea", "eb"):
        sel = [r for r in rows if r.run == run and r.label is not None]
        y, p = [], []
        for r in sel:
            idx = int(r.event[2:])
            if idx < 30 and "gone" not in r.file:
                p.append(frames[run][idx, 16:80, 16:80].max() >= cut)
            else:
                p.append(True)  # cannot be scored: counts as a predicted hit
            y.append(r.label)
        tp = sum(a == 1 and b for a, b in zip(y, p))
        fp = sum(a == 0 and b for a, b in zip(y, p))
        tn = sum(a == 0 and not b for a, b in zip(y, p))
        fn = sum(a == 1 and not b for a, b in zip(y, p))
        expected[run] = (tp, fp, tn, fn)
        rec = data["runs"][run]
        assert set(rec) == KEYS
        assert (rec["tp"], rec["fp"], rec["tn"], rec["fn"]) == (tp, fp, tn, fn)
        assert rec["events"] == len(sel)
        assert rec["accuracy"] == pytest.approx((tp + tn) / len(sel))
        if tp + fn:
            assert rec["sensitivity"] == pytest.approx(tp / (tp + fn))
        if tn + fp:
            assert rec["specificity"] == pytest.approx(tn / (tn + fp))
    assert sum(e[3] for e in expected.values()) > 0  # the cut misses some weak hits: a real test
    total = [sum(e[k] for e in expected.values()) for k in range(4)]
    o = data["overall"]
    assert set(o) == KEYS and [o["tp"], o["fp"], o["tn"], o["fn"]] == total
    for name in ("confusion_ea.png", "confusion_eb.png", "confusion_overall.png", "scores_ea.png", "scores_eb.png",
                 "roc.png", "report.md", "scores.csv", "intensity_metrics.json", "compare.md"):
        assert (report / name).stat().st_size > 0, name
    md = (report / "report.md").read_text()
    assert "gone.cxi" in md and "//500" in md and "counted as predicted hits" in md
    naive = json.loads((report / "intensity_metrics.json").read_text())
    assert set(naive) == {"runs", "overall"} and set(naive["runs"]["ea"]) == KEYS
    assert "intensity" in (report / "compare.md").read_text()


def test_evaluate_sensitivity_per_peak_count_bin_hand_computed(tmp_path, capsys):
    import h5py

    lst, truth = write_run(str(tmp_path), "pk", 80, seed=5, hot=0, amplitude=(20.0, 400.0))
    with h5py.File(tmp_path / "pk.cxi") as f:
        frames = f["/entry_1/data_1/data"][()]
    counts = [12, 18, 30, 60, 13, 25]  # given peak counts of the hits, cycling over the four bins
    rows, k = [], 0
    for j, hit in enumerate(truth):
        n = None
        if hit:
            n, k = counts[k % len(counts)], k + 1
        rows.append(LabelRow(str(tmp_path / "pk.cxi"), f"//{j}", "pk", n if hit else 0, int(hit)))
    write_labels(str(tmp_path / "labels.csv"), rows)
    cut = 520.0
    max_pixel_model(str(tmp_path / "max.keras"), (64, 64), cut, train_runs=("ea",))
    assert main(["evaluate", "-m", str(tmp_path / "max.keras"), "--labels", str(tmp_path / "labels.csv"),
                 "--report", str(tmp_path / "rep")]) == 0
    bins = json.loads((tmp_path / "rep" / "metrics.json").read_text())["peak_bins"]
    assert bins["bins"] == ["11-15", "16-20", "21-50", ">50"]
    edges = {"11-15": (11, 15), "16-20": (16, 20), "21-50": (21, 50), ">50": (51, 10 ** 9)}
    lost_somewhere = 0
    for name, (low, high) in edges.items():
        sel = [int(r.event[2:]) for r in rows if r.label == 1 and low <= r.num_peaks <= high]
        kept = sum(frames[i, 16:80, 16:80].max() >= cut for i in sel)
        rec = bins["overall"][name]
        assert (rec["hits"], rec["kept"], rec["lost"]) == (len(sel), kept, len(sel) - kept), name
        assert rec["sensitivity"] == pytest.approx(kept / len(sel))
        assert rec["sensitivity_interval"] == pytest.approx(list(M.wilson_interval(kept, len(sel))))
        assert bins["runs"]["pk"][name] == rec
        lost_somewhere += len(sel) - kept
    assert lost_somewhere > 0  # the cut loses weak hits: the table has something to show
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Hits kept per peak count" in md and "| 21-50 |" in md
    assert "| 11-15 |" in capsys.readouterr().out  # the printed table
    assert (tmp_path / "rep" / "peak_bins.png").stat().st_size > 0
