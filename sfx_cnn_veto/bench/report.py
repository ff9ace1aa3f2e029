"""The bench's result: the headline keys of the JSON and the printed table."""

from __future__ import annotations

from typing import Any

#: The issue's targets on the 2-core machine (printed beside the figures).
TARGETS = {
    "veto_end_to_end_fps": 500.0,
    "ratio_pf8_full_over_veto": 45.0,
    "batch1_latency_ms": 3.0,
    "default_end_to_end_fps": 1000.0,
}


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
    result["targets"] = {
        key: {"target": target, "measured": result.get(key),
              "met": None if result.get(key) is None else
              (result[key] <= target if key.endswith("_ms") else result[key] >= target)}
        for key, target in TARGETS.items()
    }

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
        print(_row(f"{label} veto end to end ({entry['auto_backend']})", entry["end_to_end"]))
        if "end_to_end_keras" in entry:
            print(_row(f"{label} veto end to end (keras)", entry["end_to_end_keras"]))
    for name, s in result["peakfinder8"].items():
        if isinstance(s, dict):
            print(_row(f"{name} (OM, {s['mean_peaks']:.0f} peaks)", s))
        else:
            print(f"  peakfinder8: {s}")
    if result.get("default_network") is None:
        print("  (no default architecture registered (name 'default', or a description starting 'default'): "
              "only the paper's network was measured)")
    if result.get("ratio_pf8_full_over_veto"):
        print(f"peakfinder8 / veto: full frame {result['ratio_pf8_full_over_veto']:.1f}x, "
              f"crop {result['ratio_pf8_crop_over_veto']:.1f}x (paper network end to end)")
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
    print("targets (issue 8, 2-core machine):")
    for key, t in result["targets"].items():
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        print(f"  {key:<28} {value:>10}  target {'<=' if key.endswith('_ms') else '>='} {t['target']:g}: {mark}")
