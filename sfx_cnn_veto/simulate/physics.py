"""Kinematic diffraction from small crystals: lattice, Ewald sphere, partiality, Wilson intensities.

Conventions: the beam travels along +z; the sample sits at the origin; the
detector is the plane ``z = distance``, fast scan along +x, slow scan along +y
(CrystFEL's ``fs = +1.0x``, ``ss = +1.0y``). Reciprocal vectors are in 1/Angstrom
without the 2 pi, so the Ewald sphere has radius ``1/wavelength`` and a
reflection ``g`` is in the diffracting condition when ``|g + k0| = |k0|`` with
``k0 = (0, 0, 1/wavelength)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from sfx_cnn_veto.errors import ConfigError


def reciprocal_basis(cell) -> np.ndarray:
    """The matrix ``B`` (3x3, 1/Angstrom) whose columns are a*, b*, c* in a crystal-fixed frame.

    ``B @ (h, k, l)`` is the reciprocal-lattice vector of reflection ``hkl``
    (the usual Busing-Levy construction: a* along x, b* in the xy plane).
    """
    a, b, c, alpha, beta, gamma = (float(v) for v in cell)
    al, be, ga = np.radians([alpha, beta, gamma])
    # direct basis: a along x, b in xy plane
    va = np.array([a, 0.0, 0.0])
    vb = np.array([b * np.cos(ga), b * np.sin(ga), 0.0])
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cz = np.sqrt(max(c * c - cx * cx - cy * cy, 0.0))
    if cz <= 0:
        raise ConfigError(f"crystal.cell {tuple(cell)} is not a valid unit cell")
    vc = np.array([cx, cy, cz])
    direct = np.stack([va, vb, vc], axis=1)          # columns a, b, c
    return np.linalg.inv(direct).T                   # columns a*, b*, c*


def _allowed(h: np.ndarray, k: np.ndarray, l: np.ndarray, space_group: str) -> np.ndarray:
    """Reflection conditions (centring and screw axes) of the supported space groups."""
    sg = space_group.replace(" ", "").replace("_", "").upper()
    ok = np.ones(h.shape, bool)
    if sg == "P1":
        return ok
    if sg == "I4122":        # streptavidin: I centring; 00l: l=4n; hhl: 2h+l=4n
        ok &= (h + k + l) % 2 == 0
        ok &= ~((h == 0) & (k == 0)) | (l % 4 == 0)
        ok &= ~(h == k) | ((2 * h + l) % 4 == 0)
        return ok
    if sg in ("P43212", "P41212"):   # lysozyme: 00l: l=4n; h00: h=2n
        ok &= ~((h == 0) & (k == 0)) | (l % 4 == 0)
        ok &= ~((k == 0) & (l == 0)) | (h % 2 == 0)
        ok &= ~((h == 0) & (l == 0)) | (k % 2 == 0)
        return ok
    if sg == "P212121":
        ok &= ~((k == 0) & (l == 0)) | (h % 2 == 0)
        ok &= ~((h == 0) & (l == 0)) | (k % 2 == 0)
        ok &= ~((h == 0) & (k == 0)) | (l % 2 == 0)
        return ok
    raise ConfigError(f"crystal.space_group {space_group!r} is not supported "
                      "(supported: P1, I4122, P43212, P41212, P212121)")


@dataclass(frozen=True)
class Structure:
    """The reflections of one crystal form, with their Wilson-distributed intensities.

    Attributes
    ----------
    hkl : (N, 3) int array
    g0 : (N, 3) float array, ``B @ hkl`` (crystal frame, 1/Angstrom)
    intensity : (N,) float array, ``|F|^2`` relative to the mean (exponential, mean 1)
    """

    hkl: np.ndarray
    g0: np.ndarray
    intensity: np.ndarray
    s2: np.ndarray = None   #: |g0|^2, (1/d)^2
    g0_t: np.ndarray = None  #: g0 transposed, contiguous (3, N)

    def __post_init__(self) -> None:
        if self.s2 is None:
            object.__setattr__(self, "s2", np.einsum("ij,ij->i", self.g0, self.g0))
        if self.g0_t is None:
            object.__setattr__(self, "g0_t", np.ascontiguousarray(self.g0.T))


@functools.lru_cache(maxsize=8)
def make_structure(cell: tuple, space_group: str, d_min: float, seed: int) -> Structure:
    """Every allowed reflection with ``d >= d_min``; ``|F|^2`` drawn once from Wilson's
    acentric distribution (exponential), so all crystals of an experiment share a structure."""
    basis = reciprocal_basis(cell)
    direct = np.linalg.inv(basis.T)
    lengths = np.linalg.norm(direct, axis=0)
    hmax = [int(np.ceil(length / d_min)) for length in lengths]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in hmax], indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1)
    g0 = hkl @ basis.T
    s = np.linalg.norm(g0, axis=1)
    keep = (s > 0) & (s <= 1.0 / d_min) & _allowed(hkl[:, 0], hkl[:, 1], hkl[:, 2], space_group)
    hkl, g0 = hkl[keep], g0[keep]
    rng = np.random.default_rng(seed)
    intensity = rng.exponential(1.0, len(hkl))
    # Friedel's law: I(hkl) = I(-h-k-l)
    key = {tuple(r): i for i, r in enumerate(hkl)}
    mate = np.array([key[(-a, -b, -c)] for a, b, c in hkl])
    intensity = np.where(np.arange(len(hkl)) < mate, intensity, intensity[mate])
    return Structure(hkl=hkl.astype(np.int32), g0=g0.astype(np.float64), intensity=intensity)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (unit quaternion from four normals)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@dataclass(frozen=True)
class Geometry:
    """Where the detector is: distance (m), pixel size (m), wavelength (Angstrom), beam centre (fs, ss)."""

    distance_m: float
    pixel_size_m: float
    wavelength_a: float
    beam_center: tuple[float, float]
    shape: tuple[int, int]

    def pixel_resolution(self) -> np.ndarray:
        """``1/d`` (1/Angstrom) at every pixel centre, shape ``self.shape``."""
        height, width = self.shape
        x = (np.arange(width) - self.beam_center[0]) * self.pixel_size_m
        y = (np.arange(height) - self.beam_center[1]) * self.pixel_size_m
        r = np.hypot(x[None, :], y[:, None])
        two_theta = np.arctan2(r, self.distance_m)
        return 2.0 * np.sin(two_theta / 2.0) / self.wavelength_a

    def radius_px(self) -> np.ndarray:
        height, width = self.shape
        x = np.arange(width) - self.beam_center[0]
        y = np.arange(height) - self.beam_center[1]
        return np.hypot(x[None, :], y[:, None])


@dataclass
class Reflections:
    """Reflections of one crystal in one shot that reach the detector."""

    hkl: np.ndarray          #: (M, 3)
    fs: np.ndarray           #: (M,) fast-scan position, pixel-centre coordinates
    ss: np.ndarray           #: (M,) slow-scan position
    resolution: np.ndarray   #: (M,) 1/d, 1/Angstrom
    partiality: np.ndarray   #: (M,) 0..1
    photons: np.ndarray      #: (M,) expected photons of the whole spot


def predict_reflections(
    structure: Structure,
    rotation: np.ndarray,
    geometry: Geometry,
    *,
    mosaicity_deg: float,
    bandwidth: float,
    size_um: float,
    wilson_b: float,
    photons_per_unit: float,
    min_partiality: float = 1e-3,
) -> Reflections:
    """The Ewald construction for one still shot of one crystal.

    A reflection ``g = R @ B @ hkl`` has excitation error
    ``e = |g + k0| - |k0|``; its partiality is ``exp(-e^2 / (2 sigma^2))`` with
    ``sigma^2 = (1/size)^2 + (|g| eta)^2 + (|g|^2 lambda bandwidth / 2)^2``
    (crystal size, mosaic spread ``eta`` and the SASE bandwidth). The diffracted
    ray ``k = g + k0`` meets the detector plane at ``distance * (kx, ky) / kz``.
    Expected photons: ``photons_per_unit * |F|^2 * exp(-B |g|^2 / 2) * partiality *
    polarisation`` (horizontal polarisation).
    """
    wavelength = geometry.wavelength_a
    k0 = 1.0 / wavelength
    # only g_z matters for the excitation error: |g + k0|^2 = |g|^2 + 2 k0 g_z + k0^2,
    # and |g|^2 does not change with the rotation; the full g only for the few near the sphere
    s2 = structure.s2
    gz = rotation[2] @ structure.g0_t
    k_len = np.sqrt(s2 + 2.0 * k0 * gz + k0 * k0)
    exc = k_len - k0
    eta = np.radians(mosaicity_deg)
    sigma2 = (1.0 / (size_um * 1e4)) ** 2 + s2 * eta * eta + (s2 * wavelength * bandwidth / 2.0) ** 2
    near = (exc * exc < 2.0 * np.log(1.0 / min_partiality) * sigma2) & (gz + k0 > 0)
    keep = np.flatnonzero(near)
    g = structure.g0[keep] @ rotation.T
    kz = g[:, 2] + k0
    k_len, s2 = k_len[keep], s2[keep]
    partiality = np.exp(-0.5 * exc[keep] ** 2 / sigma2[keep])
    # direction of the diffracted beam, then the detector plane
    x = geometry.distance_m * g[:, 0] / kz
    y = geometry.distance_m * g[:, 1] / kz
    fs = geometry.beam_center[0] + x / geometry.pixel_size_m
    ss = geometry.beam_center[1] + y / geometry.pixel_size_m
    height, width = geometry.shape
    on = (fs > -2) & (fs < width + 1) & (ss > -2) & (ss < height + 1)
    sin_2theta_x = g[:, 0] / k_len                     # x component of the unit diffracted direction
    polarisation = 1.0 - sin_2theta_x ** 2
    photons = (photons_per_unit * structure.intensity[keep] * np.exp(-0.5 * wilson_b * s2)
               * partiality * polarisation)
    return Reflections(hkl=structure.hkl[keep][on], fs=fs[on], ss=ss[on], resolution=np.sqrt(s2[on]),
                       partiality=partiality[on], photons=photons[on])


def render_spots(image: np.ndarray, fs: np.ndarray, ss: np.ndarray, photons: np.ndarray,
                 sigma_px: float, *, half: int = 3) -> None:
    """Add Gaussian spots (integrated over each pixel) to ``image`` in place.

    Each spot spreads ``photons`` over a ``(2 half + 1)^2`` patch around
    ``(fs, ss)`` with a Gaussian of ``sigma_px`` pixels (1-3 pixels wide).
    """
    from scipy.special import erf

    if len(fs) == 0:
        return
    height, width = image.shape
    ci = np.rint(fs).astype(np.int64)
    cj = np.rint(ss).astype(np.int64)
    offsets = np.arange(-half, half + 1)
    edges = np.arange(-half, half + 2) - 0.5          # pixel edges relative to the centre pixel
    scale = 1.0 / (np.sqrt(2.0) * sigma_px)
    cdf_x = 0.5 * (1 + erf(((ci - fs)[:, None] + edges[None, :]) * scale))
    cdf_y = 0.5 * (1 + erf(((cj - ss)[:, None] + edges[None, :]) * scale))
    wx = np.diff(cdf_x, axis=1)                        # (M, P)
    wy = np.diff(cdf_y, axis=1)
    weights = photons[:, None, None] * wy[:, :, None] * wx[:, None, :]
    cols = ci[:, None, None] + offsets[None, None, :]
    rows = cj[:, None, None] + offsets[None, :, None]
    cols, rows = np.broadcast_to(cols, weights.shape), np.broadcast_to(rows, weights.shape)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    flat = rows[inside] * width + cols[inside]
    target = image.reshape(-1)
    if not np.shares_memory(target, image):
        raise ValueError("render_spots needs a contiguous image")
    np.add.at(target, flat, weights[inside].astype(image.dtype))


def rotation_for_bragg(structure_basis: np.ndarray, hkl, wavelength_a: float, azimuth_deg: float = 0.0):
    """A rotation that puts reflection ``hkl`` exactly on the Ewald sphere, its ray
    leaving at azimuth ``azimuth_deg`` (0 = +x). Used to check the geometry."""
    g0 = structure_basis @ np.asarray(hkl, float)
    s = np.linalg.norm(g0)
    theta = np.arcsin(s * wavelength_a / 2.0)
    phi = np.radians(azimuth_deg)
    # wanted g: in the reflecting position, g = s (cos th cos phi, cos th sin phi, -sin th)
    target = s * np.array([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), -np.sin(theta)])
    return _rotation_between(g0 / s, target / s)


def _rotation_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector ``u`` to unit vector ``v`` (Rodrigues)."""
    axis = np.cross(u, v)
    sin = np.linalg.norm(axis)
    cos = float(np.dot(u, v))
    if sin < 1e-12:
        if cos > 0:
            return np.eye(3)
        perp = np.cross(u, [1.0, 0.0, 0.0])
        if np.linalg.norm(perp) < 1e-6:
            perp = np.cross(u, [0.0, 1.0, 0.0])
        perp /= np.linalg.norm(perp)
        return 2 * np.outer(perp, perp) - np.eye(3)
    axis /= sin
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + sin * k + (1 - cos) * k @ k
