"""Benchmark and sanity check of the simulator (prints figures; not a test).

    python examples/simulate/simulate_bench.py [--frames 200] [--runs run90,run100] [--peakfinder8]

Prints frames/s of generation alone (and of generation + writing the CXI file),
and, with ``--peakfinder8``, the distribution of OM's peakfinder8 peak counts
for crystal and no-crystal frames of each run (the paper's labels: < 2 peaks
miss, > 10 hit), on the whole frame and on the 350x350 crop.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sfx_cnn_veto.simulate import RunSimulator, default_experiment, write_run  # noqa: E402

PF8 = {"max_num_peaks": 2048, "adc_threshold": 40.0, "minimum_snr": 5.0, "min_pixel_count": 2,
       "max_pixel_count": 40, "local_bg_radius": 3, "min_res": 0, "max_res": 10000}


def peakfinder(shape, mask, center, params):
    import h5py
    from om.algorithms.crystallography import Peakfinder8PeakDetection

    height, width = shape
    y, x = np.indices(shape)
    radius = np.hypot(x - center[0], y - center[1]).astype(np.float32)
    tmp = tempfile.NamedTemporaryFile(suffix=".h5", delete=False)
    tmp.close()
    with h5py.File(tmp.name, "w") as f:
        f["mask"] = (mask == 0).astype(np.int8)
    return Peakfinder8PeakDetection(
        radius_pixel_map=radius,
        layout_info={"asic_nx": width, "asic_ny": height, "nasics_x": 1, "nasics_y": 1},
        crystallography_parameters=dict(params, bad_pixel_map_filename=tmp.name, bad_pixel_map_hdf5_path="/mask"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--runs", default="run90")
    parser.add_argument("--experiment", default="streptavidin")
    parser.add_argument("--peakfinder8", action="store_true")
    parser.add_argument("--write", action="store_true", help="also time writing the CXI file (lz4)")
    args = parser.parse_args()
    exp = default_experiment(args.experiment)
    for name in args.runs.split(","):
        run = exp.run(name)
        seed = exp.run_seed(run)
        sim = RunSimulator(run, seed)
        sim.frame(0)  # compile and warm up
        wall, cpu = time.perf_counter(), time.process_time()
        frames, truths = [], []
        for i in range(args.frames):
            frame, truth = sim.frame(i)
            truths.append(truth)
            if args.peakfinder8:
                frames.append(frame)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{name}: generated {args.frames} frames {run.detector.shape[0]}x{run.detector.shape[1]}: "
              f"{args.frames / wall:.1f} frames/s wall, {args.frames / cpu:.1f} frames/s CPU time "
              f"(load average {os.getloadavg()[0]:.2f})")
        if args.write:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                write_run(tmp, run, seed, args.frames)
                dt = time.perf_counter() - start
                size = os.path.getsize(os.path.join(tmp, f"{name}.cxi")) / args.frames / 1e6
                print(f"{name}: generated + written (lz4): {args.frames / dt:.1f} frames/s, {size:.2f} MB/frame")
        crystal = np.array([t["crystal"] for t in truths], bool)
        print(f"{name}: crystal fraction {crystal.mean():.3f} (setting {run.hit_rate}); "
              f"n_spots in crop of crystal frames: median {np.median([t['n_spots'] for t in truths if t['crystal']] or [0]):.0f}")
        if args.peakfinder8:
            det = sim.detector
            full = peakfinder(det.shape, det.mask, run.beam_center, PF8)
            rows, cols = sim.crop
            crop_center = (run.beam_center[0] - cols.start, run.beam_center[1] - rows.start)
            crop = peakfinder((rows.stop - rows.start, cols.stop - cols.start), det.mask[rows, cols], crop_center, PF8)
            start = time.perf_counter()
            n_full = np.array([full.find_peaks(data=f)["num_peaks"] for f in frames])
            t_full = (time.perf_counter() - start) / len(frames) * 1e3
            n_crop = np.array([crop.find_peaks(data=np.ascontiguousarray(f[rows, cols]))["num_peaks"]
                               for f in frames])
            for label, counts in (("frame", n_full), ("crop", n_crop)):
                for what, sel in (("crystal", crystal), ("no crystal", ~crystal)):
                    c = counts[sel]
                    if len(c) == 0:
                        continue
                    print(f"  peakfinder8 {label:5s} {what:10s}: n={len(c):4d} median {np.median(c):6.1f} "
                          f"p5 {np.percentile(c, 5):6.1f} p95 {np.percentile(c, 95):6.1f}  "
                          f"<2: {np.mean(c < 2):.2f}  2-10: {np.mean((c >= 2) & (c <= 10)):.2f}  >10: {np.mean(c > 10):.2f}")
            strong = np.array([t["strong_background"] for t in truths], bool)
            if strong.any():
                print(f"  strong-background misses: {strong.sum()}, peakfinder8 frame counts {n_full[strong].tolist()[:12]}")
            print(f"  (peakfinder8 on the whole frame: {t_full:.1f} ms/frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
