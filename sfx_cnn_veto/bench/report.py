"""The bench's result: the headline keys of the JSON and the printed table."""

from __future__ import annotations

from typing import Any

#: The issues' targets on the 2-core machine (printed beside the figures): keys ending in ``_ms`` are
#: at most, the others at least. Issue 8: the first four; issue 18 (speed, second pass): the rest, and
#: ``ratio_pf8_full_over_veto`` raised from 45 to 100.
TARGETS = {
    "veto_end_to_end_fps": 500.0,
    "ratio_pf8_full_over_veto": 100.0,
    "batch1_latency_ms": 3.0,
    "default_end_to_end_fps": 1000.0,
    "ratio_pf8_full_over_default": 130.0,
    "ratio_pf8_full_over_default_cpu": 100.0,
    "ratio_pf8_full_over_veto_cpu": 100.0,
    "default_batch1_latency_ms": 2.0,
    "ratio_pf8_full_over_default_batch1": 50.0,
    "crop_map_ms": 0.1,
}


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def _row(name: str, s: dict[str, Any]) -> str:
    cpu = s.get("cpu_ms_per_frame")
    return (f"  {name:<44} {s['ms_per_frame']:>9.3f} {s['p10_ms']:>9.3f} {s['p90_ms']:>9.3f} "
            f"{s['fps']:>10.1f} {'' if cpu is None else f'{cpu:>9.3f}'}")

def summarize(result: dict[str, Any]) -> None:
    """The headline keys (issue 8) at the top level of the JSON."""
    nets = result.get("networks", {})
    paper = nets.get("paper", {})
    default = nets.get("default")
    e2e = paper.get("end_to_end", {})
    auto = paper.get("auto_backend")
    b1 = paper.get("backends", {}).get(auto, {}).get("batch1", {})
    pf8 = result.get("peakfinder8", {})
    veto_ms = e2e.get("ms_per_frame")
    result["veto_end_to_end_fps"] = e2e.get("fps")
    result["veto_backend"] = auto
    result["default_end_to_end_fps"] = (default or {}).get("end_to_end", {}).get("fps")
    result["default_network"] = default.get("architecture") if default else None
    result["batch1_latency_ms"] = b1.get("ms_per_frame")
    result["pf8_full_frame_ms"] = pf8.get("pf8_full_frame", {}).get("ms_per_frame")
    result["pf8_crop_ms"] = pf8.get("pf8_crop", {}).get("ms_per_frame")
    result["ratio_pf8_full_over_veto"] = (
        result["pf8_full_frame_ms"] / veto_ms if veto_ms and result["pf8_full_frame_ms"] else None
    )
    result["ratio_pf8_crop_over_veto"] = (
        result["pf8_crop_ms"] / veto_ms if veto_ms and result["pf8_crop_ms"] else None
    )
    _summarize_issue18(result)
    result["targets"] = {
        key: {"target": target, "measured": result.get(key),
              "met": None if result.get(key) is None else
              (result[key] <= target if key.endswith("_ms") else result[key] >= target)}
        for key, target in TARGETS.items()
    }

def _summarize_issue18(result: dict[str, Any]) -> None:
    """Issue 18's keys: the default network's ratios in wall and CPU time, its batch-1 latency, the crop map."""
    nets = result.get("networks", {})
    default = nets.get("default") or {}
    paper_e2e = nets.get("paper", {}).get("end_to_end", {})
    default_e2e = default.get("end_to_end", {})
    pf8 = result.get("peakfinder8", {}).get("pf8_full_frame", {})
    pf8_cpu = pf8.get("cpu_ms_per_frame")
    latency = default.get("batch1_latency", {})
    result["pf8_full_frame_cpu_ms"] = pf8_cpu
    result["default_end_to_end_ms"] = default_e2e.get("ms_per_frame")
    result["default_end_to_end_cpu_ms"] = default_e2e.get("cpu_ms_per_frame")
    result["veto_end_to_end_cpu_ms"] = paper_e2e.get("cpu_ms_per_frame")
    result["ratio_pf8_full_over_default"] = _ratio(result.get("pf8_full_frame_ms"), default_e2e.get("ms_per_frame"))
    result["ratio_pf8_full_over_default_cpu"] = _ratio(pf8_cpu, default_e2e.get("cpu_ms_per_frame"))
    result["ratio_pf8_full_over_veto_cpu"] = _ratio(pf8_cpu, paper_e2e.get("cpu_ms_per_frame"))
    result["default_batch1_latency_ms"] = latency.get("ms_per_frame")
    result["default_batch1_latency_p90_ms"] = latency.get("p90_ms")
    result["default_batch1_backend"] = latency.get("backend")
    result["ratio_pf8_full_over_default_batch1"] = _ratio(result.get("pf8_full_frame_ms"), latency.get("ms_per_frame"))
    result["default_batch1_latency_threads"] = latency.get("threads")
    all_threads = default.get("batch1_latency_all_threads", {})
    result["default_batch1_latency_all_threads_ms"] = all_threads.get("ms_per_frame")
    crop_map = result.get("crop_map", {})
    result["crop_map_ms"] = crop_map.get("from_slab", {}).get("ms_per_frame")
    result["crop_map_from_block_ms"] = crop_map.get("from_block", {}).get("ms_per_frame")


def print_report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"sfx-cnn-veto bench  ({m['date_utc']}; {m.get('cpu', '?')}, {m['cores_available']} cores; "
          f"load average {m['load_average_start'][0]:.2f} -> {m['load_average_end'][0]:.2f})")
    print(f"frames ({result['frames_source']}, {result.get('file_hits', '?')} of {result['file_frames']} with a crystal) "
          f"{result['frame_shape'][0]}x{result['frame_shape'][1]} float32 CXI (one chunk a frame), "
          f"crop {result['crop_shape'][0]}x{result['crop_shape'][1]}, {result['events']} events, "
          f"batch {result['batch_size']}{'  [--quick: rough figures]' if result['quick'] else ''}")
    print(f"  {'step':<44} {'ms/frame':>9} {'p10':>9} {'p90':>9} {'frames/s':>10} {'cpu ms':>9}")
    for name, s in result["reading"].items():
        print(_row(name, s))
    for name, s in result["normalize"].items():
        print(_row(name, s))
    for label, entry in result["networks"].items():
        if label != entry["architecture"]:
            label = f"{label} ({entry['architecture']})"
        for backend, res in entry["backends"].items():
            if "error" in res:
                print(f"  {label} CNN {backend}: not available ({res['error']})")
                continue
            print(_row(f"{label} CNN alone, {backend}, batch 1", res["batch1"]))
            print(_row(f"{label} CNN alone, {backend}, batch {res['batch_size']}", res[f"batch{res['batch_size']}"]))
        for key in ("batch1_latency", "batch1_latency_all_threads"):
            if key in entry:
                lat = entry[key]
                print(_row(f"{label} batch-1 latency, full frame ({lat['backend']}, {lat.get('threads', '?')} thread(s))",
                           lat))
        print(_row(f"{label} veto end to end ({entry['auto_backend']})", entry["end_to_end"]))
        if "end_to_end_keras" in entry:
            print(_row(f"{label} veto end to end (keras)", entry["end_to_end_keras"]))
    for name, s in result["peakfinder8"].items():
        if isinstance(s, dict):
            print(_row(f"{name} (OM, {s['mean_peaks']:.0f} peaks)", s))
        else:
            print(f"  peakfinder8: {s}")
    if "crop_map" in result:
        c = result["crop_map"]
        print(f"  crop map, {c['panels']} panels ({c['layout']}), slab {c['slab'][0]}x{c['slab'][1]}, "
              f"block {c['block'][0]}x{c['block'][1]}, {c['gap_fraction']:.1%} of the crop in gaps:")
        print(_row("crop-map gather from the raw slab", c["from_slab"]))
        print(_row("crop-map gather from the block read", c["from_block"]))
    if result.get("default_network") is None:
        print("  (no default architecture registered (name 'default', or a description starting 'default'): "
              "only the paper's network was measured)")
    if result.get("ratio_pf8_full_over_veto"):
        print(f"peakfinder8 / veto: full frame {result['ratio_pf8_full_over_veto']:.1f}x, "
              f"crop {result['ratio_pf8_crop_over_veto']:.1f}x (paper network end to end)")
    for key, text in (("ratio_pf8_full_over_veto_cpu", "paper network, CPU time"),
                      ("ratio_pf8_full_over_default", "default network, wall time"),
                      ("ratio_pf8_full_over_default_cpu", "default network, CPU time"),
                      ("ratio_pf8_full_over_default_batch1", "default network, batch-1 latency as OM runs it")):
        if result.get(key):
            print(f"peakfinder8 full frame / veto: {result[key]:.1f}x ({text})")
    if "memory" in result:
        for n, r in result["memory"].items():
            print(f"peak RSS, streaming {n} events: " + (f"{r['peak_rss_mib']} MiB ({r['seconds']:.1f} s)"
                                                        if "peak_rss_mib" in r else r.get("error", "?")))
    if "mpi" in result:
        for key, r in result["mpi"].items():
            if isinstance(r, dict):
                print(f"MPI {key}: " + (f"{r['fps']:.0f} frames/s ({r['events']} events)" if "fps" in r
                                        else r.get("error", "?")))
            elif key == "speedup_2_over_1":
                print(f"MPI speed-up, 2 ranks over 1: {r:.2f}x")
    if "filter_lst" in result:
        for key, r in result["filter_lst"].items():
            if isinstance(r, dict):
                shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "summary"}
                print(f"filter-lst {key}: {shown}")
    print("targets (issues 8 and 18, 2-core machine; load average "
          f"{m['load_average_start'][0]:.2f} -> {m['load_average_end'][0]:.2f}):")
    for key, t in result["targets"].items():
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        print(f"  {key:<36} {value:>10}  target {'<=' if key.endswith('_ms') else '>='} {t['target']:g}: {mark}")
