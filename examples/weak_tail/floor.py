"""The threshold rule's specificity floor on the weak-hit tail: the recipe study's networks at floors 0.97 and 0.95.

The networks of ``recipe.py`` (``--work`` must hold its models, labels and reports) are not retrained: for
each, the training's own validation set is rebuilt by the training code (same labels, runs, seed and split:
held-out frames and the weak hits made from them), scored, and ``choose_threshold`` run at each floor. The
floor 0.97 must give the model's stored threshold, or the script stops. The evaluation sets' per-frame
scores (``evaluate`` reports) are then thresholded again: the study's judging and confirmation sets, and a
fresh set (run104, run105, run107 at seeds 7 and 8) simulated, labelled and scored here.

Writes ``OUT/results.json`` and ``OUT/results.md``; the protocol and its decision rule are in docs/results.md
("The threshold rule's specificity floor on the weak-hit tail")::

    python examples/weak_tail/floor.py --out docs/figures/weak_floor --work /tmp/weak_recipe_work
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import recipe as R  # noqa: E402  (beside this script)

FLOORS = (0.97, 0.95)
SETS = {"judge": R.EVAL_SETS["judge"], "confirm": R.EVAL_SETS["confirm"],
        "fresh": [(7, R.SHIFTED), (8, R.SHIFTED)]}


def validation_scores(model_path: Path, recipe: str, seed: int, labels: Path) -> tuple:
    """``(val_scores, y_val, weak_scores)`` of the training's validation set, rebuilt as ``train`` built it."""
    from sfx_cnn_veto.core.backends import KerasClassifier
    from sfx_cnn_veto.core.model import VetoModel
    from sfx_cnn_veto.training import train as T

    cfg = T.TrainConfig(labels=str(labels), output=str(model_path), train_runs=R.TRAIN_RUNS.split(","),
                        seed=seed, epochs=40, learning_rate=0.01, augment=R.RECIPES[recipe])
    T.check_config(cfg)
    _, train_rows, val_rows = T.select_rows(cfg)
    prep = T.plan_preprocessing(cfg, None)
    data = T.read_and_split(cfg, train_rows, val_rows, prep)
    classifier = KerasClassifier(VetoModel.load(str(model_path)).keras_model, hit_index=1)
    weak = T._predict(classifier, data.x_weak) if len(data.x_weak) else np.zeros(0)
    return T._predict(classifier, data.x_val), data.y_val, weak


def thresholds(model_path: Path, recipe: str, seed: int, labels: Path) -> dict[float, float]:
    """The training rule's threshold at each floor; the 0.97 one checked against the model's own."""
    from sfx_cnn_veto.core.model import VetoModel
    from sfx_cnn_veto.training.train import choose_threshold

    val, y, weak = validation_scores(model_path, recipe, seed, labels)
    out = {floor: float(choose_threshold(val, y, weak, target_sensitivity=0.99, min_specificity=floor)[0])
           for floor in FLOORS}
    stored = VetoModel.read_metadata(str(model_path)).threshold
    if not np.isclose(out[0.97], stored, rtol=0, atol=1e-6):
        raise SystemExit(f"{model_path}: the rebuilt validation set gives {out[0.97]:.6g} at floor 0.97, "
                         f"the model holds {stored:.6g}: not the training's validation set; stopping")
    return out


def rethreshold(report: Path, labels: Path, threshold: float) -> dict:
    """Sensitivity, specificity and 11-20-peak hits kept of a report's scores at ``threshold`` (NaN kept)."""
    with open(labels, newline="") as handle:
        peaks = {(r["file"], r["event"]): int(r["num_peaks"] or 0) for r in csv.DictReader(handle)}
    with open(report / "scores.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["label"] in ("0", "1")]
    kept = np.array([not (float(r["score"]) < threshold) if r["score"] else True for r in rows])
    label = np.array([r["label"] == "1" for r in rows])
    weak = np.array([11 <= peaks[(r["file"], r["event"])] <= 20 for r in rows]) & label
    return {"threshold": threshold, "hits": int(label.sum()), "hits_kept": int((kept & label).sum()),
            "misses": int((~label).sum()), "misses_vetoed": int((~kept & ~label).sum()),
            "weak_hits": int(weak.sum()), "weak_kept": int((kept & weak).sum()),
            "sensitivity": float((kept & label).sum() / label.sum()),
            "specificity": float((~kept & ~label).sum() / (~label).sum()),
            "weak_sensitivity": float((kept & weak).sum() / weak.sum())}


def set_labels(work: Path, frames: int) -> dict[str, Path]:
    """Each set's labels (the fresh set simulated and labelled now if missing)."""
    out = {}
    for name, parts in SETS.items():
        out[name] = R.merged_labels(work, name, [(seed, R.eval_labels(work, seed, runs, frames))
                                                 for seed, runs in parts])
    return out


def decide(results: dict) -> dict:
    """The rule of docs/results.md, on the baseline recipe: per set, 11-20 higher and specificity within 2."""
    verdict = {}
    for name in SETS:
        figures = {floor: [m["sets"][name][str(floor)] for m in results["models"]["baseline"].values()]
                   for floor in FLOORS}
        weak = {f: float(np.mean([x["weak_sensitivity"] for x in v])) for f, v in figures.items()}
        spe = {f: float(np.mean([x["specificity"] for x in v])) for f, v in figures.items()}
        verdict[name] = {"weak_higher": weak[0.95] > weak[0.97], "specificity_within_2": spe[0.97] - spe[0.95] <= 0.02}
    verdict["adopt"] = all(v["weak_higher"] and v["specificity_within_2"] for v in verdict.values())
    return verdict


def markdown(results: dict) -> str:
    lines = []
    for name in SETS:
        lines += [f"**{name}** ({', '.join(f'seed {s}: {r}' for s, r in SETS[name])}): mean ± sd over training "
                  "seeds 1, 2, 3 (%); thresholds per seed", "",
                  "| recipe | floor | sensitivity | specificity | 11-20 peaks | hits kept (sum) | misses kept (sum) | thresholds |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for recipe, models in results["models"].items():
            for floor in FLOORS:
                rows = [m["sets"][name][str(floor)] for m in models.values()]
                ms = {k: R.mean_sd([r[k] for r in rows]) for k in ("sensitivity", "specificity", "weak_sensitivity")}
                lines.append(
                    f"| {recipe} | {floor} | {ms['sensitivity'][0]:.1f} ± {ms['sensitivity'][1]:.1f} | "
                    f"{ms['specificity'][0]:.1f} ± {ms['specificity'][1]:.1f} | "
                    f"{ms['weak_sensitivity'][0]:.1f} ± {ms['weak_sensitivity'][1]:.1f} | "
                    f"{sum(r['hits_kept'] for r in rows)}/{sum(r['hits'] for r in rows)} | "
                    f"{sum(r['misses'] - r['misses_vetoed'] for r in rows)}/{sum(r['misses'] for r in rows)} | "
                    f"{', '.join(format(r['threshold'], '.3g') for r in rows)} |")
        lines.append("")
    v = results["decision"]
    lines.append("Decision rule (fixed beforehand, baseline recipe): "
                 + "; ".join(f"{n}: 11-20 higher {v[n]['weak_higher']}, specificity within 2 points "
                             f"{v[n]['specificity_within_2']}" for n in SETS)
                 + f". **{'Adopt 0.95' if v['adopt'] else 'The floor stays 0.97'}.**")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="weak-floor-output", help="where results.json and results.md go")
    parser.add_argument("--work", required=True, help="recipe.py's work folder (models, labels, reports)")
    parser.add_argument("--frames", type=int, default=500, help="frames per fresh evaluation run")
    args = parser.parse_args(argv)
    os.environ.setdefault("SFX_CNN_VETO_PROGRESS", "0")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_labels = R.training_labels(work)
    labels = set_labels(work, args.frames)
    results = {"floors": list(FLOORS), "sets": {k: v for k, v in SETS.items()}, "models": {}}
    for recipe in R.RECIPES:
        results["models"][recipe] = {}
        for seed in (1, 2, 3):
            model = work / "models" / f"{recipe}_s{seed}.keras"
            per_floor = thresholds(model, recipe, seed, train_labels)
            entry = {"thresholds": {str(f): t for f, t in per_floor.items()}, "sets": {}}
            for name, path in labels.items():
                R.evaluate(work, str(model), name, path)
                report = work / "reports" / f"{model.stem}_{name}"
                entry["sets"][name] = {str(f): rethreshold(report, path, t) for f, t in per_floor.items()}
            results["models"][recipe][str(seed)] = entry
    results["decision"] = decide(results)
    results["seconds_this_invocation"] = time.perf_counter() - started
    R.write_results(out, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
