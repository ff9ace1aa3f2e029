"""The soak script (examples/soak/soak.py) end to end on a few hundred events, so it cannot rot.

The full soak (200,000 events over 200 files) is out of CI; its last result is in docs/guarantees.md.
Here the same code path runs small: CXI files each with its own mask, an uninterrupted run, a run
SIGKILLed at the middle of its journal, ``--resume``, byte comparison, RSS sampling, the JSON.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "soak" / "soak.py"

@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

@pytest.mark.slow
def test_soak_script_kills_resumes_and_matches_the_uninterrupted_run(soak, tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "soak.json"
    code = soak.main(["--events", "300", "--files", "3", "--batch-size", "8", "--sample-every", "0.05",
                      "--workdir", str(work), "--json", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert code == 0 and result["problems"] == [], printed
    assert "verdict: PASS" in printed and not work.exists()  # the work directory is removed
    assert (result["events"], result["files"], result["blocks"]) == (300, 3, 38)
    runs = result["runs"]
    # killed at the middle of the journal, then resumed from it (not rescored from scratch)
    assert 19 <= runs["killed"]["killed_at_block"] < 38 and runs["killed"]["exit_code"] == -9
    assert runs["resumed"]["journal_blocks_before"] == runs["killed"]["killed_at_block"]
    assert runs["reference"]["exit_code"] == 0 and runs["resumed"]["exit_code"] == 0
    assert all(o["identical"] for o in result["outputs"].values()), result["outputs"]
    for run in runs.values():  # RSS was sampled from the child while it ran
        assert run["rss"]["n_samples"] >= 1 and run["rss"]["max_mb"] >= run["rss"]["start_mb"] > 0
    labels = result["labels"]
    # each file's mask was used: the hot (masked) pixels would make every frame a hit otherwise
    assert labels["events_in_scores"] == 300 and labels["errors"] == 0
    assert labels["labels_agreeing_with_spots"] == 1.0 and 0 < labels["hits"] < 300

def test_soak_frames_are_all_hits_without_their_mask(soak, tmp_path):
    """The soak's agreement figure shows the masks were used: without them every frame is a hit."""
    from sfx_cnn_veto import Veto

    frames, bad, has_spots = soak.file_frames(0, 40, 96, seed=0)
    assert 0 < has_spots.sum() < 40 and bad.any()
    model = soak.write_model(tmp_path / "m.keras")
    masked = Veto.load(model, mask=~bad, backend="keras").decide(frames)
    unmasked = Veto.load(model, file_masks=False, backend="keras").decide(frames)
    assert [d.is_hit for d in masked] == list(has_spots)
    assert all(d.is_hit for d in unmasked)

def test_soak_verdict_names_a_difference_and_a_run_that_was_not_killed(soak, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    for d in (ref, out):
        d.mkdir()
        for name in soak.OUTPUTS:
            (d / name).write_bytes(b"a //1\n")
    (out / "scores.csv").write_bytes(b"a //2\n")
    outputs = soak.compare(ref, out)
    assert [n for n, o in outputs.items() if not o["identical"]] == ["scores.csv"]
    result = {"runs": {"reference": {"exit_code": 0}, "killed": {"killed_at_block": None, "exit_code": 0},
                       "resumed": {"exit_code": 0}},
              "outputs": outputs, "labels": {"events_in_scores": 10}, "events": 10}
    problems = soak.verdict(result)
    assert any("before the middle" in p for p in problems) and any("scores.csv differs" in p for p in problems)
    assert len(problems) == 2
