"""The live audit (sfx_cnn_veto.core.audit): selection, estimator, alarm; filter-lst and the Python API.

OM's audit is tested under mpirun in test_om_adapter.py; filter-lst's resume and MPI agreement
in test_crystfel_filter_lst.py (their outputs include audit.json).
"""

from __future__ import annotations

import json
import math
import random

import pytest

from _audit_helpers import blind_model, cli, read_csv, simulate
from sfx_cnn_veto.core import audit as A

AUDIT_KEYS = {"audit_fraction", "vetoed", "audited_vetoed", "audited_vetoed_pf8_hits", "kept", "audited_kept",
              "audited_kept_pf8_hits", "sensitivity_estimate", "sensitivity_interval", "target_sensitivity", "alarm"}


# ---------------------------------------------------------------------------
# The core: pure functions.

def test_wilson_interval_has_its_closed_forms():
    for n in (1, 7, 50, 1000):
        z = A.Z95
        assert A.wilson(0, n) == (0.0, pytest.approx(z * z / (n + z * z)))  # no successes
        for k in range(0, n + 1, max(1, n // 7)):
            low, high = A.wilson(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0
            low2, high2 = A.wilson(n - k, n)  # symmetric under success <-> failure
            assert low == pytest.approx(1 - high2) and high == pytest.approx(1 - low2)
    assert A.wilson(0, 0) == (0.0, 1.0)
    assert A.wilson(3, 10, A.Z975)[1] > A.wilson(3, 10)[1]  # wider at 97.5%


def test_selection_is_a_hash_of_the_identity_nested_across_fractions():
    ids = [f"run_{r}.cxi //{i}" for r in range(4) for i in range(2500)]
    at2 = {i for i in ids if A.is_audited(i, 0.02)}
    at5 = {i for i in ids if A.is_audited(i, 0.05)}
    assert at2 == {i for i in reversed(ids) if A.is_audited(i, 0.02)}  # order does not matter
    assert at2 < at5  # the 2% audit lies inside the 5% one
    n = len(ids)
    for got, f in ((len(at2), 0.02), (len(at5), 0.05)):
        assert abs(got - f * n) < 4 * math.sqrt(n * f * (1 - f))
    assert not any(A.is_audited(i, 0.0) for i in ids) and all(A.is_audited(i, 1.0) for i in ids)
    # independent of filter-lst's kept-misses draw (another hash)
    from sfx_cnn_veto_crystfel.filter_lst import keep_fraction_draw

    assert at2 != {i for i in ids if keep_fraction_draw(i, 0) < 0.02}


def _counts(V, av, hv, K, ak, hk, target=0.98) -> A.AuditCounts:
    return A.AuditCounts(audit_fraction=0.1, target_sensitivity=target, vetoed=V, audited_vetoed=av,
                         audited_vetoed_pf8_hits=hv, kept=K, audited_kept=ak, audited_kept_pf8_hits=hk)


def test_estimate_is_kept_hits_over_all_hits_with_a_covering_interval():
    c = _counts(900, 90, 3, 100, 10, 8)
    e = c.estimate()
    assert AUDIT_KEYS <= set(e)
    missed, kept_hits = 900 * 3 / 90, 100 * 8 / 10
    assert e["estimated_missed_hits"] == pytest.approx(missed)
    assert e["sensitivity_estimate"] == pytest.approx(kept_hits / (kept_hits + missed))
    low, high = e["sensitivity_interval"]
    assert low < e["sensitivity_estimate"] < high
    assert e["miss_rate_interval"] == pytest.approx([1 - high, 1 - low])
    assert e["alarm"] is (high < 0.98)
    # the interval's ends come from the fractions' 97.5% Wilson bounds
    lv, uv = A.wilson(3, 90, A.Z975)
    lk, uk = A.wilson(8, 10, A.Z975)
    assert low == pytest.approx(100 * lk / (100 * lk + 900 * uv))
    assert high == pytest.approx(100 * uk / (100 * uk + 900 * lv))
    json.dumps(e, allow_nan=False)  # plain JSON


def test_alarm_fires_only_when_the_upper_bound_is_below_the_target():
    many_missed = _counts(5000, 100, 30, 500, 10, 10)
    assert many_missed.estimate()["alarm"] and "ALARM" in many_missed.alarm_line()
    none_missed = _counts(5000, 100, 0, 500, 10, 10)
    assert not none_missed.estimate()["alarm"] and none_missed.alarm_line() is None
    too_few = _counts(5000, 3, 0, 500, 1, 1)  # no hit seen among 3 audited vetoed frames: no evidence, no alarm
    assert too_few.estimate()["sensitivity_interval"][1] >= 0.98 and not too_few.estimate()["alarm"]
    nothing_vetoed = _counts(0, 0, 0, 500, 10, 9)
    assert nothing_vetoed.estimate()["sensitivity_interval"] == [1.0, 1.0]
    census = _counts(40, 40, 4, 60, 60, 36)  # everything audited: the exact figure
    assert census.estimate()["sensitivity_interval"] == pytest.approx([0.9, 0.9])


def test_counts_merge_across_ranks_like_one_run():
    rng = random.Random(3)
    frames = [(rng.random() < 0.6, rng.random() < 0.3, rng.random() < 0.2) for _ in range(500)]
    whole = A.AuditCounts()
    ranks = [A.AuditCounts(), A.AuditCounts()]
    for i, (vetoed, audited, hit) in enumerate(frames):
        whole.add(vetoed=vetoed, audited=audited, pf8_hit=hit)
        ranks[i % 2].add(vetoed=vetoed, audited=audited, pf8_hit=hit)
    merged = A.AuditCounts()
    for r in ranks:
        merged.merge(r.counts())
    assert merged.estimate() == whole.estimate()


def test_audit_fraction_outside_0_1_is_refused():
    from sfx_cnn_veto.errors import ConfigError

    with pytest.raises(ConfigError, match="audit_fraction"):
        A.Audit(lambda frame: 0, fraction=1.5)


def test_om_stats_count_the_audit_and_print_the_alarm_line():
    from sfx_cnn_veto_om.stats import VetoStats, frame_record

    stats = VetoStats(mode="veto", audit_fraction=0.5, target_sensitivity=0.98)
    # 30 vetoed frames, 10 audited, 4 of those peakfinder8 hits (rescued); 10 kept, 5 audited, all hits
    for i in range(30):
        audited = i < 10
        stats.add(frame_record(mode="veto", score=0.1, cnn_hit=False, vetoed=True, peakfinder8=audited,
                               audited=audited), frame_is_hit=audited and i < 4)
    for i in range(10):
        stats.add(frame_record(mode="veto", score=0.9, cnn_hit=True, peakfinder8=True, audited=i < 5),
                  frame_is_hit=True)
    counts = stats.audit.counts()
    assert (counts["vetoed"], counts["audited_vetoed"], counts["audited_vetoed_pf8_hits"]) == (30, 10, 4)
    assert (counts["kept"], counts["audited_kept"], counts["audited_kept_pf8_hits"]) == (10, 5, 5)
    assert stats.rescued == 4 and stats.message()["rescued"] == 4
    message = stats.message()["audit"]
    assert message["alarm"] is True and message["sensitivity_interval"][1] < 0.98
    assert "audited_vetoed=10" in stats.summary() and "sensitivity_95=" in stats.summary()
    assert stats.alarm_line().startswith("cnn_veto ALARM:")
    # tag and off modes have no audit (every frame, or none, goes through peakfinder8)
    assert VetoStats(mode="tag", audit_fraction=0.5).audit is None
    assert "audit" in VetoStats(mode="tag").message() and VetoStats(mode="tag").alarm_line() is None


@pytest.mark.parametrize("key, value", [("audit_fraction", 1.5), ("audit_fraction", "2%"),
                                        ("target_sensitivity", -0.1), ("target_sensitivity", True)])
def test_om_config_refuses_audit_settings_outside_0_1(key, value):
    from sfx_cnn_veto.errors import ConfigError
    from sfx_cnn_veto_om.config import CnnVetoConfig

    with pytest.raises(ConfigError, match=f"cnn_veto.{key}"):
        CnnVetoConfig.from_group({"mode": "off", key: value})
    assert CnnVetoConfig.from_group({"mode": "off"}).audit_fraction == A.DEFAULT_FRACTION


# ---------------------------------------------------------------------------
# filter-lst and the Python API on a simulated run (real files, the real peakfinder8).

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A simulated run (60 frames, some crystals) and label's peakfinder8 counts of every frame."""
    d = tmp_path_factory.mktemp("audit_sim")
    lst = simulate(d, frames=60, seed=11)
    done = cli("label", str(lst), "-o", str(d / "labels.csv"))
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = {f"{r['file']} {r['event']}": int(r["num_peaks"]) for r in read_csv(d / "labels.csv")}
    return {"dir": d, "lst": lst, "peaks": peaks}


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


def _filter(sim, out, *extra):
    out.mkdir(exist_ok=True)
    done = cli("filter-lst", sim["lst"].name, "-o", str(out / "hits.lst"), "--scores", str(out / "scores.csv"),
               *extra, cwd=sim["dir"])
    return done


def _pf8_hit_lines(sim, lst_lines) -> set[str]:
    """The list lines whose frames label's peakfinder8 calls hits (>= 11 peaks)."""
    by_index = {int(k.rsplit("//", 1)[1]): v for k, v in sim["peaks"].items()}
    return {l for l in lst_lines if by_index[int(l.rsplit("//", 1)[1])] >= A.DEFAULT_MIN_PEAKS}


def test_filter_lst_writes_audit_json_for_the_hashed_events(sim, tmp_path):
    done = _filter(sim, tmp_path, "--audit-fraction", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert AUDIT_KEYS <= set(audit) and audit["audit_fraction"] == 0.5
    rows = read_csv(tmp_path / "scores.csv")
    lines = [f"{r['file']} {r['event']}" for r in rows]
    audited = [l for l in lines if A.is_audited(l, 0.5)]
    vetoed = {f"{r['file']} {r['event']}" for r in rows if r["decision"] == "miss"}
    assert audit["vetoed"] == len(vetoed) and audit["kept"] == len(rows) - len(vetoed)
    assert audit["audited_vetoed"] == len([l for l in audited if l in vetoed])
    assert audit["audited_kept"] == len([l for l in audited if l not in vetoed])
    hits = _pf8_hit_lines(sim, audited)
    assert audit["audited_kept_pf8_hits"] == len(hits - vetoed)
    assert audit["audited_vetoed_pf8_hits"] == len(hits & vetoed)
    assert "filter-lst: audit:" in done.stderr
    # --audit-json puts it elsewhere; --audit-fraction 0 writes none
    other = tmp_path / "elsewhere" / "a.json"
    other.parent.mkdir()
    assert _filter(sim, tmp_path / "two", "--audit-json", str(other)).returncode == 0
    assert other.exists() and not (tmp_path / "two" / "audit.json").exists()
    assert _filter(sim, tmp_path / "off", "--audit-fraction", "0").returncode == 0
    assert not (tmp_path / "off" / "audit.json").exists()


def test_filter_lst_alarm_fires_and_audited_hits_are_kept_when_the_model_vetoes_every_hit(sim, tmp_path):
    from sfx_cnn_veto.core.model import default_model_path

    model = blind_model(default_model_path(), tmp_path / "blind.keras")
    done = _filter(sim, tmp_path / "out", "-m", str(model), "--audit-fraction", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(tmp_path / "out" / "scores.csv")
    assert {r["decision"] for r in rows} == {"miss"}  # the broken model vetoes every frame
    lines = [f"{r['file']} {r['event']}" for r in rows]
    rescued = _pf8_hit_lines(sim, [l for l in lines if A.is_audited(l, 0.5)])
    assert rescued, "no audited frame is a peakfinder8 hit: the test run cannot show a rescue"
    # the audited frames peakfinder8 calls hits are in the hits list, and nothing else
    assert set(_lines(tmp_path / "out" / "hits.lst")) == rescued
    assert {l for l, r in zip(lines, rows) if r["in_hits_lst"] == "1"} == rescued
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["audited_vetoed_pf8_hits"] == len(rescued) and audit["kept"] == 0
    assert audit["alarm"] is True and audit["sensitivity_interval"][1] < audit["target_sensitivity"]
    assert "filter-lst: ALARM:" in done.stderr
    assert f"{len(rescued)} audited misses are peakfinder8 hits" in done.stderr


def test_python_api_audit_counts_and_rescues_with_the_real_peakfinder8(sim):
    from sfx_cnn_veto import manager
    from sfx_cnn_veto.core.pipeline import Decision
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    counter = manager.labelers()["peakfinder8"].create({})
    audit = A.Audit(counter, fraction=0.5)
    results = {}
    with FrameStore({}) as store:
        for ref, _err in iter_events([str(sim["lst"])], store):
            # every frame vetoed: what the audit finds is what a blind veto would lose
            results[ref.lst_line()] = audit(ref.lst_line(), lambda ref=ref: store.read(ref), Decision(0.0, False))
    audited = {l for l, r in results.items() if r.audited}
    assert audited == {l for l in results if A.is_audited(l, 0.5)}
    kept = {l for l, r in results.items() if r.keep}
    assert kept == {l for l in audited if results[l].peaks >= A.DEFAULT_MIN_PEAKS} and kept
    assert all(results[l].rescued for l in kept)
    c = audit.counts
    assert (c.vetoed, c.audited_vetoed, c.audited_vetoed_pf8_hits) == (len(results), len(audited), len(kept))
    assert c.estimate()["alarm"]


def _kill_when(cmd, journal, blocks: int, cwd) -> None:
    """Start ``cmd``; SIGKILL it once its journal holds ``blocks`` blocks."""
    import signal
    import subprocess
    import time

    from _audit_helpers import env
    from _crystfel_data import journal_blocks

    proc = subprocess.Popen(cmd, env=env(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while journal_blocks(journal) < blocks and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


@pytest.mark.slow
def test_filter_lst_audit_is_the_same_after_sigkill_and_resume_and_under_mpirun(sim, tmp_path):
    """The journal carries the audit's peak counts: resumed and MPI runs write the serial run's audit.json."""
    import shutil
    import sys

    args = ["--audit-fraction", "0.5", "--batch-size", "2", "--threshold", "0.999"]
    ref = tmp_path / "ref"
    assert _filter(sim, ref, *args).returncode == 0
    audit = json.loads((ref / "audit.json").read_text())
    assert audit["audited_vetoed_pf8_hits"] > 0 and audit["audited_kept"] > 0  # something to agree on

    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-c", "from sfx_cnn_veto.cli import main; raise SystemExit(main())", "filter-lst",
           sim["lst"].name, "-o", str(work / "hits.lst"), "--scores", str(work / "scores.csv"), *args]
    _kill_when(cmd, str(work / "hits.lst") + ".journal", 6, sim["dir"])
    assert not (work / "audit.json").exists()
    done = cli(*cmd[3:], "--resume", cwd=sim["dir"])
    assert done.returncode == 0 and "replayed from the journal" in done.stderr, done.stderr[-2000:]
    for name in ("audit.json", "hits.lst", "scores.csv"):
        assert (work / name).read_bytes() == (ref / name).read_bytes(), name

    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun is not installed (Debian: openmpi-bin)")
    import subprocess

    from _audit_helpers import env

    par = tmp_path / "mpi"
    par.mkdir()
    run = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", *cmd[:3], "filter-lst",
                          sim["lst"].name, "-o", str(par / "hits.lst"), "--scores", str(par / "scores.csv"), *args],
                         env=env(), cwd=sim["dir"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "on 2 ranks" in run.stderr, (run.stdout + run.stderr)[-3000:]
    for name in ("audit.json", "hits.lst", "scores.csv"):
        assert (par / name).read_bytes() == (ref / name).read_bytes(), name


# ---------------------------------------------------------------------------
# The estimate against the truth: seeded simulated runs (examples/audit/audit_coverage.py).

@pytest.mark.slow
def test_audit_interval_covers_the_true_sensitivity_over_seeded_simulated_runs(tmp_path):
    """The true sensitivity (peakfinder8 on every frame) lies in filter-lst's audit interval on every seed.

    A threshold of 0.999 loses about a fifth of the hits, so there is a miss rate to estimate. Each
    seed's interval holds the truth with at least 95% probability; the seeds are fixed, so this is
    reproducible. The full figures (10 seeds) are in the README.
    """
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "audit" / "audit_coverage.py"
    spec = importlib.util.spec_from_file_location("audit_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = [module.one_seed(str(tmp_path), seed, frames=150, fraction=0.3, threshold=0.999) for seed in (1, 2, 3)]
    assert all(r["pf8_hits_vetoed"] > 0 for r in runs), "the threshold lost no hit: nothing to estimate"
    for r in runs:
        low, high = r["interval"]
        assert low <= r["true_sensitivity"] <= high, r
        assert r["estimate"] is not None and low <= r["estimate"] <= high
