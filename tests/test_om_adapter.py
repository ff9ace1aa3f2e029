"""The OM adapter, tested against the real OM monitor (ondamonitor 23.8.3) under mpirun.

The end-to-end tests start ``mpirun -n 3`` on the ``sfx-om-monitor`` launcher
with OM's ``EigerFilesDataRetrieval`` reading demo HDF5 files, subscribe to
OM's ZMQ data socket for the ``cnn_veto`` counts, and read OM's log and the
collector's per-event decisions file. They are skipped (with the reason) only
where mpirun, mpi4py or OM cannot be imported; CI installs all three.

Frames come from the project's simulator (``sfx_cnn_veto_om.example_data``; obvious
Gaussian spots where the simulator is not installed). The model is a tiny
network trained in a session fixture on other simulated frames, so "no frame
peakfinder8 calls a hit is vetoed" checks the plumbing with a good model.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sfx_cnn_veto.errors import ConfigError, ModelFormatError
from sfx_cnn_veto_om.config import CnnVetoConfig
from sfx_cnn_veto_om.stats import VetoStats, frame_record

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "om"
RUN_TIMEOUT = 240  # seconds, per monitor run (normally 3-15 s)

HAVE_OM = importlib.util.find_spec("om") is not None
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
MPIRUN = shutil.which("mpirun")

needs_om = pytest.mark.skipif(not HAVE_OM, reason="ondamonitor (OM) is not installed: pip install 'sfx-cnn-veto[om]'")
_mpi_skip = pytest.mark.skipif(
    not (MPIRUN and HAVE_MPI4PY),
    reason="mpirun or mpi4py missing: apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py",
)


def needs_mpi(func):
    """Runs the real monitor under mpirun (a few seconds per mode; runs in CI)."""
    return pytest.mark.om(pytest.mark.mpi(pytest.mark.slow(_mpi_skip(func))))


# ---------------------------------------------------------------------------
# The cnn_veto group (no OM needed)


def test_config_defaults_and_off_mode(tmp_path):
    cfg = CnnVetoConfig.from_group({"mode": "off", "name": "cnn_veto"})
    assert cfg.mode == "off" and not cfg.enabled and cfg.model is None
    # YAML 1.1 reads a bare `off` as False: accept it as the mode it obviously is.
    assert CnnVetoConfig.from_group(yaml.safe_load("mode: off")).mode == "off"
    assert cfg.mask is None  # default: peakfinder8's bad pixel map, when the monitor has one
    assert CnnVetoConfig.from_group(yaml.safe_load("mode: off\nmask: false")).mask is False
    assert CnnVetoConfig.from_group({"mode": "off", "mask": "m.h5:/data/data"}).mask == "m.h5:/data/data"


@pytest.mark.parametrize(
    "group, words",
    [
        (None, ["no 'cnn_veto' parameter group"]),
        ({"mode": "skip"}, ["cnn_veto.mode", "veto, tag, off", "'skip'"]),
        ({"mode": "off", "treshold": 0.5}, ["unknown parameter", "treshold", "allowed", "threshold"]),
        ({"mode": "off", "threshold": 1.5}, ["cnn_veto.threshold", "[0, 1]", "1.5"]),
        ({"mode": "off", "threshold": "high"}, ["cnn_veto.threshold", "'high'"]),
        ({"mode": "off", "threads": 0}, ["cnn_veto.threads", "positive integer", "0"]),
        ({"mode": "off", "broadcast_interval": True}, ["cnn_veto.broadcast_interval"]),
        ({"mode": "off", "model": 3}, ["cnn_veto.model", ".keras"]),
        ({"mode": "off", "mask": True}, ["cnn_veto.mask", "FILE.h5:/DATASET", "True"]),
        ({"mode": "off", "mask": ""}, ["cnn_veto.mask"]),
    ],
)
def test_config_errors_name_the_key(group, words):
    with pytest.raises(ConfigError) as info:
        CnnVetoConfig.from_group(group)
    for word in words:
        assert word in str(info.value)


def test_config_model_must_exist_and_carry_metadata(tmp_path):
    with pytest.raises(ModelFormatError, match="not found"):
        CnnVetoConfig.from_group({"model": str(tmp_path / "nope.keras")})
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    with pytest.raises(ModelFormatError, match="not a .keras model file"):
        CnnVetoConfig.from_group({"model": str(bad), "mode": "tag"})


def test_stats_counts_veto_and_agreement():
    stats = VetoStats(mode="veto")
    stats.add(frame_record(mode="veto", score=0.1, cnn_hit=False, vetoed=True, peakfinder8=False, cnn_ms=2.0),
              frame_is_hit=False)
    stats.add(frame_record(mode="veto", score=0.9, cnn_hit=True, peakfinder8=True, cnn_ms=2.0, peakfinder8_ms=8.0),
              frame_is_hit=True)
    stats.add(frame_record(mode="veto", score=0.8, cnn_hit=True, peakfinder8=True, cnn_ms=2.0, peakfinder8_ms=8.0),
              frame_is_hit=False)
    stats.add(frame_record(mode="veto", error="boom", peakfinder8=True, cnn_ms=1.0, peakfinder8_ms=8.0),
              frame_is_hit=True)
    msg = stats.message(final=True)
    assert (msg["frames"], msg["vetoed"], msg["kept"], msg["errors"], msg["peakfinder8_calls"]) == (4, 1, 3, 1, 3)
    assert (msg["both_hit"], msg["cnn_hit_pf8_miss"], msg["cnn_miss_pf8_hit"], msg["compared"]) == (1, 1, 0, 2)
    assert msg["agreement"] == pytest.approx(0.5)
    assert msg["cnn_ms_per_frame"] == pytest.approx(7.0 / 4)
    assert msg["error_reasons"] == {"boom": 1}
    line = stats.summary(final=True)
    assert line.startswith("cnn_veto final: mode=veto frames=4") and "last_error='boom'" in line


@needs_om
def test_om_numpy_and_tensorflow_share_one_environment():
    """OM 23.8.3 needs numpy<2 (np.float_); TensorFlow must work beside it (the environment question)."""
    import numpy
    from om.algorithms.crystallography import Peakfinder8PeakDetection  # noqa: F401 - OM's compiled peakfinder8

    from sfx_cnn_veto.core.tf import import_tensorflow

    tf = import_tensorflow()
    assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
    assert float(tf.reduce_sum(tf.constant(numpy.ones(3, dtype=numpy.float32)))) == 3.0


# ---------------------------------------------------------------------------
# The launcher's layer loading (needs OM importable, not MPI)


@needs_om
def test_launcher_loads_dotted_and_bare_layer_names(tmp_path, monkeypatch):
    from om.lib.exceptions import OmMissingLayerClassError, OmMissingLayerModuleError

    from sfx_cnn_veto_om import PROCESSING_LAYER
    from sfx_cnn_veto_om.launcher import import_class_from_layer, install

    cls = import_class_from_layer(layer_name="processing_layer", class_name=PROCESSING_LAYER)
    assert cls.__name__ == "CnnVetoCrystallographyProcessing"
    from om.processing_layer.crystallography import CrystallographyProcessing

    assert issubclass(cls, CrystallographyProcessing)
    assert import_class_from_layer(layer_name="processing_layer", class_name="CrystallographyProcessing") \
        is CrystallographyProcessing
    with pytest.raises(OmMissingLayerClassError, match="NoSuchClass"):
        import_class_from_layer(layer_name="processing_layer", class_name="sfx_cnn_veto_om.processing.NoSuchClass")
    with pytest.raises(OmMissingLayerModuleError, match="no_such_pkg"):
        import_class_from_layer(layer_name="processing_layer", class_name="no_such_pkg.mod.Cls")
    # OM 23.8.3 returns None when a module named like the layer is importable; we look inside it.
    (tmp_path / "processing_layer.py").write_text("class MyLayer:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "processing_layer", raising=False)
    assert import_class_from_layer(layer_name="processing_layer", class_name="MyLayer").__name__ == "MyLayer"
    install()
    import om.monitor

    assert om.monitor.import_class_from_layer is import_class_from_layer


# ---------------------------------------------------------------------------
# Shared fixtures: demo data and a good tiny model (``om_demo``, in conftest.py), a broken (NaN) model


def _nan_model(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose weights are NaN: every score is non-finite (the fail-open path)."""
    from sfx_cnn_veto.core.model import VetoModel

    model = VetoModel.load(str(src))
    for layer in model.keras_model.layers:
        if layer.weights:
            layer.set_weights([np.full(w.shape, np.nan, dtype="float32") for w in layer.get_weights()])
    VetoModel(model.keras_model, model.metadata).save(str(dst))
    return dst


def _blind_model(src: Path, dst: Path) -> Path:
    from _audit_helpers import blind_model

    return blind_model(src, dst)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Subscriber(threading.Thread):
    """Collects messages from OM's ZMQ PUB socket (``cnn_veto`` and any ``extra_tags``), and
    optionally asks OM's responding socket for the next hit, as CrystFEL's OM client does."""

    def __init__(self, url: str, tag: str, *, extra_tags: tuple[str, ...] = (), request_url: str | None = None):
        super().__init__(daemon=True)
        import zmq

        self.zmq = zmq
        self.tag = tag
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt_string(zmq.SUBSCRIBE, tag)
        self.sock.connect(url)
        # OM's big messages on their own socket: OM's PUB queue holds one message per
        # subscriber, so sharing a pipe with 4 MB plots would drop small counts messages.
        self.extra = None
        if extra_tags:
            self.extra = self.ctx.socket(zmq.SUB)
            for t in extra_tags:
                self.extra.setsockopt_string(zmq.SUBSCRIBE, t)
            self.extra.connect(url)
        self.req = None
        if request_url:
            self.req = self.ctx.socket(zmq.REQ)
            self.req.connect(request_url)
            self.req.send(b"next")  # queued until OM binds; answered with the next hit
        self.messages: list[dict] = []
        self.other: dict[str, int] = {}
        self.reply: bytes | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        poller = self.zmq.Poller()
        poller.register(self.sock, self.zmq.POLLIN)
        if self.extra is not None:
            poller.register(self.extra, self.zmq.POLLIN)
        if self.req is not None:
            poller.register(self.req, self.zmq.POLLIN)
        while not self.stop.is_set():
            for sock, _ in poller.poll(100):
                if sock is self.req:
                    self.reply = self.req.recv()
                    poller.unregister(self.req)
                    continue
                tag = sock.recv_string()
                message = sock.recv_pyobj()
                if sock is self.sock:
                    self.messages.append(message)
                else:
                    self.other[tag] = self.other.get(tag, 0) + 1

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close(linger=0)
        if self.extra is not None:
            self.extra.close(linger=0)
        if self.req is not None:
            self.req.close(linger=0)
        self.ctx.term()


def _launcher() -> list[str]:
    script = Path(sys.executable).with_name("sfx-om-monitor")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sfx_cnn_veto_om"]  # same launcher, from a source checkout


def run_monitor(
    workdir: Path, files_list: Path, *, processing_layer: str, cnn_veto: dict | None, om_services: bool = False,
    geometry: Path = EXAMPLE / "detector.geom",
) -> dict:
    """Run the real OM monitor under ``mpirun -n 3`` through the launcher; return what it said.

    ``geometry``: OM's ``crystallography.geometry_file``; the bad-pixel map is ``mask.h5`` beside the list.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((EXAMPLE / "monitor.yaml").read_text())
    config["om"]["processing_layer"] = processing_layer
    config["om"]["colors_in_rich_console"] = False
    config["crystallography"]["geometry_file"] = str(geometry)
    config["peakfinder8_peak_detection"]["bad_pixel_map_filename"] = str(files_list.parent / "mask.h5")
    pub, rep = _free_port(), _free_port()
    config["crystallography"]["data_broadcast_url"] = f"tcp://127.0.0.1:{pub}"
    config["crystallography"]["responding_url"] = f"tcp://127.0.0.1:{rep}"
    if om_services:  # OM's own outputs besides ours: hit/non-hit frame sending, plots
        config["crystallography"]["hit_frame_sending_interval"] = 2
        config["crystallography"]["non_hit_frame_sending_interval"] = 2
    if cnn_veto is None:
        config.pop("cnn_veto", None)
    else:
        config["cnn_veto"] = {"threads": 1, "summary_interval": 10, "broadcast_interval": 1,
                              "decisions_file": str(workdir / "decisions.csv"), **cnn_veto}
    (workdir / "monitor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-n", "3", *_launcher(),
           "-c", "monitor.yaml", str(files_list)]
    sub = _Subscriber(
        f"tcp://127.0.0.1:{pub}", "cnn_veto",
        extra_tags=("omdata", "omframedata") if om_services else (),
        request_url=f"tcp://127.0.0.1:{rep}" if om_services else None,
    )
    sub.start()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"OM monitor did not stop by itself within {RUN_TIMEOUT} s:\n{log[-4000:]}")
    finally:
        time.sleep(0.2)
        sub.close()
        if proc.poll() is None:  # never leave MPI ranks behind
            os.killpg(proc.pid, signal.SIGKILL)
    (workdir / "monitor.log").write_text(log)
    rows = []
    if (workdir / "decisions.csv").exists():
        with open(workdir / "decisions.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    finals = [m for m in sub.messages if m.get("final")]
    return {"rc": proc.returncode, "workdir": workdir, "log": log, "messages": sub.messages,
            "final": finals[-1] if finals else None,
            "rows": rows, "seconds": time.monotonic() - start, "other": sub.other, "reply": sub.reply}


def _expected_event_ids(truth) -> dict[str, bool]:
    return {f"{path} // {i:04d}": hit for path, hits in zip(truth.paths, truth.is_hit) for i, hit in enumerate(hits)}


def _check_common(run: dict, truth) -> dict:
    """Every event processed (OM's own count, the broadcast, one decision row per event)."""
    n = truth.num_frames
    assert run["rc"] == 0, run["log"][-4000:]
    assert f"OM has processed {n} events in total." in run["log"], run["log"][-4000:]
    final = run["final"]
    assert final is not None, f"no final 'cnn_veto' message on OM's data socket; got {len(run['messages'])}"
    assert final["frames"] == n
    assert [m["frames"] for m in run["messages"]] == sorted(m["frames"] for m in run["messages"])
    assert f"cnn_veto final: mode={final['mode']} frames={n}" in run["log"]
    ids = [row["event_id"] for row in run["rows"]]
    assert sorted(ids) == sorted(_expected_event_ids(truth)), "decisions.csv does not list every event once"
    ranks = final["ranks"]
    assert sorted(ranks) == [1, 2], f"expected end-of-run reports from ranks 1 and 2, got {sorted(ranks)}"
    # The model is loaded once on each processing rank (the ranks' own end-of-run counters; the
    # ranks' console lines can interleave under mpirun, so they are not parsed), never on the
    # collector (rank 0).
    loads = {rank: report["model_loads"] for rank, report in ranks.items()}
    assert loads == ({1: 1, 2: 1} if final["mode"] != "off" else {1: 0, 2: 0}), loads
    assert "cnn_veto: rank 0 loaded" not in run["log"]
    assert sum(r["frames"] for r in ranks.values()) == n
    # peakfinder8 calls counted where they happen (the rank's wrapper around OM's peak finder) ...
    assert sum(r["peakfinder8_calls"] for r in ranks.values()) == final["peakfinder8_calls"]
    # ... and per event: a row says peakfinder8 ran, or it has no peaks and is not a hit.
    assert sum(int(row["peakfinder8"]) for row in run["rows"]) == final["peakfinder8_calls"]
    return {row["event_id"]: row for row in run["rows"]}


@pytest.fixture(scope="session")
def om_runs(om_demo, tmp_path_factory):
    """Monitor runs, made on first use and shared (each costs a few seconds)."""
    if not (HAVE_OM and MPIRUN and HAVE_MPI4PY):
        pytest.skip("needs OM, mpi4py and mpirun")
    root = tmp_path_factory.mktemp("om_runs")
    cache: dict[str, dict] = {}
    layer = "sfx_cnn_veto_om.processing.CnnVetoCrystallographyProcessing"

    def get(name: str) -> dict:
        if name not in cache:
            model = om_demo["model"]
            if name == "stock":
                cache[name] = run_monitor(root / name, om_demo["list"], processing_layer="CrystallographyProcessing",
                                          cnn_veto=None)
            else:
                cache[name] = run_monitor(root / name, om_demo["list"], processing_layer=layer,
                                          cnn_veto={"model": str(model), "mode": name}, om_services=name == "veto")
            run = cache[name]
            summary = {k: run["final"][k] for k in ("frames", "hits", "vetoed", "kept", "errors", "peakfinder8_calls",
                                                   "cnn_miss_pf8_hit", "agreement")} if run["final"] else None
            print(f"\n[om {name}] rc={run['rc']} {run['seconds']:.1f} s counts={json.dumps(summary)}")
        return cache[name]

    return get


def _pf8_hits(rows: dict) -> set[str]:
    return {eid for eid, row in rows.items() if row["frame_is_hit"] == "1"}


@needs_om
@needs_mpi
def test_stock_config_runs_through_launcher(om_runs, om_demo):
    run = om_runs("stock")
    assert run["rc"] == 0, run["log"][-4000:]
    assert f"OM has processed {om_demo['truth'].num_frames} events in total." in run["log"]
    assert run["messages"] == [] and "cnn_veto" not in run["log"]


@needs_om
@needs_mpi
def test_off_mode_is_stock_behaviour(om_runs, om_demo):
    truth = om_demo["truth"]
    rows = _check_common(om_runs("off"), truth)
    final = om_runs("off")["final"]
    assert final["vetoed"] == 0 and final["peakfinder8_calls"] == truth.num_frames and final["cnn_frames"] == 0
    # peakfinder8 (this config) finds the simulated hits: exactly on the obvious stand-in frames,
    # at least 90% agreement on the simulator's (weak crystals exist there).
    expected = {eid for eid, hit in _expected_event_ids(truth).items() if hit}
    found = _pf8_hits(rows)
    agree = 1 - len(found ^ expected) / truth.num_frames
    print(f"\n[om off] peakfinder8 vs truth: {len(found)} hits found, {len(expected)} simulated, agreement {agree:.3f}")
    assert 0 < len(expected) < truth.num_frames
    assert found == expected if truth.source == "spots" else agree >= 0.9


@needs_om
@needs_mpi
def test_veto_mode_skips_peakfinder8_and_vetoes_no_hit(om_runs, om_demo):
    truth = om_demo["truth"]
    off = _check_common(om_runs("off"), truth)
    run = om_runs("veto")
    rows = _check_common(run, truth)
    final = run["final"]
    vetoed = {eid for eid, row in rows.items() if row["vetoed"] == "1"}
    assert final["vetoed"] == len(vetoed) > 0, "the model vetoed nothing: no time can be saved"
    assert final["kept"] == truth.num_frames - final["vetoed"]
    assert final["errors"] == 0
    # Vetoed frames skipped peakfinder8 (counted on the ranks) and went on as non-hits with no peaks,
    # except those the live audit (default 2%) sends through peakfinder8.
    audited = {eid for eid in vetoed if rows[eid]["audited"] == "1"}
    assert final["peakfinder8_calls"] == final["kept"] + len(audited)
    assert sum(r["peakfinder8_skipped"] for r in final["ranks"].values()) == final["vetoed"] - len(audited)
    for eid in vetoed - audited:
        assert (rows[eid]["peakfinder8"], rows[eid]["num_peaks"], rows[eid]["frame_is_hit"]) == ("0", "0", "0")
    # No frame that peakfinder8 calls a hit (stock run) was vetoed; OM's hits are unchanged.
    assert not (vetoed & _pf8_hits(off)), f"hits vetoed: {sorted(vetoed & _pf8_hits(off))}"
    assert _pf8_hits(rows) == _pf8_hits(off)
    assert final["hits"] == len(_pf8_hits(off))
    assert f"vetoed={final['vetoed']}" in run["log"]


@needs_om
@needs_mpi
def test_convert_hitlist_on_a_real_veto_runs_decisions_lists_its_hits(om_runs, om_demo, tmp_path, capsys):
    """The collector's decisions.csv of a real monitor run: OM's hits as `file //N`, no header, no rank, no miss."""
    from sfx_cnn_veto.cli import main

    run = om_runs("veto")
    rows = _check_common(run, om_demo["truth"])
    out = tmp_path / "hits.lst"
    assert main(["convert", "hitlist", str(run["workdir"] / "decisions.csv"), "-o", str(out)]) == 0
    written = out.read_text().splitlines()
    assert 0 < len(written) < len(rows)
    assert sorted(written) == sorted(_lst_line(eid) for eid in _pf8_hits(rows))
    assert f"{len(rows)} entries read, {len(rows) - len(written)} misses left out" in capsys.readouterr().err


def _lst_line(event_id: str) -> str:
    """OM's ``/path/file.h5 // 0005`` as indexamajig's ``/path/file.h5 //5``."""
    path, _, index = event_id.rpartition(" // ")
    return f"{path} //{int(index)}"


@needs_om
def test_convert_hitlist_reads_the_adapters_decisions_rows(tmp_path, capsys):
    """Rows as the adapter's collector writes them (its own writer): hits kept, misses and vetoed frames out."""
    from sfx_cnn_veto.cli import main
    from sfx_cnn_veto_om.processing import DECISIONS_COLUMNS, RECORD_KEY, decision_row

    events = [  # (OM event id, rank, CNN record, peaks found, OM's hit decision)
        ("/data/run 7/frames_000.h5 // 0000", 1, frame_record(mode="veto", score=0.9, cnn_hit=True), 30, True),
        ("/data/run 7/frames_000.h5 // 0001", 2, frame_record(mode="veto", score=0.01, cnn_hit=False, vetoed=True,
                                                              peakfinder8=False), 0, False),
        ("/data/run 7/frames_000.h5 // 0002", 1, frame_record(mode="veto", score=0.7, cnn_hit=True), 3, False),
        ("/data/run 7/frames_001.h5 // 0012", 2, frame_record(mode="veto", error="classifier failed"), 25, True),
    ]
    decisions = tmp_path / "decisions.csv"
    with open(decisions, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DECISIONS_COLUMNS)
        for event_id, rank, record, peaks, hit in events:
            received = {"event_id": event_id, "frame_is_hit": hit, RECORD_KEY: record,
                        "peak_list": {"intensity": [1.0] * peaks}}
            writer.writerow(decision_row(received, rank, "veto"))
    out = tmp_path / "hits.lst"
    assert main(["convert", "hitlist", str(decisions), "-o", str(out)]) == 0
    assert out.read_text().splitlines() == ["/data/run 7/frames_000.h5 //0", "/data/run 7/frames_001.h5 //12"]
    assert "4 entries read, 2 misses left out" in capsys.readouterr().err
    assert main(["convert", "hitlist", str(decisions), "-o", str(out), "--min-peaks", "28"]) == 0
    assert out.read_text().splitlines() == ["/data/run 7/frames_000.h5 //0"]


@needs_om
@needs_mpi
def test_veto_mode_keeps_om_plots_frame_sending_and_crystfel_responder(om_runs, om_demo):
    """OM's own outputs still flow with the veto on: hit-rate/powder plots, sent frames, the CrystFEL answer."""
    import msgpack

    run = om_runs("veto")
    assert run["other"].get("omdata", 0) >= 1, f"no 'omdata' (hit-rate plots) broadcast: {run['other']}"
    assert run["other"].get("omframedata", 0) >= 1, f"no 'omframedata' (frame sending) broadcast: {run['other']}"
    assert run["reply"] is not None, "OM's responder did not answer the CrystFEL-style 'next' request"
    answer = msgpack.unpackb(run["reply"], raw=False)
    hits = {eid for eid, row in _check_common(run, om_demo["truth"]).items() if row["frame_is_hit"] == "1"}
    assert answer["event_id"] in hits and len(answer["peak_list"]["intensity"]) > 10


@needs_om
@needs_mpi
def test_tag_mode_runs_both_and_reports_agreement(om_runs, om_demo):
    truth = om_demo["truth"]
    off = _check_common(om_runs("off"), truth)
    run = om_runs("tag")
    rows = _check_common(run, truth)
    final = run["final"]
    assert final["vetoed"] == 0 and final["peakfinder8_calls"] == truth.num_frames
    assert final["compared"] == truth.num_frames and final["errors"] == 0
    assert final["cnn_miss_pf8_hit"] == 0, "the good model would have vetoed a peakfinder8 hit"
    assert final["agreement"] == pytest.approx((final["both_hit"] + final["both_miss"]) / truth.num_frames)
    assert _pf8_hits(rows) == _pf8_hits(off)
    # The CNN's decisions in tag mode are the ones veto mode acted on.
    veto_rows = _check_common(om_runs("veto"), truth)
    cnn_miss = {eid for eid, row in rows.items() if row["cnn_hit"] == "0"}
    assert cnn_miss == {eid for eid, row in veto_rows.items() if row["vetoed"] == "1"}
    assert "agreement=" in run["log"]


def _in_process_layer(model: Path, tmp_path: Path, mask: str, mode: str = "veto"):
    """OM's real processing layer object on "rank 1", without MPI (initialize + process_data)."""
    from om.lib.parameters import MonitorParameters

    from sfx_cnn_veto_om.processing import CnnVetoCrystallographyProcessing

    config = yaml.safe_load((EXAMPLE / "monitor.yaml").read_text())
    config["crystallography"]["geometry_file"] = str(EXAMPLE / "detector.geom")
    config["peakfinder8_peak_detection"]["bad_pixel_map_filename"] = str(mask)
    config["cnn_veto"] = {"model": str(model), "mode": mode, "threads": 1}
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
    return CnnVetoCrystallographyProcessing(monitor_parameters=MonitorParameters(config=str(tmp_path / "monitor.yaml")))


def _process_first_file(layer, om_demo):
    import h5py

    layer.initialize_processing_node(node_rank=1, node_pool_size=3)
    with h5py.File(om_demo["truth"].paths[0]) as h5:
        frames = h5["entry/data/data"][:]
    outputs = []
    for i, frame in enumerate(frames):
        data = {"detector_data": frame, "timestamp": 0.0, "beam_energy": 9000.0, "detector_distance": 100.0,
                "event_id": f"x // {i}"}
        out, rank = layer.process_data(node_rank=1, node_pool_size=3, data=data)
        assert rank == 1
        outputs.append(out)
    report = layer.end_processing_on_processing_node(node_rank=1, node_pool_size=3)["cnn_veto_rank_report"]
    return outputs, report


@pytest.fixture(scope="session")
def stock_hits(om_demo, tmp_path_factory):
    """peakfinder8's verdict on the first demo file, from the layer in ``off`` mode (stock OM)."""
    if not HAVE_OM:
        pytest.skip("ondamonitor (OM) is not installed")
    tmp = tmp_path_factory.mktemp("om_off_in_process")
    outputs, report = _process_first_file(_in_process_layer(om_demo["model"], tmp, om_demo["truth"].mask, "off"),
                                          om_demo)
    assert report["peakfinder8_calls"] == len(outputs) and report["cnn_calls"] == 0
    return [bool(o["frame_is_hit"]) for o in outputs]


@needs_om
def test_fail_open_when_the_model_returns_nan(om_demo, stock_hits, tmp_path):
    """The real model loader and backend with NaN weights: every frame is peak-found, none vetoed."""
    layer = _in_process_layer(_nan_model(om_demo["model"], tmp_path / "nan.keras"), tmp_path, om_demo["truth"].mask)
    outputs, report = _process_first_file(layer, om_demo)
    for out in outputs:
        record = out["cnn_veto"]
        assert record["peakfinder8"] and not record["vetoed"] and record["cnn_hit"] is None
        assert "non-finite" in record["error"]
    assert [o["frame_is_hit"] for o in outputs] == stock_hits
    assert report["cnn_errors"] == report["peakfinder8_calls"] == report["frames"] == len(stock_hits)
    assert report["vetoed"] == 0 and report["model_error"] is None


@needs_om
def test_fail_open_when_the_classifier_raises_or_cannot_load(om_demo, stock_hits, tmp_path, monkeypatch):
    """A classifier that raises, or a model that fails to load on a rank, never stops process_data."""
    import sfx_cnn_veto.core.pipeline as pipeline

    class Crashing:
        threshold = 0.5
        crop_shape = (350, 350)

        def decide(self, frames):
            raise RuntimeError("backend exploded")

        def predict_batch(self, batch):
            return np.zeros(len(batch))

    mask = om_demo["truth"].mask
    monkeypatch.setattr(pipeline.Veto, "load", classmethod(lambda cls, *a, **k: Crashing()))
    outputs, report = _process_first_file(_in_process_layer(om_demo["model"], tmp_path, mask), om_demo)
    assert all("backend exploded" in o["cnn_veto"]["error"] and o["cnn_veto"]["peakfinder8"] for o in outputs)
    assert [o["frame_is_hit"] for o in outputs] == stock_hits
    assert report["cnn_errors"] == report["peakfinder8_calls"] == len(stock_hits)

    def refuse(cls, *a, **k):
        raise OSError("disk gone")

    monkeypatch.setattr(pipeline.Veto, "load", classmethod(refuse))
    outputs, report = _process_first_file(_in_process_layer(om_demo["model"], tmp_path, mask), om_demo)
    assert all("disk gone" in o["cnn_veto"]["error"] and o["cnn_veto"]["peakfinder8"] for o in outputs)
    assert [o["frame_is_hit"] for o in outputs] == stock_hits
    assert "disk gone" in report["model_error"] and report["vetoed"] == 0


@needs_om
def test_veto_in_process(om_demo, stock_hits, tmp_path):
    """The good model, in process: CNN misses skip peakfinder8 (empty peak list, not a hit); no stock hit is lost."""
    outputs, report = _process_first_file(_in_process_layer(om_demo["model"], tmp_path, om_demo["truth"].mask),
                                          om_demo)
    for out, stock in zip(outputs, stock_hits):
        record = out["cnn_veto"]
        assert record["error"] is None and record["vetoed"] == (not record["cnn_hit"])
        assert record["peakfinder8"] == (not record["vetoed"])
        if record["vetoed"]:
            assert out["peak_list"]["intensity"] == [] and out["peak_list"]["num_peaks"] == 0
            assert out["frame_is_hit"] is False and not stock, "a frame peakfinder8 calls a hit was vetoed"
        else:
            assert out["frame_is_hit"] == stock
    assert report["peakfinder8_skipped"] == report["vetoed"] > 0


def test_veto_mask_defaults_to_peakfinder8s_bad_pixel_map():
    from types import SimpleNamespace

    processing = pytest.importorskip("sfx_cnn_veto_om.processing")
    spec = processing.CnnVetoCrystallographyProcessing._veto_mask_spec

    class Params:  # the one MonitorParameters method used; a stand-in for OM's parsed monitor.yaml
        def __init__(self, groups):
            self.groups = groups

        def get_parameter_group(self, *, group):
            if group not in self.groups:
                raise KeyError(group)
            return self.groups[group]

    pf8 = {"peakfinder8_peak_detection": {"bad_pixel_map_filename": "mask.h5", "bad_pixel_map_hdf5_path": "/data/data"}}

    def node(mask, groups):
        return SimpleNamespace(_veto_config=CnnVetoConfig.from_group({"mode": "off", "mask": mask}),
                               _monitor_params=Params(groups))

    assert spec(node(None, pf8)) == "mask.h5:/data/data"
    assert spec(node(None, {})) is None
    assert spec(node(False, pf8)) is None
    assert spec(node("mine.h5:/m", pf8)) == "mine.h5:/m"


# ---------------------------------------------------------------------------
# The live audit (sfx_cnn_veto.core.audit) in veto mode, under mpirun.

@needs_om
@needs_mpi
def test_audit_under_mpirun_selects_by_event_id_and_counts_on_the_data_socket(om_runs, om_demo, tmp_path):
    from sfx_cnn_veto.core.audit import is_audited

    truth = om_demo["truth"]
    run = run_monitor(tmp_path / "audit", om_demo["list"],
                      processing_layer="sfx_cnn_veto_om.processing.CnnVetoCrystallographyProcessing",
                      cnn_veto={"model": str(om_demo["model"]), "mode": "veto", "audit_fraction": 0.5})
    rows = _check_common(run, truth)
    audited = {eid for eid, row in rows.items() if row["audited"] == "1"}
    # the hash of OM's event id picks the frames, whichever rank processed them
    assert audited == {eid for eid in rows if is_audited(eid, 0.5)}
    assert 0 < len(audited) < len(rows)
    for eid in audited:
        assert rows[eid]["peakfinder8"] == "1"
    audit = run["final"]["audit"]
    vetoed = {eid for eid, row in rows.items() if row["vetoed"] == "1"}
    assert audit["audited_vetoed"] == len(audited & vetoed) and audit["vetoed"] == len(vetoed)
    assert audit["audited_kept"] == len(audited - vetoed)
    assert audit["audited_kept_pf8_hits"] == len({e for e in audited - vetoed if rows[e]["frame_is_hit"] == "1"})
    assert f"audited_vetoed={audit['audited_vetoed']}" in run["log"]
    assert audit["alarm"] is False and "ALARM" not in run["log"]  # the good model vetoes no hit


@needs_om
@needs_mpi
def test_audit_alarm_fires_and_rescues_hits_when_the_model_vetoes_every_hit(om_runs, om_demo, tmp_path):
    truth = om_demo["truth"]
    stock = _pf8_hits(_check_common(om_runs("off"), truth))
    blind = _blind_model(om_demo["model"], tmp_path / "blind.keras")
    run = run_monitor(tmp_path / "blind", om_demo["list"],
                      processing_layer="sfx_cnn_veto_om.processing.CnnVetoCrystallographyProcessing",
                      cnn_veto={"model": str(blind), "mode": "veto", "audit_fraction": 0.5,
                                "target_sensitivity": 0.98})
    rows = _check_common(run, truth)
    final = run["final"]
    assert final["vetoed"] == truth.num_frames  # the broken model vetoes every frame
    audited = {eid for eid, row in rows.items() if row["audited"] == "1"}
    rescued = audited & stock
    assert rescued, "no audited frame is a peakfinder8 hit: the test data cannot show a rescue"
    # audited frames peakfinder8 calls hits went on as OM hits; the others' hits are lost
    assert _pf8_hits(rows) == rescued and final["hits"] == len(rescued) == final["rescued"]
    audit = final["audit"]
    assert audit["audited_vetoed_pf8_hits"] == len(rescued)
    assert audit["sensitivity_interval"][1] < 0.98 and audit["alarm"] is True
    assert "cnn_veto ALARM:" in run["log"]
