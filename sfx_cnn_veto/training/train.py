"""Training: the paper's optimiser, class weighting, augmentation, early stopping, a threshold for a target sensitivity.

Reproducible: the same seed and data give the same weights and metrics
(``keras.utils.set_random_seed``, TensorFlow op determinism, and a NumPy
generator seeded once that drives shuffling and augmentation).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sfx_cnn_veto import __version__, manager
from sfx_cnn_veto.errors import ConfigError
from sfx_cnn_veto.training import metrics as M
from sfx_cnn_veto.training.batches import Prefetcher, epoch_batches
from sfx_cnn_veto.io.files import file_sha256
from sfx_cnn_veto.training.datasets import (
    Augmentation,
    CropSet,
    holdout_split,
    make_batch,
    normalized_windows,
    normalizer,
    read_crops,
    weak_validation,
)
from sfx_cnn_veto.training.labels import LabelRow, read_labels, runs_of, select_runs

log = logging.getLogger(__name__)

DEFAULT_ARCH = "veto"

#: Weak hits made from each held-out hit for choosing the epoch and the threshold (with weak-hit augmentation)
WEAK_VALIDATION_PER_HIT = 5

#: The sensitivity target only lowers the usual 0.5 cut; --min-specificity may raise the threshold above it.
SENSITIVITY_CAP = 0.5

#: A model whose held-out sensitivity or specificity is below this is a failed training (written as NAME.failed.keras).
MIN_USEFUL = 0.5


@dataclass
class TrainConfig:
    """Everything ``sfx-cnn-veto train`` takes (see ``sfx-cnn-veto train --help``)."""

    labels: str
    output: str
    train_runs: Sequence[str] | None = None
    val_runs: Sequence[str] | None = None
    arch: str = DEFAULT_ARCH
    normalize: str | None = None
    epochs: int = 40
    patience: int = 8
    seed: int = 0
    batch_size: int = 100
    optimizer: str = "sgd"
    learning_rate: float = 0.002
    decay: float = 1e-4
    momentum: float = 0.9
    class_weight: bool = True
    augment: str = "default"
    margin: int = 8
    holdout: float = 0.15
    target_sensitivity: float = 0.99
    #: the threshold never keeps more than 1 - this of the held-out misses (weak hits may ask for less)
    min_specificity: float = 0.97
    init_model: str | None = None
    crop_shape: tuple[int, int] | None = None
    crop_center: tuple[float, float] | None = None
    #: a CrystFEL geometry file: the frames are its raw slabs, the crop is taken around its beam
    geometry: str | None = None
    max_per_run: int | None = None
    reader_options: dict[str, Any] = field(default_factory=dict)
    #: train on masked frames (bad pixels read as background): None = yes, except for the paper's
    #: network (raw frames, as in the paper); fine-tuning keeps the initial model's choice
    use_mask: bool | None = None
    #: a good-pixel mask file FILE[:DATASET] for every frame (default: each CXI file's own mask)
    mask: str | None = None
    #: TensorFlow threads: 1 makes training bit-exact (same seed and data, same model); more is
    #: faster (13-37% with 2 here) but not bit-exact; None leaves TensorFlow's default
    threads: int | None = 1
    #: batches prepared ahead in a thread while TensorFlow trains (0: in line); the model is the same, bit for bit
    prefetch: int = 2
    curves: bool = True
    quiet: bool = False


@dataclass
class TrainResult:
    model: Any  # VetoModel
    history: dict[str, list[float]]
    best_epoch: int
    threshold: float
    val_metrics: dict[str, Any]
    curves_path: str | None
    #: where the model was written (``output``, or ``NAME.failed.keras`` when the training failed)
    path: str = ""
    #: why the training failed (:func:`training_failure`), None when the model is usable
    failed: str | None = None


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    from sfx_cnn_veto.core.tf import import_keras, import_tensorflow

    tf = import_tensorflow()
    keras = import_keras()
    keras.utils.set_random_seed(int(seed))
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception as exc:  # noqa: BLE001 - older TF
        log.warning("TensorFlow op determinism unavailable: %s", exc)


def _pin_threads(threads: int | None) -> int | None:
    """Run TensorFlow's ops on ``threads`` threads (before it starts); the number it runs with, if known.

    One thread makes training bit-exact: multi-threaded reductions add in
    varying order, and a full-size training drifted by up to 8 points on a run
    between two runs of the same seed.
    """
    if not threads:
        return None
    if "tensorflow" not in sys.modules:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(int(threads))
        os.environ["TF_NUM_INTEROP_THREADS"] = str(int(threads))
        return int(threads)
    tf = sys.modules["tensorflow"]
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        return int(threads)
    except RuntimeError:  # TensorFlow already ran ops in this process: its pools are fixed
        got = tf.config.threading.get_intra_op_parallelism_threads() or None
        if got != int(threads):
            print(f"sfx-cnn-veto: warning: TensorFlow is already running in this process with "
                  f"{got or 'its default'} threads, not {threads}: this training is not bit-exact", file=sys.stderr)
        return got


def _mask_source(spec: str | None):
    """``(file, frame_shape) -> good-pixel mask or None``: the mask file ``spec``, else each CXI file's own."""
    from sfx_cnn_veto.io.masks import load_mask_file, own_mask

    cache: dict[tuple[str, tuple[int, int]], Any] = {}

    def mask_for(path: str, shape: tuple[int, int]):
        key = (path if spec is None else "", tuple(shape))
        if key not in cache:
            if spec is not None:
                cache[key] = load_mask_file(spec, key[1])
            else:
                cache[key] = own_mask(path, key[1])
        return cache[key]

    return mask_for


def _cap_rows(rows: list[LabelRow], cap: int | None, seed: int) -> list[LabelRow]:
    """At most ``cap`` labelled events per run, chosen reproducibly (stratified by label)."""
    if cap is None:
        return rows
    out: list[LabelRow] = []
    rng = np.random.default_rng(seed + 7919)
    for run in runs_of(rows):
        labelled = sorted((r for r in rows if r.run == run and r.label is not None), key=lambda r: r.key)
        if len(labelled) <= cap:
            out.extend(labelled)
            continue
        pick = np.sort(rng.choice(len(labelled), size=cap, replace=False))
        out.extend(labelled[i] for i in pick)
    return out


def _subset(crops: CropSet, idx: Sequence[int]) -> CropSet:
    idx = list(idx)
    return CropSet(crops.crops[idx], crops.labels[idx], [crops.rows[i] for i in idx], crops.margin,
                   crops.crop_shape, [], list(crops.frame_shapes))


def _class_weights(labels: np.ndarray) -> dict[int, float]:
    n = len(labels)
    out = {}
    for c in (0, 1):
        nc = int((labels == c).sum())
        out[c] = n / (2.0 * nc) if nc else 0.0
    return out


def _balanced_ce(probs: np.ndarray, labels: np.ndarray, weak: np.ndarray | None = None) -> float:
    """Cross-entropy averaged per class, then over classes (class-weighted like training).

    ``weak``: scores of weak hits made from the held-out hits, a third class of equal weight.
    """
    p = np.clip(np.where(labels == 1, probs, 1.0 - probs), 1e-7, 1.0)
    losses = -np.log(p)
    parts = [losses[labels == c].mean() for c in (0, 1) if (labels == c).any()]
    if weak is not None and len(weak):
        parts.append(float(-np.log(np.clip(weak, 1e-7, 1.0)).mean()))
    return float(np.mean(parts)) if parts else float("nan")


def _optimizer(cfg: TrainConfig):
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    lr: Any = cfg.learning_rate
    if cfg.decay:
        lr = keras.optimizers.schedules.InverseTimeDecay(cfg.learning_rate, decay_steps=1, decay_rate=cfg.decay)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    raise ConfigError(f"optimizer {cfg.optimizer!r}: expected 'sgd' (the paper's) or 'adam'")


@dataclass
class Preprocessing:
    """What the network sees: its architecture and input, the crop, the normalization, masks, augmentation."""

    arch: str
    norm_method: str
    norm_params: dict[str, Any]
    crop_shape: tuple[int, int]
    crop_center: tuple[float, float] | None
    input_shape: tuple[int, ...]
    use_mask: bool
    aug: Augmentation
    margin: int
    #: the detector's geometry (raw slabs), or None (single-panel frames around ``crop_center``)
    geometry: Any = None

    @property
    def normalize(self):
        return normalizer(self.norm_method, self.norm_params)


@dataclass
class TrainData:
    """The crops to train on and the validation set (normalized batches), with where the latter came from."""

    train_set: CropSet
    val_set: CropSet
    val_source: str
    x_val: np.ndarray
    y_val: np.ndarray
    #: weak hits made from the held-out hits (empty without weak-hit augmentation)
    x_weak: np.ndarray


@dataclass
class Fit:
    """What fitting left: the per-epoch history, the chosen (best) epoch and its validation loss."""

    history: dict[str, list[float]]
    best_epoch: int  # 0-based
    best_loss: float
    class_weight: dict[int, float]
    #: the fitted model as the veto runs it (hit probabilities)
    classifier: Any


def _detector_provenance(frame_shapes, geometry, path: str | None) -> dict[str, Any]:
    """What the model was trained on: the frames' shapes, and the geometry (its file name, panel count, and,
    where it states them, its pixel size ``res`` in pixels per metre and camera length ``clen`` in metres)."""
    return {
        "frame_shapes": sorted({tuple(int(v) for v in shape) for shape in frame_shapes}),
        "geometry": os.path.basename(path) if path else None,
        "geometry_sha256": file_sha256(path) if path else None,
        "panels": len(geometry.panels) if geometry is not None else 1,
        "res": geometry.reference_res if geometry is not None else None,
        "clen": geometry.float_global("clen") if geometry is not None else None,
    }


def check_config(cfg: TrainConfig) -> None:
    """Refuse options out of range before anything is read."""
    if not cfg.output.endswith(".keras"):
        raise ConfigError(f"-o/--output: model files must end in '.keras', got {cfg.output!r}")
    if not 0.0 < cfg.target_sensitivity <= 1.0:
        raise ConfigError(f"--target-sensitivity: expected 0 < t <= 1, got {cfg.target_sensitivity}")
    if not 0.0 <= cfg.min_specificity <= 1.0:
        raise ConfigError(f"--min-specificity: expected 0 <= t <= 1, got {cfg.min_specificity}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError("--epochs and --batch-size must be positive")


def select_rows(cfg: TrainConfig) -> tuple[list[str], list[LabelRow], list[LabelRow] | None]:
    """The labelled events to train and validate on: ``(train runs, train rows, validation rows or None)``.

    Raises
    ------
    ConfigError
        Overlapping train and validation runs, or training runs without both hits and misses.
    """
    rows = read_labels(cfg.labels)
    train_runs = list(cfg.train_runs) if cfg.train_runs else runs_of(rows)
    if cfg.val_runs:
        overlap = sorted(set(train_runs) & set(cfg.val_runs))
        if overlap:
            raise ConfigError(f"--val-runs and --train-runs share {', '.join(overlap)}")
    train_rows = _cap_rows(select_runs(rows, train_runs, what="--train-runs"), cfg.max_per_run, cfg.seed)
    val_rows = (_cap_rows(select_runs(rows, cfg.val_runs, what="--val-runs"), cfg.max_per_run, cfg.seed)
                if cfg.val_runs else None)
    train_rows = [r for r in train_rows if r.label is not None]
    if not any(r.label == 1 for r in train_rows) or not any(r.label == 0 for r in train_rows):
        raise ConfigError(f"training runs {', '.join(train_runs)} need both hits and misses in {cfg.labels}")
    return train_runs, train_rows, val_rows


def plan_preprocessing(cfg: TrainConfig, init) -> Preprocessing:
    """The architecture and preprocessing: the initial model's when fine-tuning (``init``), else ``cfg``'s."""
    if init is not None:
        meta0 = init.metadata
        if cfg.normalize and cfg.normalize != meta0.normalize:
            raise ConfigError(
                f"--normalize {cfg.normalize} differs from the initial model's {meta0.normalize}; fine-tuning keeps it"
            )
        use_mask = bool(meta0.use_mask)
        if cfg.use_mask is not None and bool(cfg.use_mask) != use_mask:
            raise ConfigError(f"the initial model was trained {'with' if use_mask else 'without'} masks; "
                              "fine-tuning keeps that")
        arch, norm_method, norm_params = meta0.architecture, cfg.normalize or meta0.normalize, dict(meta0.normalize_params)
        crop_shape = tuple(meta0.crop_shape)
        crop_center = cfg.crop_center if cfg.crop_center is not None else meta0.crop_center
        input_shape = tuple(meta0.input_shape)
    else:
        specs = manager.architectures()
        if cfg.arch not in specs:
            raise ConfigError(f"--arch {cfg.arch!r} is not registered (have: {', '.join(sorted(specs))})")
        spec = specs[cfg.arch]
        arch, norm_method, norm_params = cfg.arch, cfg.normalize or spec.default_normalize, {}
        crop_shape = tuple(cfg.crop_shape or spec.input_shape[:2])
        crop_center = cfg.crop_center
        input_shape = crop_shape + (1,)
        use_mask = (arch != "paper") if cfg.use_mask is None else bool(cfg.use_mask)
    normalizer(norm_method, norm_params)  # an unknown method is an error before any data is read
    aug = Augmentation.parse(cfg.augment, margin=cfg.margin)
    geometry = None
    if cfg.geometry:
        from sfx_cnn_veto.io.geometry import read_geometry

        if cfg.crop_center is not None:
            raise ConfigError("--center and --geometry: give one (a geometry puts the beam at x = y = 0)")
        geometry, crop_center = read_geometry(cfg.geometry), None
    return Preprocessing(arch, norm_method, norm_params, crop_shape, crop_center, input_shape, use_mask, aug,
                         cfg.margin if aug.shift else 0, geometry)


def read_and_split(cfg: TrainConfig, train_rows: list[LabelRow], val_rows: list[LabelRow] | None,
                   prep: Preprocessing) -> TrainData:
    """Read the crops; hold out ``cfg.holdout`` of the training events unless validation runs are given.

    The validation set is normalized once, with weak hits made from its hits
    as training makes them (fixed by the seed): the held-out hits alone are
    the training runs' strong ones, so the epoch and the threshold are chosen
    on both (a run of weak crystals would lose its hits otherwise).
    """
    mask_for = _mask_source(cfg.mask) if prep.use_mask else None
    normalize = prep.normalize
    train_set = read_crops(train_rows, crop_shape=prep.crop_shape, center=prep.crop_center, margin=prep.margin,
                           reader_options=cfg.reader_options, desc="read train", mask_for=mask_for,
                           geometry=prep.geometry)
    if val_rows is None:
        tr_idx, va_idx = holdout_split(train_set.rows, cfg.holdout, cfg.seed)
        val_set = _subset(train_set, va_idx)
        val_set = CropSet(np.ascontiguousarray(val_set.centre()), val_set.labels, val_set.rows, 0,
                          prep.crop_shape, [])
        train_set = _subset(train_set, tr_idx)
        val_source = f"{cfg.holdout:.0%} of the training events held out (seed {cfg.seed})"
    else:
        val_set = read_crops([r for r in val_rows if r.label is not None], crop_shape=prep.crop_shape,
                             center=prep.crop_center, margin=0, reader_options=cfg.reader_options, desc="read val",
                             mask_for=mask_for, geometry=prep.geometry)
        val_source = "runs " + ", ".join(cfg.val_runs)
    if len(train_set) == 0:
        raise ConfigError("no training event could be read")
    if len(val_set) == 0 or len(set(val_set.labels.tolist())) < 1:
        raise ConfigError("no validation event could be read")
    x_val = make_batch(val_set, range(len(val_set)), normalize)
    x_weak = np.zeros((0,) + tuple(prep.input_shape), dtype=np.float32)
    if prep.aug.weak_hits:
        weak_set = weak_validation(val_set, prep.aug, cfg.seed, per_hit=WEAK_VALIDATION_PER_HIT)
        if len(weak_set):
            x_weak = make_batch(weak_set, range(len(weak_set)), normalize)
    return TrainData(train_set, val_set, val_source, x_val, val_set.labels, x_weak)


def build_model(cfg: TrainConfig, init, prep: Preprocessing):
    """The Keras model to fit, seeded and compiled: the initial model's, else a new ``prep.arch``."""
    set_determinism(cfg.seed)
    if init is not None:
        model = init.keras_model
    else:
        build = manager.architectures()[prep.arch].build
        model = build(prep.input_shape, seed=cfg.seed) if _takes_seed(build) else build(prep.input_shape)
    model.compile(optimizer=_optimizer(cfg), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _validate(classifier, data: TrainData) -> tuple[float, float]:
    """``(balanced loss on the held-out and weak hits, accuracy at 0.5)`` of the model now."""
    val_scores = _predict(classifier, data.x_val)
    weak = _predict(classifier, data.x_weak) if len(data.x_weak) else None
    val_loss = _balanced_ce(val_scores, data.y_val, weak)
    return val_loss, float(np.mean((val_scores >= 0.5) == (data.y_val == 1)))


def fit(cfg: TrainConfig, model, data: TrainData, prep: Preprocessing) -> Fit:
    """Fit epoch by epoch with early stopping on the validation loss; the model is left at its best epoch."""
    from sfx_cnn_veto.cli_commands import progress
    from sfx_cnn_veto.core.backends import KerasClassifier

    train_set, normalize, aug = data.train_set, prep.normalize, prep.aug
    classifier = KerasClassifier(model, hit_index=1)
    calib_idx = np.sort(np.random.default_rng(cfg.seed + 1).permutation(len(train_set))[:300])
    x_calib = make_batch(train_set, calib_idx, normalize) if batchnorm_layers(model) else np.zeros((0,))
    cache = normalized_windows(train_set, normalize) if aug.active and aug.p_raw < 1.0 else None
    weights = _class_weights(train_set.labels) if cfg.class_weight else {0: 1.0, 1: 1.0}
    rng = np.random.default_rng(cfg.seed)  # drawn from by the batches only (shuffles, augmentation)
    steps = math.ceil(len(train_set) / cfg.batch_size)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    best = (math.inf, -1)
    best_weights = model.get_weights()
    bad_epochs = 0
    batches = epoch_batches(train_set, normalize, epochs=cfg.epochs, batch_size=cfg.batch_size, aug=aug, rng=rng,
                            cache=cache)
    with progress(total=cfg.epochs * steps, desc="train", unit="batch") as bar, \
            Prefetcher(batches, depth=cfg.prefetch) as ahead:
        for epoch in range(cfg.epochs):
            losses, accs = [], []
            for _ in range(steps):
                batch = next(ahead)
                x, y = batch.x, train_set.labels[batch.indices]
                sw = np.array([weights[int(c)] for c in y], dtype=np.float32)
                out = model.train_on_batch(x, np.eye(2, dtype=np.float32)[y], sample_weight=sw, return_dict=True)
                losses.append(float(out["loss"]))
                accs.append(float(out.get("accuracy", float("nan"))))
                bar.update(1)
            recalibrate_batchnorm(model, x_calib, batch=cfg.batch_size)
            val_loss, val_acc = _validate(classifier, data)
            for key, value in (("loss", float(np.mean(losses))), ("accuracy", float(np.mean(accs))),
                               ("val_loss", val_loss), ("val_accuracy", val_acc)):
                history[key].append(value)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses):.3f}", val_loss=f"{val_loss:.3f}",
                            val_acc=f"{val_acc:.3f}")
            bar.note(f"train: epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f}, accuracy {np.mean(accs):.3f}, "
                     f"validation loss {val_loss:.4f}, validation accuracy {val_acc:.3f}")
            if val_loss < best[0] - 1e-6:
                best = (val_loss, epoch)
                best_weights = model.get_weights()
                bad_epochs = 0
            else:
                bad_epochs += 1
                if cfg.patience and bad_epochs >= cfg.patience:
                    bar.total = bar.n
                    break
    model.set_weights(best_weights)
    return Fit(history, best[1], best[0], weights, classifier)


def choose_threshold(val_scores: np.ndarray, y_val: np.ndarray, weak_scores: np.ndarray, *,
                     target_sensitivity: float, min_specificity: float) -> tuple[float, dict[str, Any]]:
    """The decision threshold and the rule that gave it.

    The target sensitivity on the held-out and the weak hits lowers the usual
    0.5 cut (it never raises it: that would fit the threshold to the lowest
    validation hit), but not at the price of keeping more than
    ``1 - min_specificity`` of the held-out misses: ``--min-specificity`` wins,
    above 0.5 too. A warning on stderr, with the sensitivities it costs, when it wins.

    Returns
    -------
    threshold : float
    rule : dict
        ``for_sensitivity``, ``specificity_floor``, ``min_specificity``, ``limited_by_specificity``.
    """
    wanted = M.threshold_for_sensitivity(np.concatenate([val_scores, weak_scores]),
                                         np.concatenate([y_val, np.ones(len(weak_scores), dtype=y_val.dtype)]),
                                         target_sensitivity, cap=SENSITIVITY_CAP)
    floor = M.threshold_for_specificity(val_scores, y_val, min_specificity)
    threshold = max(wanted, floor)
    rule = {"for_sensitivity": wanted, "specificity_floor": floor, "min_specificity": min_specificity,
            "limited_by_specificity": bool(floor > wanted)}
    if floor > wanted:
        held = val_scores[y_val == 1]
        costs = [f"{np.mean(held >= threshold):.1%} of the held-out hits"] if len(held) else []
        if len(weak_scores):
            costs.append(f"{np.mean(weak_scores >= threshold):.1%} of the weak hits")
        print(f"sfx-cnn-veto: warning: the target sensitivity {target_sensitivity:g} on the held-out and weak "
              f"hits needs a threshold of {wanted:.3g}, which keeps more than {1 - min_specificity:.0%} of the "
              f"held-out misses; using {threshold:.3g} (--min-specificity {min_specificity:g}), which keeps "
              f"{' and '.join(costs) or 'no hits (none held out)'}", file=sys.stderr)
    return threshold, rule


def training_failure(val_metrics: dict[str, Any], threshold: float, *, floor: float = MIN_USEFUL) -> str | None:
    """Why a trained model is useless (held-out sensitivity or specificity below ``floor``), or None."""
    overall = val_metrics.get("overall") or {}
    low = [f"{name} {overall[name]:.1%}" for name in ("sensitivity", "specificity")
           if overall.get(name) is not None and overall[name] < floor]
    if not low:
        return None
    return (f"held-out {' and '.join(low)} at threshold {threshold:.3g}, "
            f"below {floor:.0%}: the network did not learn to tell hits from misses (more epochs, more data, "
            "or another learning rate?)")


def failed_path(path: str) -> str:
    """``model.keras`` -> ``model.failed.keras``: where a failed training's model goes (never over a good one)."""
    stem = path[: -len(".keras")] if path.endswith(".keras") else path
    return stem + ".failed.keras"


def validation_metrics(cfg: TrainConfig, data: TrainData, fitted: Fit) -> tuple[float, dict[str, Any]]:
    """Score the validation set with the fitted model: ``(threshold, metrics)`` (Table II rows, AUC, weak hits)."""
    classifier = fitted.classifier
    y_val = data.y_val
    val_scores = _predict(classifier, data.x_val)
    weak_scores = _predict(classifier, data.x_weak) if len(data.x_weak) else np.zeros(0)
    threshold, rule = choose_threshold(val_scores, y_val, weak_scores, target_sensitivity=cfg.target_sensitivity,
                                       min_specificity=cfg.min_specificity)
    predicted = val_scores >= threshold
    metrics: dict[str, Any] = {"overall": M.table_row(M.confusion(y_val, predicted)), "threshold_rule": rule}
    if len(weak_scores):
        metrics["weak_hits"] = {"events": int(len(weak_scores)),
                                "sensitivity": float(np.mean(weak_scores >= threshold)),
                                "sensitivity_at_0.5": float(np.mean(weak_scores >= 0.5))}
    runs_in_val = runs_of(data.val_set.rows)
    if len(runs_in_val) > 1 or cfg.val_runs:
        metrics["runs"] = {}
        for run in runs_in_val:
            sel = np.array([r.run == run for r in data.val_set.rows])
            metrics["runs"][run] = M.table_row(M.confusion(y_val[sel], predicted[sel]))
    _, _, auc = M.roc_curve(val_scores, y_val)
    metrics["auc"] = None if math.isnan(auc) else auc
    metrics["loss"] = fitted.best_loss
    metrics["source"] = data.val_source
    return threshold, metrics


def training_record(cfg: TrainConfig, train_runs: list[str], data: TrainData, prep: Preprocessing, fitted: Fit,
                    *, tf_threads: int | None, started: float) -> dict[str, Any]:
    """How the model was trained, for its metadata (``training``): data, options, history, versions."""
    from sfx_cnn_veto.core.tf import import_keras

    return {
        "labels": os.path.abspath(cfg.labels),
        "labels_sha256": file_sha256(cfg.labels),
        "train_runs": train_runs,
        "val_runs": list(cfg.val_runs) if cfg.val_runs else None,
        "validation": data.val_source,
        "train_events": int(len(data.train_set)),
        "train_hits": int((data.train_set.labels == 1).sum()),
        "val_events": int(len(data.val_set)),
        "val_hits": int((data.y_val == 1).sum()),
        "skipped_events": len(data.train_set.skipped) + len(data.val_set.skipped),
        "seed": cfg.seed,
        "epochs_run": len(fitted.history["loss"]),
        "best_epoch": fitted.best_epoch + 1,
        "max_epochs": cfg.epochs,
        "patience": cfg.patience,
        "batch_size": cfg.batch_size,
        "optimizer": {"name": cfg.optimizer, "learning_rate": cfg.learning_rate,
                      "inverse_time_decay": cfg.decay, "momentum": cfg.momentum},
        "loss": "categorical_crossentropy",
        "class_weight": {str(k): v for k, v in fitted.class_weight.items()},
        "augmentation": prep.aug.describe() if prep.aug.active else None,
        "mask": (cfg.mask or "each CXI file's own") if prep.use_mask else None,
        "detector": _detector_provenance(data.train_set.frame_shapes + data.val_set.frame_shapes, prep.geometry,
                                         cfg.geometry),
        "target_sensitivity": cfg.target_sensitivity,
        "init_model": os.path.abspath(cfg.init_model) if cfg.init_model else None,
        "max_per_run": cfg.max_per_run,
        "tf_threads": tf_threads,
        "history": fitted.history,
        "seconds": round(time.time() - started, 1),
        "package_version": __version__,
        "keras_version": import_keras().__version__,
    }


def write_model(cfg: TrainConfig, model, prep: Preprocessing, threshold: float, training: dict[str, Any],
                val_metrics: dict[str, Any], fitted: Fit):
    """Save the model with its metadata to ``cfg.output`` (and the curves PNG): ``(VetoModel, curves path)``."""
    from sfx_cnn_veto.core.model import ModelMetadata, VetoModel

    meta = ModelMetadata(
        architecture=prep.arch,
        input_shape=tuple(int(v) for v in prep.input_shape),
        crop_shape=tuple(int(v) for v in prep.crop_shape),
        crop_center=tuple(float(v) for v in prep.crop_center) if prep.crop_center is not None else None,
        normalize=prep.norm_method,
        normalize_params=prep.norm_params,
        class_order=("miss", "hit"),
        threshold=float(threshold),
        use_mask=prep.use_mask,
        training=training,
        metrics={"validation": val_metrics},
    )
    vm = VetoModel(model, meta)
    vm.save(cfg.output)
    curves = None
    if cfg.curves:
        from sfx_cnn_veto.training.report import plot_curves

        curves = curves_path(cfg.output)
        plot_curves(fitted.history, curves, best_epoch=fitted.best_epoch + 1, title=os.path.basename(cfg.output))
    return vm, curves


def train(cfg: TrainConfig) -> TrainResult:
    """Train a model as ``cfg`` says and save it (with metadata and a curves PNG) to ``cfg.output``.

    The stages, each a function of this module: :func:`select_rows`,
    :func:`plan_preprocessing`, :func:`read_and_split`, :func:`build_model`,
    :func:`fit` (which chooses the epoch), :func:`validation_metrics` (which
    chooses the threshold, :func:`choose_threshold`), :func:`write_model`.
    A model that fails :func:`training_failure` is written to
    :func:`failed_path` instead, ``training["failed"]`` saying why; the
    result's ``failed`` says it too.
    """
    from sfx_cnn_veto.core.model import VetoModel

    check_config(cfg)
    started = time.time()
    tf_threads = _pin_threads(cfg.threads)
    train_runs, train_rows, val_rows = select_rows(cfg)
    init = VetoModel.load(cfg.init_model) if cfg.init_model else None
    prep = plan_preprocessing(cfg, init)
    data = read_and_split(cfg, train_rows, val_rows, prep)
    model = build_model(cfg, init, prep)
    fitted = fit(cfg, model, data, prep)
    threshold, val_metrics = validation_metrics(cfg, data, fitted)
    training = training_record(cfg, train_runs, data, prep, fitted, tf_threads=tf_threads, started=started)
    failed = training_failure(val_metrics, threshold)
    if failed:  # still written, for inspection, under a name no one takes for a usable model
        training["failed"] = failed
        cfg = dataclasses.replace(cfg, output=failed_path(cfg.output))
    vm, curves = write_model(cfg, model, prep, threshold, training, val_metrics, fitted)
    return TrainResult(vm, fitted.history, fitted.best_epoch + 1, float(threshold), val_metrics, curves,
                       path=cfg.output, failed=failed)


def curves_path(model_path: str) -> str:
    """``model.keras`` -> ``model.curves.png`` (next to the model)."""
    stem = model_path[: -len(".keras")] if model_path.endswith(".keras") else model_path
    return stem + ".curves.png"


def _takes_seed(build) -> bool:
    import inspect

    try:
        return "seed" in inspect.signature(build).parameters
    except (TypeError, ValueError):
        return False


def batchnorm_layers(model) -> list:
    from sfx_cnn_veto.core.tf import import_keras

    keras = import_keras()
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batchnorm(model, x: np.ndarray, *, batch: int = 100) -> None:
    """Set every BatchNormalization layer's moving statistics to their mean over ``x`` ("precise BN").

    With few training steps, Keras's moving averages (momentum 0.99) are far
    from the data's statistics, and a network that classifies well in
    training mode says "hit" for everything at inference. Running the
    un-augmented training crops through the network in training mode with
    a cumulative-average momentum fixes that; weights are not changed.
    """
    layers = batchnorm_layers(model)
    if not layers or len(x) == 0:
        return
    saved = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(x), batch)):
            for layer in layers:
                layer.momentum = k / (k + 1.0)  # k = 0 replaces, then running mean of batch statistics
            model(x[start:start + batch], training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


def _predict(classifier, x: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [classifier.predict(x[i:i + batch]) for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros(0)
