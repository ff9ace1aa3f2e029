"""psana adapter, against the real psana2: xtc2 written by psana.dgramedit, read by DataSource.

The psana1 (LCLS-I) path cannot run here (psana1 is not installable); it is
covered by ``FakePsana1``, a stand-in of its documented API only, clearly
named as such. Everything else uses psana2 4.3.4 itself, serially and under
``mpirun``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from _cenv import c_environ_keys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "psana", "veto_xtc2.py")
DETECTOR = "camera"

HAVE_PSANA = importlib.util.find_spec("psana") is not None and importlib.util.find_spec("mpi4py") is not None
WHY_NO_PSANA = "psana2 (and mpi4py) not installed: pip install 'sfx-cnn-veto[psana]'"


def _import_psana():
    """``import psana`` for in-process tests, undoing what it does to child processes.

    Importing psana2 runs ``MPI_Init`` (mpi4py), and Open MPI's singleton
    start puts OMPI_*/PMIX_* variables into the C environment (not into
    ``os.environ``). Any later ``mpirun`` started with the inherited
    environment (``subprocess.run(cmd)`` without ``env=``) in this pytest
    process then fails. Drop the variables that appeared.
    """
    before = c_environ_keys()
    try:
        import psana
    except Exception as exc:  # noqa: BLE001 - installed but broken: skip with the reason
        pytest.skip(f"psana2 not importable ({type(exc).__name__}: {exc})")
    for key in c_environ_keys() - before:
        if key not in os.environ:
            os.unsetenv(key)
    return psana




def needs_psana(test):
    """Mark a test as using the real psana2, skipped (with the reason) where it is not installed."""
    return pytest.mark.psana(pytest.mark.skipif(not HAVE_PSANA, reason=WHY_NO_PSANA)(test))


MPIRUN = shutil.which("mpirun")
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="mpirun not found (apt-get install openmpi-bin)")


# ---------------------------------------------------------------------------
# fixtures: a random-weights paper model (the check is "same decisions as scoring
# the frames directly", which needs no training) and a run with awkward events

@pytest.fixture(scope="module")
def model_path(paper_model_file):
    """The paper network with seeded random weights (sfx_cnn_veto.testing)."""
    return paper_model_file


@pytest.fixture(scope="module")
def frames():
    """14 toy frames, then an event without detector data (None) and a frame too small to crop."""
    from sfx_cnn_veto_psana.frames import toy_frames

    good, _ = toy_frames(14, shape=(400, 400), hit_fraction=0.5, seed=11)
    out = list(good)
    out.insert(5, None)  # psana returns None for this event
    out.insert(9, np.ones((200, 200), np.float32))  # smaller than the 350x350 crop
    return out


@pytest.fixture(scope="module")
def direct(model_path, frames):
    """A Veto, a threshold that splits the scores with a clear gap, and the direct decisions."""
    from sfx_cnn_veto.core.pipeline import Veto

    veto = Veto.load(model_path, batch_size=64)
    scorable = [f for f in frames if f is not None]
    scores = np.sort(veto.score(scorable))
    scores = scores[np.isfinite(scores)]
    gaps = np.diff(scores)
    k = int(np.argmax(gaps[2:-2])) + 2  # a gap away from the extremes: some hits, some misses
    veto.threshold = float((scores[k] + scores[k + 1]) / 2)
    expected = []
    for frame in frames:
        expected.append(None if frame is None else veto.decide([frame])[0])
    return veto, expected


@pytest.fixture(scope="module")
def ps():
    """The psana2 module (imported without leaking MPI state into child processes)."""
    return _import_psana()


@pytest.fixture(scope="module")
def run_files(ps, tmp_path_factory, frames):
    from sfx_cnn_veto_psana.xtc import write_run

    return write_run(tmp_path_factory.mktemp("xtc"), frames, exp="sfxtest01", run=3, detector_name=DETECTOR)


def _calib_veto(run_files, veto):
    """``(ds, run, PsanaVeto)`` of the test run's first run, scoring the detector's calib array."""
    from sfx_cnn_veto_psana import PsanaVeto

    ds = _open(run_files)
    run = next(ds.runs())
    return ds, run, PsanaVeto(veto, detector=run.Detector(DETECTOR), source="calib")


def _open(run_files, **extra):
    from sfx_cnn_veto_psana import allow_offline_runs

    allow_offline_runs()
    from psana import DataSource

    return DataSource(**run_files.datasource_kwargs(), **extra)


def _check_same(decision, expected):
    if expected is None:  # psana gave no frame: undecided, kept
        assert decision.error and "None" in decision.error
        assert decision.is_hit and np.isnan(decision.score)
    elif expected.error:
        assert decision.error == expected.error and decision.is_hit
    else:
        assert decision.error is None
        assert decision.score == pytest.approx(expected.score, rel=1e-5, abs=1e-6)
        assert decision.is_hit == expected.is_hit


# ---------------------------------------------------------------------------
# psana2, serial

@needs_psana
def test_xtc2_round_trip(run_files, frames):
    """What psana.dgramedit wrote, DataSource reads back bit for bit, with our timestamps."""
    ds = _open(run_files)
    run = next(ds.runs())
    assert (run.expt, run.runnum) == ("sfxtest01", 3)
    det = run.Detector(DETECTOR)
    stamps = []
    for evt, frame in zip(run.events(), frames):
        got = det.raw.raw(evt)
        if frame is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, frame)
        stamps.append(evt.timestamp)
    np.testing.assert_array_equal(np.array(stamps, np.uint64), run_files.timestamps)


@needs_psana
def test_events_equal_direct_decisions(run_files, frames, direct):
    """Every event once, in order, deciding exactly as Veto.decide on the same frames; failures fail open."""
    veto, expected = direct
    ds, run, pv = _calib_veto(run_files, veto)
    out = list(pv.events(run, batch_size=4))  # batches of 4 over 16 events
    assert [int(evt.timestamp) for evt, _ in out] == [int(t) for t in run_files.timestamps]
    for (evt, decision), exp, frame in zip(out, expected, frames):
        _check_same(decision, exp)
        if frame is not None:  # an event handed back after its batch still reads right
            np.testing.assert_array_equal(pv.detector.raw.raw(evt), frame)
    labels = [d.label for _, d in out]
    assert labels.count("error") == 2 and "hit" in labels and "miss" in labels
    assert pv.center_origin == "frame centre"


@needs_psana
def test_hits_table_and_second_pass(run_files, frames, direct, model_path, tmp_path):
    """hits() keeps hits and errors; smalldata table + hit list; psana re-reads only hits by timestamp."""
    from sfx_cnn_veto_psana import PsanaVeto, VetoTable, read_hits, read_table, select_timestamps

    veto, expected = direct
    want = {int(t) for t, e in zip(run_files.timestamps, expected) if e is None or e.is_hit}

    ds = _open(run_files)
    run = next(ds.runs())
    pv = PsanaVeto.load(model_path, detector=run.Detector(DETECTOR), threshold=veto.threshold, batch_size=5)
    table = VetoTable(ds, tmp_path / "veto.h5", hits=tmp_path / "hits.npy", batch_size=3)
    seen = []
    for evt, decision in pv.events(run):
        table.record(evt, decision)
        seen.append(decision)
    assert table.done() == str(tmp_path / "hits.npy")

    rows = read_table(tmp_path / "veto.h5")
    np.testing.assert_array_equal(rows["timestamp"], run_files.timestamps)
    np.testing.assert_array_equal(rows["is_hit"], [d.is_hit for d in seen])
    np.testing.assert_array_equal(rows["error"], [d.error is not None for d in seen])
    for score, exp in zip(rows["score"], expected):
        if exp is None or exp.error:
            assert np.isnan(score)
        else:
            assert score == pytest.approx(exp.score, rel=1e-5, abs=1e-6)
    hits = read_hits(tmp_path / "hits.npy")
    assert set(hits.tolist()) == want and 2 < hits.size < len(frames)

    # hits() over a fresh pass: the same events
    ds = _open(run_files)
    run = next(ds.runs())
    pv = PsanaVeto(veto, detector=run.Detector(DETECTOR))
    assert {int(evt.timestamp) for evt, _ in pv.hits(run)} == want

    # second pass, psana selecting events itself (exp=/dir= mode reads only those)
    ds = _open(run_files, timestamps=str(tmp_path / "hits.npy"))
    run = next(ds.runs())
    assert sorted(int(evt.timestamp) for evt in run.events()) == sorted(want)

    # files= mode: psana ignores timestamps=, so filter
    from psana import DataSource

    ds = DataSource(files=[run_files.xtc2], skip_calib_load="all")
    run = next(ds.runs())
    picked = select_timestamps(run.events(), hits, timestamp=lambda e: int(e.timestamp))
    assert sorted(int(e.timestamp) for e in picked) == sorted(want)


@needs_psana
def test_audit_runs_psanas_peakfinder8_on_the_hashed_timestamps(run_files, frames, direct):
    """The live audit: events picked by a hash of the timestamp, counted by psana's peakfinder8, hits kept."""
    from sfx_cnn_veto.core.audit import is_audited
    from sfx_cnn_veto_psana import psana_audit
    from sfx_cnn_veto_psana.peaks import create_psana_peakfinder8

    veto, expected = direct
    ds, run, pv = _calib_veto(run_files, veto)
    audit = psana_audit(fraction=0.6, min_peaks=3)
    out = list(pv.audited(run, audit, batch_size=4))
    direct_counter = create_psana_peakfinder8({})
    audited = set()
    for (evt, decision, result), exp, frame in zip(out, expected, frames):
        _check_same(decision, exp)
        stamp = pv.timestamp(evt)
        if decision.error:  # undecided: kept, never audited
            assert result.keep and not result.audited
            continue
        assert result.audited == is_audited(str(stamp), 0.6)
        if result.audited:
            audited.add(stamp)
            assert result.peaks == direct_counter(frame)  # psana's peakfinder8 on the scored frame
        assert result.keep == (decision.is_hit or bool(result.audited and result.peaks >= 3))
    c = audit.counts
    assert c.audited_vetoed + c.audited_kept == len(audited) > 0
    assert c.vetoed + c.kept == sum(1 for _e, d, _r in out if not d.error)
    # hits(audit=...) keeps the same events
    ds, run, pv = _calib_veto(run_files, veto)
    kept = {pv.timestamp(evt) for evt, _d in pv.hits(run, audit=psana_audit(fraction=0.6, min_peaks=3))}
    assert kept == {pv.timestamp(e) for e, _d, r in out if r.keep}


@needs_psana
def test_image_source_and_centre_override(run_files, frames, direct):
    """source='image' (Opal: no geometry, so the frame centre); an explicit centre moves the crop."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto_psana import PsanaVeto

    veto, _ = direct
    ds = _open(run_files)
    run = next(ds.runs())
    det = run.Detector(DETECTOR)
    shifted = Veto(veto.model, threshold=veto.threshold, center=(180.0, 220.0))
    pv = PsanaVeto(shifted, detector=det, source="image", center=(180.0, 220.0))
    out = list(pv.events(run, batch_size=8))
    assert pv.center_origin == "user"
    for (_, decision), frame in zip(out, frames):
        if frame is None:
            assert decision.error
        else:
            _check_same(decision, shifted.decide([frame])[0])

    ds = _open(run_files)
    run = next(ds.runs())
    pv = PsanaVeto(veto, detector=run.Detector(DETECTOR), source="image", center="geometry")
    with pytest.raises(Exception, match="geometry"):
        list(pv.events(run))


@needs_psana
def test_geometry_centre_from_psana_geometry(ps):
    """The crop centre for assembled images comes from psana's own GeometryAccess (epix100a default geometry).

    The detector object is a minimal holder for psana2's real geometry class
    (``det.raw._det_geo()``), since no calibration database is reachable here.
    """
    from psana.pscalib.geometry.GeometryAccess import GeometryAccess

    from sfx_cnn_veto_psana import PsanaVeto

    path = os.path.join(os.path.dirname(ps.__file__), "pscalib", "geometry", "data", "geometry-def-epix100a.data")
    geo = GeometryAccess(path)
    rows, cols = geo.get_pixel_coord_indexes()
    x, y, _ = geo.get_pixel_coords()
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)

    holder = types.SimpleNamespace(raw=types.SimpleNamespace(_det_geo=lambda: geo))
    pv = PsanaVeto(lambda: None, detector=holder, source="image", psana=ps)
    centre = pv.geometry_center(None, shape)
    assert centre is not None
    # independent check: fit image index = a*x + b*y + c over all pixels; c is the index of x=y=0
    design = np.column_stack([x.ravel(), y.ravel(), np.ones(x.size)])
    for axis, index in enumerate((rows, cols)):
        coef, *_ = np.linalg.lstsq(design, index.ravel().astype(float), rcond=None)
        assert abs(centre[axis] - coef[2]) <= 1.0, (axis, centre, coef)
    assert 0 < centre[0] < shape[0] and 0 < centre[1] < shape[1]
    assert pv.geometry_center(None, (10, 10)) is None  # geometry image does not match the frame


# ---------------------------------------------------------------------------
# psana2 under MPI

def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "plugins"), env.get("PYTHONPATH", "")])
    env["PS_SRV_NODES"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
@pytest.mark.mpi
@needs_psana
@needs_mpirun
def test_mpi_every_event_once(run_files, frames, direct, model_path, tmp_path):
    """``mpirun -n 5``: smd0, event builder, two big-data ranks, one smalldata server.

    (``-n 4`` leaves a single big-data rank once the smalldata server is
    taken; ``examples/psana/run.sh`` runs that. Five ranks make psana really
    spread the events.) The smalldata table must hold every event exactly
    once, with the direct decisions.
    """
    from sfx_cnn_veto_psana import read_hits, read_table

    veto, expected = direct
    cmd = [MPIRUN, "--oversubscribe", "-n", "5"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [sys.executable, EXAMPLE, "veto", "--dir", run_files.dir, "--exp", run_files.exp,
            "--run", str(run_files.run), "--detector", DETECTOR, "--model", model_path,
            "--source", "calib", "--threshold", repr(veto.threshold), "--batch-size", "4",
            "--table", str(tmp_path / "veto.h5"), "--hits", str(tmp_path / "hits.npy"), "--smd-batch", "2"]
    proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    per_rank = {int(r): int(n) for r, n in re.findall(r"rank (\d+): scored (\d+) events", proc.stdout)}
    assert sum(per_rank.values()) == len(frames), proc.stdout
    assert len(per_rank) == 2 and all(n > 0 for n in per_rank.values()), per_rank  # spread over 2 big-data ranks

    rows = read_table(tmp_path / "veto.h5")
    assert rows["timestamp"].size == len(frames)
    np.testing.assert_array_equal(rows["timestamp"], run_files.timestamps)  # each exactly once
    for score, is_hit, error, exp in zip(rows["score"], rows["is_hit"], rows["error"], expected):
        if exp is None or exp.error:
            assert error and is_hit and np.isnan(score)
        else:
            assert not error and is_hit == exp.is_hit
            assert score == pytest.approx(exp.score, rel=1e-5, abs=1e-6)
    want = [int(t) for t, e in zip(run_files.timestamps, expected) if e is None or e.is_hit]
    assert read_hits(tmp_path / "hits.npy").tolist() == sorted(want)


# ---------------------------------------------------------------------------
# psana1 (LCLS-I): a STAND-IN of its documented API, since psana1 cannot be installed

class FakePsana1:
    """Stand-in for LCLS-I ``psana`` (documented API only; NOT the real thing).

    ``psana.DataSource('exp=...:run=...')``, ``ds.events()``,
    ``psana.Detector(name)`` with ``raw/calib/image(evt)``,
    ``point_indexes(evt, pxy_um=(0, 0))`` and ``indexes_xy(evt)``,
    ``evt.get(psana.EventId).time() -> (sec, nsec)``, ``.fiducials()``;
    ``idx`` mode: ``next(ds.runs()).event(psana.EventTime(time, fiducials))``.
    No ``xtc_version``.
    """

    class EventTime:
        def __init__(self, time, fiducials):
            self.key = (int(time), int(fiducials))

    class EventId:
        def __init__(self, sec, nsec, fiducials):
            self._t, self._fid = (sec, nsec), fiducials

        def time(self):
            return self._t

        def fiducials(self):
            return self._fid

    class _Event:
        def __init__(self, eid, data):
            self._eid, self._data = eid, data

        def get(self, kind, *args):
            return self._eid if kind is FakePsana1.EventId else None

    _events: list = []

    @classmethod
    def DataSource(cls, source):
        assert re.fullmatch(r"exp=\w+:run=\d+(:smd|:idx)?", source), source
        if source.endswith(":idx"):
            index = {}
            for evt in cls._events:
                sec, nsec = evt._eid.time()
                index[((sec << 32) | nsec, evt._eid.fiducials())] = evt
            run = types.SimpleNamespace(event=lambda t: index[t.key], times=lambda: list(index))
            return types.SimpleNamespace(runs=lambda: iter([run]))
        return types.SimpleNamespace(events=lambda: iter(cls._events))

    @classmethod
    def Detector(cls, name):
        geometry_centre = (180.0, 220.0)

        def calib(evt):
            return evt._data.get(name)

        def indexes_xy(evt):
            frame = evt._data.get(name)
            shape = frame.shape if frame is not None else (400, 400)
            return np.mgrid[0 : shape[0], 0 : shape[1]]

        return types.SimpleNamespace(
            raw=lambda evt: None if calib(evt) is None else calib(evt).astype(np.int16),
            calib=calib,
            image=calib,
            point_indexes=lambda evt, pxy_um=(0, 0): geometry_centre,
            indexes_xy=indexes_xy,
        )


def test_psana1_standin_api(frames, direct, tmp_path):
    """The psana1 branch (told apart by the missing ``xtc_version``) against FakePsana1."""
    from sfx_cnn_veto.core.pipeline import Veto
    from sfx_cnn_veto_psana import PsanaVeto, VetoTable, hit_rows, psana1_events_at, read_hits, read_table
    from sfx_cnn_veto_psana.veto import psana_generation

    veto, expected = direct
    fake = FakePsana1
    assert psana_generation(fake) == 1
    assert psana_generation(types.SimpleNamespace(xtc_version=2)) == 2  # what psana2 declares
    fake._events = [
        fake._Event(fake.EventId(1_600_000_000 + i, 1000 * i, 3 * i), {} if f is None else {"DscCsPad": f})
        for i, f in enumerate(frames)
    ]
    ds = fake.DataSource("exp=cxic0415:run=90:smd")
    pv = PsanaVeto(veto, detector=fake.Detector("DscCsPad"), source="calib", psana=fake)
    table = VetoTable(None, tmp_path / "veto.h5", hits=tmp_path / "hits.npy", timestamp=pv.timestamp,
                      fiducials=pv.fiducials)
    out = []
    for evt, decision in pv.events(ds, batch_size=3):
        table.record(evt, decision)
        out.append((evt, decision))
    table.done()
    assert len(out) == len(frames)
    for (evt, decision), exp in zip(out, expected):
        _check_same(decision, exp)
    stamps = [pv.timestamp(evt) for evt, _ in out]
    assert stamps == [((1_600_000_000 + i) << 32) | (1000 * i) for i in range(len(frames))]
    rows = read_table(tmp_path / "veto.h5")
    np.testing.assert_array_equal(rows["timestamp"], stamps)
    hit_stamps = {s for s, (_, d) in zip(stamps, out) if d.is_hit}
    assert set(read_hits(tmp_path / "hits.npy").tolist()) == hit_stamps
    np.testing.assert_array_equal(rows["fiducials"], [3 * i for i in range(len(frames))])

    # second pass, idx mode: random access to the hits only
    rows = hit_rows(tmp_path / "veto.h5")
    run = next(fake.DataSource("exp=cxic0415:run=90:idx").runs())
    again = list(psana1_events_at(run, rows["timestamp"], rows["fiducials"], psana=fake))
    assert {pv.timestamp(evt) for evt in again} == hit_stamps and len(again) == len(hit_stamps)

    # assembled image: the crop centre comes from point_indexes (the geometry's beam position)
    shifted = Veto(veto.model, threshold=veto.threshold, center=(180.0, 220.0))
    pv = PsanaVeto(shifted, detector=fake.Detector("DscCsPad"), source="image", psana=fake)
    hits = list(pv.hits(ds))
    assert pv.center == (180.0, 220.0) and pv.center_origin == "geometry"
    want = [d for d in shifted.decide([f for f in frames if f is not None]) if d.is_hit]
    assert len(hits) == len(want) + 1  # + the event without data (kept, fail open)


@needs_psana
def test_cli_psana_command(run_files, frames, direct, model_path, tmp_path, capsys):
    """``sfx-cnn-veto psana`` (registered by the plugin's entry point): table, hit list, exit 2 on errors."""
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS, main
    from sfx_cnn_veto.core.audit import DEFAULT_FRACTION, DEFAULT_MIN_PEAKS, is_audited
    from sfx_cnn_veto_psana import read_hits, read_table
    from sfx_cnn_veto_psana.peaks import create_psana_peakfinder8

    veto, expected = direct
    code = main(["psana", "--exp", run_files.exp, "--run", str(run_files.run), "--dir", run_files.dir,
                 "--offline", "--detector", DETECTOR, "-m", model_path, "--threshold", repr(veto.threshold),
                 "--table", str(tmp_path / "t.h5"), "--hits", str(tmp_path / "h.npy")])
    assert code == EXIT_EVENT_ERRORS  # two events could not be scored (kept as hits)
    rows = read_table(tmp_path / "t.h5")
    np.testing.assert_array_equal(rows["timestamp"], run_files.timestamps)
    # the default live audit (2% of the events, by a hash of the timestamp: the run's are "now") also keeps
    # the vetoed events psana's peakfinder8 calls hits (tests/test_psana_audit.py tests it at 60%)
    count = create_psana_peakfinder8({})
    rescued = [int(t) for t, e, f in zip(run_files.timestamps, expected, frames)
               if e is not None and not e.error and not e.is_hit and is_audited(str(int(t)), DEFAULT_FRACTION)
               and count(f) >= DEFAULT_MIN_PEAKS]
    want = [int(t) for t, e in zip(run_files.timestamps, expected) if e is None or e.is_hit] + rescued
    assert read_hits(tmp_path / "h.npy").tolist() == sorted(want)
    assert "2 errors" in capsys.readouterr().err
    assert (tmp_path / "audit.json").exists()  # the audit's default output, beside the table


def test_plugin_import_is_light():
    """Importing the adapter (as the plugin manager does) imports neither psana nor TensorFlow."""
    code = ("import sys, sfx_cnn_veto_psana, sfx_cnn_veto_psana.plugin, sfx_cnn_veto_psana.veto, "
            "sfx_cnn_veto_psana.outputs, sfx_cnn_veto_psana.xtc; "
            "from sfx_cnn_veto import manager; manager.commands(); "
            "bad = [m for m in ('psana', 'tensorflow', 'keras') if m in sys.modules]; "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "plugins")]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


@needs_psana
def test_psana_import_leaves_children_clean(ps):
    """After the in-process psana import, child processes see no Open MPI singleton state."""
    out = subprocess.run(["env"], capture_output=True, text=True, timeout=30).stdout
    assert "OMPI_MCA_ess=singleton" not in out and "PMIX_SERVER_URI" not in out


def test_mask_reaches_the_veto(model_path):
    from sfx_cnn_veto_psana import PsanaVeto

    good = np.ones((400, 400), dtype=np.uint8)
    good[10, 10] = 0
    pv = PsanaVeto.load(model_path, detector=object(), psana=FakePsana1(), mask=good)
    assert pv.veto.mask.dtype == bool and not pv.veto.mask[10, 10] and pv.veto.mask.sum() == good.size - 1
