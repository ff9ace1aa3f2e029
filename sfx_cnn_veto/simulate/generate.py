"""Frames of one run: which frames hold crystals, how strong, and their read-out.

``simulate_run(run, seed, n_frames)`` yields ``(frame, truth)`` pairs; frame
``i`` depends only on ``(seed, i)``, so any frame can be regenerated alone
(``simulate_frame``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from sfx_cnn_veto.simulate.detector import DetectorModel
from sfx_cnn_veto.simulate.physics import make_structure, predict_reflections, random_rotation, render_spots
from sfx_cnn_veto.simulate.runs import RunConfig

#: The CNN's crop (the paper's 350x350 centre window), used for ``n_spots``.
CROP_SHAPE = (350, 350)
#: A reflection counts in ``n_spots`` when its brightest pixel stands this many
#: noise sigmas above the background there.
SPOT_SNR = 5.0

TRUTH_FIELDS = ("event", "crystal", "n_crystals", "strength", "n_spots", "n_spots_frame",
                "strong_background", "pulse", "background", "water_ring", "n_zingers")


class RunSimulator:
    """Holds a run's fixed state (detector patterns, structure); makes frames on demand."""

    def __init__(self, run: RunConfig, seed: int) -> None:
        self.run = run
        self.seed = int(seed)
        fixed_rng = np.random.default_rng([self.seed, 0xF1ED])
        self.detector = DetectorModel(run, fixed_rng)
        c = run.crystal
        self.structure = make_structure(tuple(c.cell), c.space_group, float(c.d_min), int(c.structure_seed))
        height, width = self.detector.shape
        # the network's centre crop (the whole frame if the frame is smaller)
        top, left = max((height - CROP_SHAPE[0]) // 2, 0), max((width - CROP_SHAPE[1]) // 2, 0)
        self.crop = (slice(top, min(top + CROP_SHAPE[0], height)), slice(left, min(left + CROP_SHAPE[1], width)))

    def frame(self, index: int) -> tuple[np.ndarray, dict]:
        """Frame ``index`` of the run (float32 ADU) and its truth record."""
        run = self.run
        rng = np.random.default_rng([self.seed, int(index)])
        pulse = float(max(rng.normal(1.0, run.beam.pulse_energy_jitter), 0.2))
        n_crystals = 0
        if rng.random() < run.hit_rate:
            n_crystals = 1
            if rng.random() < run.multi_crystal_fraction:
                n_crystals = 2 if rng.random() < 0.7 else 3
        # background: the jet's scatter varies shot to shot; some misses are splashes
        strong = n_crystals == 0 and rng.random() < run.strong_background_fraction
        air_scale = pulse * float(rng.lognormal(0.0, 0.2))
        water_scale = pulse * run.water_ring * float(rng.lognormal(0.0, 0.25))
        if strong:
            boost = float(rng.uniform(3.0, 8.0))
            air_scale *= boost
            water_scale *= boost
        lam = self.detector.background(air_scale, water_scale)
        background = lam.copy() if n_crystals else lam
        spot_r, spot_c, spot_peak = [], [], []
        strengths = []
        c = run.crystal
        for _ in range(n_crystals):
            strength = float(run.strength * rng.lognormal(0.0, run.strength_spread)) if run.strength > 0 else 0.0
            strengths.append(strength)
            size = float(np.exp(rng.uniform(np.log(c.size_um[0]), np.log(c.size_um[1]))))
            sigma_px = float(rng.uniform(*c.spot_sigma_px))
            refl = predict_reflections(
                self.structure, random_rotation(rng), self.detector.geometry,
                mosaicity_deg=c.mosaicity_deg, bandwidth=run.beam.bandwidth, size_um=size,
                wilson_b=c.wilson_b, photons_per_unit=c.photons_per_unit * strength * pulse,
            )
            bright = refl.photons > 0.05
            fs, ss, photons = refl.fs[bright], refl.ss[bright], refl.photons[bright]
            render_spots(lam, fs, ss, photons, sigma_px)
            # brightest pixel of a centred spot: photons times the central pixel's share
            share = _central_share(sigma_px)
            spot_c.append(fs)
            spot_r.append(ss)
            spot_peak.append(photons * share)
        n_spots = n_spots_frame = 0
        if spot_r:
            fs = np.concatenate(spot_c)
            ss = np.concatenate(spot_r)
            peak = np.concatenate(spot_peak)
            height, width = self.detector.shape
            ci = np.clip(np.rint(fs).astype(int), 0, width - 1)
            ri = np.clip(np.rint(ss).astype(int), 0, height - 1)
            good = self.detector.mask[ri, ci] == 0
            bg = background[ri, ci]
            sigma = self.detector.noise_sigma_photons(bg)
            above = good & (peak > SPOT_SNR * sigma)
            in_crop = ((ri >= self.crop[0].start) & (ri < self.crop[0].stop)
                       & (ci >= self.crop[1].start) & (ci < self.crop[1].stop))
            n_spots_frame = int(above.sum())
            n_spots = int((above & in_crop).sum())
        frame, n_zingers = self.detector.read_out(lam, rng, run.zinger_rate)
        truth = {
            "event": int(index),
            "crystal": int(n_crystals > 0),
            "n_crystals": n_crystals,
            "strength": round(float(sum(strengths)), 4),
            "n_spots": n_spots,
            "n_spots_frame": n_spots_frame,
            "strong_background": int(strong),
            "pulse": round(pulse, 4),
            "background": round(air_scale * run.background, 4),   # air/solvent scatter level (1 = nominal)
            "water_ring": round(water_scale, 4),                   # water ring level (1 = nominal)
            "n_zingers": n_zingers,
        }
        return frame, truth


def _central_share(sigma_px: float) -> float:
    from math import erf, sqrt

    one_d = erf(0.5 / (sqrt(2.0) * sigma_px))
    return one_d * one_d


def simulate_frame(run: RunConfig, seed: int, index: int) -> tuple[np.ndarray, dict]:
    """Frame ``index`` of a run alone (builds the run's fixed state: use :class:`RunSimulator` for many)."""
    return RunSimulator(run, seed).frame(index)


def simulate_run(run: RunConfig, seed: int, n_frames: int, *, start: int = 0) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(frame, truth)`` for frames ``start .. start + n_frames - 1`` of ``run``.

    ``frame`` is a float32 2-D array in ADU; ``truth`` a dict with
    :data:`TRUTH_FIELDS` (``crystal`` 0/1, ``n_crystals``, ``strength``,
    ``n_spots`` above noise in the central 350x350 crop, ...). ``seed`` is the
    run's seed (``Experiment.run_seed(run)`` derives it from the master seed).
    """
    sim = RunSimulator(run, seed)
    for index in range(start, start + int(n_frames)):
        yield sim.frame(index)
