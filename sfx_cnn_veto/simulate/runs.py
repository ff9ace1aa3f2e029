"""Experiment and run configurations: frozen dataclasses, loaded from YAML.

An experiment YAML has a few groups that every run shares (``detector``,
``beam``, ``crystal``) and a ``runs`` mapping of run name to the run's
conditions; a run may also override a few geometry values
(``detector_distance_mm``, ``photon_energy_ev``, ``beam_center_offset_px``,
``gain``). Unknown keys are refused with their name and the allowed ones.

Example::

    name: streptavidin
    seed: 2017
    frames_per_run: 300
    detector: {shape: [700, 700], distance_mm: 80.0}
    runs:
      run90: {role: train, hit_rate: 0.3}
      run95: {role: validation, gain: 2.0}
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from sfx_cnn_veto.errors import ConfigError

#: Experiments shipped in ``sfx_cnn_veto/data/experiments/``.
DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "experiments")

H_C_EV_ANGSTROM = 12398.419843320026  # h c in eV * Angstrom


@dataclass(frozen=True)
class DetectorConfig:
    """A CSPAD-like detector, seen as one panel with gaps (lengths in mm, values in ADU)."""

    shape: tuple[int, int] = (700, 700)          #: (slow scan, fast scan) pixels
    pixel_size_um: float = 110.0
    distance_mm: float = 80.0
    panels: tuple[int, int] = (4, 4)              #: panel grid (rows, columns)
    gap_px: int = 4                               #: dead pixels between panels
    adu_per_photon: float = 8.0
    gain_spread: float = 0.03                     #: pixel-to-pixel gain variation (fraction, fixed per run)
    read_noise_adu: float = 2.5
    panel_offset_adu: float = 2.0                 #: per-panel offset residual (fixed per run), sigma
    common_mode_adu: float = 1.0                  #: per-panel offset jitter per frame, sigma
    saturation_adu: float = 14000.0
    beamstop_radius_px: float = 12.0
    beamstop_transmission: float = 0.02

    def __post_init__(self) -> None:
        _positive(self, "pixel_size_um", "distance_mm", "adu_per_photon", "saturation_adu")
        if len(self.shape) != 2 or min(self.shape) < 64:
            raise ConfigError(f"detector.shape: expected two sizes of at least 64 pixels, got {self.shape}")
        if len(self.panels) != 2 or min(self.panels) < 1:
            raise ConfigError(f"detector.panels: expected [rows, columns] >= 1, got {self.panels}")


@dataclass(frozen=True)
class BeamConfig:
    """The X-ray pulses."""

    photon_energy_ev: float = 9500.0
    bandwidth: float = 0.002                      #: relative FWHM-ish spread of wavelength (SASE)
    pulse_energy_jitter: float = 0.15             #: relative sigma of pulse-to-pulse intensity

    def __post_init__(self) -> None:
        _positive(self, "photon_energy_ev")

    @property
    def wavelength_a(self) -> float:
        return H_C_EV_ANGSTROM / self.photon_energy_ev


@dataclass(frozen=True)
class CrystalConfig:
    """The crystals: one unit cell and space group for the whole experiment."""

    cell: tuple[float, float, float, float, float, float] = (58.0, 58.0, 173.0, 90.0, 90.0, 90.0)
    space_group: str = "I4122"
    wilson_b: float = 30.0                        #: Angstrom^2; intensity falls as exp(-B/(2 d^2))
    d_min: float = 2.2                            #: no reflections beyond this resolution (Angstrom)
    mosaicity_deg: float = 0.15
    size_um: tuple[float, float] = (0.5, 3.0)     #: domain size range (log-uniform)
    spot_sigma_px: tuple[float, float] = (0.45, 0.8)  #: spot Gaussian sigma range on the detector
    photons_per_unit: float = 150.0               #: photons of an average full reflection at strength 1, d=inf
    structure_seed: int = 1                       #: seeds the Wilson intensities of the structure

    def __post_init__(self) -> None:
        if len(self.cell) != 6:
            raise ConfigError(f"crystal.cell: expected [a, b, c, alpha, beta, gamma], got {self.cell}")
        _positive(self, "d_min", "photons_per_unit")


@dataclass(frozen=True)
class RunConfig:
    """One run: its conditions and the (possibly overridden) detector, beam and crystal."""

    name: str
    role: str = "train"                           #: "train" or "validation"
    hit_rate: float = 0.3                         #: fraction of frames with at least one crystal
    strength: float = 1.0                         #: median crystal strength (1 = nominal)
    strength_spread: float = 0.6                  #: sigma of log(strength)
    multi_crystal_fraction: float = 0.15          #: fraction of hits with 2-3 crystals
    background: float = 1.0                       #: air/solvent scatter level (1 = nominal)
    water_ring: float = 1.0                       #: water ring level (1 = nominal)
    strong_background_fraction: float = 0.08      #: fraction of misses with a jet splash (3-8x background)
    gain: float = 1.0                             #: multiplies detector.adu_per_photon
    beam_center_offset_px: tuple[float, float] = (0.0, 0.0)  #: (fs, ss) shift of the beam on the detector
    hot_pixel_density: float = 2e-4               #: fraction of pixels hot or cold (fixed for the run)
    zinger_rate: float = 0.5                      #: mean cosmic-ray/stray hits per frame
    frames: int | None = None                     #: frames of this run (default: the experiment's)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    crystal: CrystalConfig = field(default_factory=CrystalConfig)

    def __post_init__(self) -> None:
        if self.role not in ("train", "validation"):
            raise ConfigError(f"run {self.name}: role must be 'train' or 'validation', got {self.role!r}")
        for key in ("hit_rate", "multi_crystal_fraction", "strong_background_fraction", "hot_pixel_density"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"run {self.name}: {key} must be between 0 and 1, got {value}")
        for key in ("strength", "background", "water_ring", "gain"):
            if getattr(self, key) < 0:
                raise ConfigError(f"run {self.name}: {key} must be >= 0, got {getattr(self, key)}")
        if self.gain == 0:
            raise ConfigError(f"run {self.name}: gain must be > 0")

    @property
    def adu_per_photon(self) -> float:
        return self.detector.adu_per_photon * self.gain

    @property
    def beam_center(self) -> tuple[float, float]:
        """Beam position ``(fs, ss)`` in pixel-centre coordinates (pixel ``i`` spans ``i-0.5 .. i+0.5``)."""
        height, width = self.detector.shape
        return (width / 2.0 - 0.5 + self.beam_center_offset_px[0],
                height / 2.0 - 0.5 + self.beam_center_offset_px[1])

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


@dataclass(frozen=True)
class Experiment:
    """A set of runs sharing a sample, a detector and a beam."""

    name: str
    runs: tuple[RunConfig, ...]
    seed: int = 0
    frames_per_run: int = 300
    description: str = ""

    def __post_init__(self) -> None:
        names = [run.name for run in self.runs]
        if len(set(names)) != len(names):
            raise ConfigError(f"experiment {self.name}: run names repeat: {names}")
        if self.frames_per_run < 1:
            raise ConfigError(f"frames_per_run must be >= 1, got {self.frames_per_run}")

    @property
    def run_names(self) -> list[str]:
        return [run.name for run in self.runs]

    @property
    def training_runs(self) -> list[str]:
        return [run.name for run in self.runs if run.role == "train"]

    @property
    def validation_runs(self) -> list[str]:
        return [run.name for run in self.runs if run.role == "validation"]

    def run(self, name: str) -> RunConfig:
        for run in self.runs:
            if run.name == name:
                return run
        raise ConfigError(f"experiment {self.name} has no run {name!r} (have: {', '.join(self.run_names)})")

    def frames_of(self, run: RunConfig | str) -> int:
        run = self.run(run) if isinstance(run, str) else run
        return run.frames if run.frames is not None else self.frames_per_run

    def run_seed(self, run: RunConfig | str, seed: int | None = None) -> int:
        return run_seed(self.seed if seed is None else seed, run if isinstance(run, str) else run.name)

    def select(self, names: Iterable[str]) -> "Experiment":
        """The same experiment with only the runs ``names`` (in the experiment's order)."""
        wanted = [_run_key(n) for n in names]
        unknown = [n for n in wanted if n not in self.run_names]
        if unknown:
            raise ConfigError(f"no run(s) {', '.join(unknown)} in experiment {self.name} "
                              f"(have: {', '.join(self.run_names)})")
        return dataclasses.replace(self, runs=tuple(r for r in self.runs if r.name in wanted))

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping that :func:`experiment_from_dict` reads back to an equal experiment."""
        out: dict[str, Any] = {"name": self.name, "description": self.description, "seed": self.seed,
                               "frames_per_run": self.frames_per_run, "runs": {}}
        for run in self.runs:
            entry = run.to_dict()
            entry.pop("name")
            out["runs"][run.name] = entry
        return out


def _run_key(name: str) -> str:
    name = str(name).strip()
    return name if not name.isdigit() else f"run{name}"


def run_seed(master_seed: int, run_name: str) -> int:
    """The seed of one run, from the master seed and the run's name (so a run can be redone alone)."""
    digest = hashlib.sha256(f"sfx-cnn-veto:{int(master_seed)}:{run_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---------------------------------------------------------------------------
# Loading and validation

_RUN_KEYS = {f.name for f in fields(RunConfig)} - {"name", "detector", "beam", "crystal"}
#: run-level shortcuts into the shared groups
_RUN_OVERRIDES = {"detector_distance_mm": ("detector", "distance_mm"),
                  "photon_energy_ev": ("beam", "photon_energy_ev")}
_TOP_KEYS = {"name", "description", "seed", "frames_per_run", "detector", "beam", "crystal", "runs"}


def _check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__}: {mapping!r}")
    allowed = set(allowed)
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _build(cls, mapping: Mapping[str, Any], where: str, base=None):
    allowed = {f.name: f for f in fields(cls)}
    _check_keys(mapping, allowed, where)
    values = {}
    for key, value in mapping.items():
        default = getattr(base, key) if base is not None else allowed[key].default
        values[key] = _coerce(value, default, f"{where}.{key}")
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ConfigError(f"{where}: expected a list of {len(default)} numbers, got {value!r}")
        return tuple(_coerce(v, d, where) for v, d in zip(value, default))
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if default is None:  # optional int (frames)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    return value


def experiment_from_dict(data: Mapping[str, Any], *, where: str = "experiment") -> Experiment:
    """Build an :class:`Experiment` from a parsed YAML mapping, refusing unknown keys."""
    _check_keys(data, _TOP_KEYS, where)
    detector = _build(DetectorConfig, data.get("detector") or {}, f"{where}.detector")
    beam = _build(BeamConfig, data.get("beam") or {}, f"{where}.beam")
    crystal = _build(CrystalConfig, data.get("crystal") or {}, f"{where}.crystal")
    runs_data = data.get("runs")
    if not runs_data:
        raise ConfigError(f"{where}: 'runs' must map run names to their settings (none given)")
    _check_keys(runs_data, [str(k) for k in runs_data], f"{where}.runs")
    runs = []
    for run_name, settings in runs_data.items():
        settings = dict(settings or {})
        run_where = f"{where}.runs.{run_name}"
        _check_keys(settings, _RUN_KEYS | set(_RUN_OVERRIDES) | {"detector", "beam", "crystal"}, run_where)
        groups = {"detector": detector, "beam": beam, "crystal": crystal}
        for key, (group, attr) in _RUN_OVERRIDES.items():
            if key in settings:
                settings.setdefault(group, {})
                settings[group] = dict(settings[group], **{attr: settings.pop(key)})
        for group, cls in (("detector", DetectorConfig), ("beam", BeamConfig), ("crystal", CrystalConfig)):
            if group in settings:
                groups[group] = _build(cls, settings.pop(group), f"{run_where}.{group}", base=groups[group])
        values = {}
        for key, value in settings.items():
            default = next(f for f in fields(RunConfig) if f.name == key).default
            values[key] = _coerce(value, default, f"{run_where}.{key}")
        runs.append(RunConfig(name=str(run_name), **values, **groups))
    seed = data.get("seed", 0)
    frames = data.get("frames_per_run", 300)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{where}.seed: expected an integer, got {seed!r}")
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise ConfigError(f"{where}.frames_per_run: expected an integer, got {frames!r}")
    return Experiment(name=str(data.get("name", "experiment")), runs=tuple(runs), seed=seed,
                      frames_per_run=frames, description=str(data.get("description", "")))


def load_experiment(path: str) -> Experiment:
    """Read an experiment YAML file (``yaml.safe_load``)."""
    from sfx_cnn_veto.config import read_yaml

    data = read_yaml(path, what="experiment config")
    if not isinstance(data, Mapping):
        raise ConfigError(f"experiment config {path}: expected a mapping at the top, got {type(data).__name__}")
    return experiment_from_dict(data, where=os.path.basename(path))


def shipped_experiments() -> list[str]:
    """Names of the experiments shipped with the package (``default_experiment(name)``)."""
    return sorted(f[:-5] for f in os.listdir(DATA_DIR) if f.endswith(".yaml"))


def default_experiment(name: str = "streptavidin") -> Experiment:
    """A shipped experiment: ``"streptavidin"`` (the paper's 10 runs) or ``"lysozyme"``
    (another cell, distance and wavelength, for cross-experiment tests)."""
    path = os.path.join(DATA_DIR, f"{name}.yaml")
    if not os.path.exists(path):
        raise ConfigError(f"no shipped experiment {name!r} (have: {', '.join(shipped_experiments())})")
    return load_experiment(path)


def dump_experiment(experiment: Experiment, path: str) -> None:
    """Write ``experiment`` as YAML that :func:`load_experiment` reads back."""
    import yaml

    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"# Experiment simulated by sfx-cnn-veto simulate (every value, defaults included)\n")
        yaml.safe_dump(experiment.to_dict(), handle, sort_keys=False, default_flow_style=None)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:
            raise ConfigError(f"{type(obj).__name__}.{name} must be > 0, got {getattr(obj, name)}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
