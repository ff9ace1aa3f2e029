"""The detector and the background: fixed per-run patterns, and per-frame noise.

:class:`DetectorModel` holds what is fixed for a run (background shapes from the
geometry, beamstop shadow, panel gaps and offsets, pixel gain map, hot and cold
pixels); :meth:`DetectorModel.read_out` turns an image of expected photons into
ADU: Poisson photon noise, gain, read noise, panel offsets with a per-frame
common-mode jitter, ADC rounding and saturation, then hot pixels and zingers.
The per-pixel noise loop is compiled with numba (a few ms for 700x700 on one core).
"""

from __future__ import annotations

import numpy as np

from sfx_cnn_veto.simulate.physics import Geometry

#: CXI-style mask bits (0 = good pixel)
MASK_GAP = 1
MASK_BEAMSTOP = 2
MASK_BAD_PIXEL = 4           #: hot or cold pixel found in a dark run (most of them, not all)
#: fraction of the hot and cold pixels that the run's mask knows about
KNOWN_BAD_FRACTION = 0.9


def _noise_kernel():
    import math

    try:
        import numba
    except ImportError as exc:  # pragma: no cover - numba is a dependency
        from sfx_cnn_veto.errors import MissingDependencyError

        raise MissingDependencyError("numba", purpose="the simulator's photon noise") from exc

    @numba.njit(inline="always")
    def splitmix(state):
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    @numba.njit(cache=True, nogil=True)
    def kernel(lam, explam, gain_map, panel_id, panel_offset, read_noise, saturation, seed, normal_table, out):
        # splitmix64: one 64-bit draw per pixel gives 16 bits for the read noise
        # (a 65536-entry table of normal quantiles, |z| <= 4.3) and 48 bits for
        # the photon count: exact Poisson by inversion below 10 photons, and
        # Hormann's transformed rejection (PTRS, as numpy uses) above.
        state = np.uint64(seed)
        golden = np.uint64(0x9E3779B97F4A7C15)
        mask16 = np.uint64(0xFFFF)
        s16 = np.uint64(16)
        s11 = np.uint64(11)
        inv48 = 1.0 / 281474976710656.0
        inv53 = 1.0 / 9007199254740992.0
        inv = np.empty(64)
        inv[0] = 0.0
        for j in range(1, 64):
            inv[j] = 1.0 / j
        n = lam.size
        lam_f = lam.ravel()
        explam_f = explam.ravel()
        gain_f = gain_map.ravel()
        pid_f = panel_id.ravel()
        out_f = out.ravel()
        for i in range(n):
            p = pid_f[i]
            if p < 0:
                out_f[i] = 0.0
                continue
            state += golden
            z = splitmix(state)
            noise = np.float64(normal_table[np.int64(z & mask16)])
            mu = np.float64(lam_f[i])
            if mu <= 0.0:
                k = 0.0
            elif mu < 10.0:
                # inversion; the first four terms without branches (most pixels)
                u = np.float64(z >> s16) * inv48
                p0 = np.float64(explam_f[i])
                p1 = p0 * mu
                p2 = p1 * mu * 0.5
                p3 = p2 * mu * (1.0 / 3.0)
                c1 = p0 + p1
                c2 = c1 + p2
                c3 = c2 + p3
                k = float((u > p0) + (u > c1) + (u > c2) + (u > c3))
                if u > c3:
                    prob = p3
                    cum = c3
                    kk = 3
                    while u > cum and kk < 63:
                        kk += 1
                        prob *= mu * inv[kk]
                        cum += prob
                    k = float(kk)
            else:
                slam = np.sqrt(mu)
                loglam = np.log(mu)
                b = 0.931 + 2.53 * slam
                a = -0.059 + 0.02483 * b
                invalpha = 1.1239 + 1.1328 / (b - 3.4)
                vr = 0.9277 - 3.6224 / (b - 2.0)
                while True:
                    state += golden
                    uu = np.float64(splitmix(state) >> s11) * inv53 - 0.5
                    state += golden
                    v = np.float64(splitmix(state) >> s11) * inv53
                    us = 0.5 - abs(uu)
                    k = np.floor((2.0 * a / us + b) * uu + mu + 0.43)
                    if us >= 0.07 and v <= vr:
                        break
                    if k < 0.0 or (us < 0.013 and v > us):
                        continue
                    if (np.log(v) + np.log(invalpha) - np.log(a / (us * us) + b)
                            <= -mu + k * loglam - math.lgamma(k + 1.0)):
                        break
            v = k * gain_f[i] + read_noise * noise + panel_offset[p]
            v = np.floor(v + 0.5)
            if v > saturation:
                v = saturation
            out_f[i] = v
        return out

    return kernel


_KERNEL = None
_NORMAL_TABLE = None


def normal_table() -> np.ndarray:
    """Quantiles of the standard normal at ``(i + 0.5) / 65536``, i = 0..65535."""
    global _NORMAL_TABLE
    if _NORMAL_TABLE is None:
        from scipy.special import ndtri

        _NORMAL_TABLE = ndtri((np.arange(65536) + 0.5) / 65536.0).astype(np.float32)
    return _NORMAL_TABLE


def noise_kernel():
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _noise_kernel()
    return _KERNEL


class DetectorModel:
    """Everything about the detector and background that is fixed during one run.

    Parameters
    ----------
    run : RunConfig
    rng : numpy Generator for the run's fixed patterns (hot pixels, offsets, gain map)
    """

    def __init__(self, run, rng: np.random.Generator) -> None:
        det = run.detector
        self.run = run
        self.shape = tuple(det.shape)
        height, width = self.shape
        self.geometry = Geometry(
            distance_m=det.distance_mm * 1e-3,
            pixel_size_m=det.pixel_size_um * 1e-6,
            wavelength_a=run.beam.wavelength_a,
            beam_center=run.beam_center,
            shape=self.shape,
        )
        # panels and gaps
        self.panel_id = np.full(self.shape, -1, np.int16)
        rows = _split(height, det.panels[0], det.gap_px)
        cols = _split(width, det.panels[1], det.gap_px)
        n = 0
        for r0, r1 in rows:
            for c0, c1 in cols:
                self.panel_id[r0:r1, c0:c1] = n
                n += 1
        self.n_panels = n
        self.panel_offsets = rng.normal(0.0, det.panel_offset_adu, n)
        self.gain_map = (run.adu_per_photon * (1.0 + det.gain_spread * rng.standard_normal(self.shape))
                         ).astype(np.float32)
        # beamstop: a disc and its holding arm, which leaves towards the upper right at 30 degrees
        fs0, ss0 = run.beam_center
        x = np.arange(width)[None, :] - fs0
        y = np.arange(height)[:, None] - ss0
        r = np.hypot(x, y)
        along = x * np.cos(np.radians(30.0)) - y * np.sin(np.radians(30.0))
        across = x * np.sin(np.radians(30.0)) + y * np.cos(np.radians(30.0))
        shadow = (r < det.beamstop_radius_px) | ((np.abs(across) < det.beamstop_radius_px * 0.3) & (along > 0))
        self.beamstop = shadow
        transmission = np.where(shadow, det.beamstop_transmission, 1.0)
        # background shapes, in expected photons per pixel at level 1
        q = self.geometry.pixel_resolution()            # 1/d, 1/Angstrom
        solid = (np.cos(np.arctan2(r * det.pixel_size_um * 1e-6, det.distance_mm * 1e-3)) ** 3)
        # air and solvent diffuse scatter: strongest near the beam, falling with angle
        air = 0.05 + 0.35 / (1.0 + (q / 0.04) ** 2) + 0.10 * np.exp(-q / 0.25)
        # water ring: liquid water's maximum near 1/d = 0.32 1/A (3.1 A), a shoulder near 0.45
        water = 1.2 * np.exp(-0.5 * ((q - 0.32) / 0.045) ** 2) + 0.4 * np.exp(-0.5 * ((q - 0.46) / 0.06) ** 2)
        # parasitic scatter around the beamstop edge
        halo = 3.0 * np.exp(-np.maximum(r - det.beamstop_radius_px, 0) / 4.0) * ~shadow
        self.air_pattern = (run.background * (air * solid + halo) * transmission).astype(np.float32)
        self.water_pattern = (water * solid * transmission).astype(np.float32)
        # hot ("salt") and cold ("pepper") pixels, fixed for the run
        active = np.flatnonzero(self.panel_id.ravel() >= 0)
        n_bad = rng.binomial(len(active), run.hot_pixel_density)
        flat = np.sort(rng.choice(active, size=n_bad, replace=False))
        hot = rng.random(n_bad) < 0.8
        self.hot_index = flat[hot]
        self.hot_level = (det.adu_per_photon * (15.0 + rng.lognormal(np.log(45.0), 0.8, hot.sum()))
                          ).astype(np.float32)
        self.cold_index = flat[~hot]
        self.cold_level = (-rng.uniform(20, 60, (~hot).sum()) * det.adu_per_photon / 8.0).astype(np.float32)
        self.mask = np.zeros(self.shape, np.uint16)
        self.mask[self.panel_id < 0] |= MASK_GAP
        self.mask[shadow] |= MASK_BEAMSTOP
        known = flat[rng.random(n_bad) < KNOWN_BAD_FRACTION]
        self.mask.ravel()[known] |= MASK_BAD_PIXEL
        self.read_noise = float(det.read_noise_adu)
        self.saturation = float(det.saturation_adu)
        self.common_mode = float(det.common_mode_adu)

    def background(self, air_scale: float, water_scale: float) -> np.ndarray:
        """Expected background photons per pixel for one frame (float32)."""
        return self.air_pattern * np.float32(air_scale) + self.water_pattern * np.float32(water_scale)

    def noise_sigma_photons(self, lam: np.ndarray) -> np.ndarray:
        """Standard deviation of a pixel's reading, in photons, for expected photons ``lam``."""
        rn = self.read_noise / self.run.adu_per_photon
        return np.sqrt(lam + rn * rn)

    def read_out(self, lam: np.ndarray, rng: np.random.Generator, zinger_rate: float) -> tuple[np.ndarray, int]:
        """ADU frame (float32) from expected photons ``lam``; returns ``(frame, zingers)``."""
        offsets = self.panel_offsets + rng.normal(0.0, self.common_mode, self.n_panels)
        seed = int(rng.integers(0, 2**63 - 1))
        out = np.empty(self.shape, np.float32)
        lam = np.ascontiguousarray(lam, dtype=np.float32)
        noise_kernel()(lam, np.exp(-lam), self.gain_map, self.panel_id,
                       offsets.astype(np.float64), self.read_noise, self.saturation, seed, normal_table(), out)
        flat = out.ravel()
        if len(self.hot_index):
            flat[self.hot_index] = np.minimum(
                self.hot_level * rng.lognormal(0.0, 0.15, len(self.hot_index)).astype(np.float32),
                self.saturation).round()
        if len(self.cold_index):
            flat[self.cold_index] = self.cold_level.round()
        # zingers: cosmic rays and stray hits, single pixels or short tracks
        n_zingers = int(rng.poisson(zinger_rate))
        height, width = self.shape
        for _ in range(n_zingers):
            r0, c0 = int(rng.integers(0, height)), int(rng.integers(0, width))
            length = 1 if rng.random() < 0.7 else int(rng.integers(2, 6))
            dr, dc = (0, 1) if rng.random() < 0.5 else (1, 0)
            for step in range(length):
                r, c = r0 + dr * step, c0 + dc * step
                if r < height and c < width and self.panel_id[r, c] >= 0:
                    out[r, c] = min(out[r, c] + round(rng.uniform(10, 200) * self.run.adu_per_photon),
                                    self.saturation)
        return out, n_zingers


def _split(length: int, parts: int, gap: int) -> list[tuple[int, int]]:
    """``parts`` equal panels along ``length`` pixels with ``gap`` dead pixels between them."""
    usable = length - gap * (parts - 1)
    edges = np.linspace(0, usable, parts + 1).round().astype(int)
    return [(int(edges[i]) + gap * i, int(edges[i + 1]) + gap * i) for i in range(parts)]
