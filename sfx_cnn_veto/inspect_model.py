"""``sfx-cnn-veto inspect MODEL.keras``: what a model file says about itself, without TensorFlow.

Threshold, crop and center, normalization, mask use, the detector it was
trained on, training runs and figures, held-out metrics, calibration and the
package version, all read from the metadata inside the file
(:meth:`~sfx_cnn_veto.core.model.VetoModel.read_metadata`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) else "-"


def _runs(value: Any) -> str:
    return ", ".join(map(str, value)) if value else "-"


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    lines = []
    for name, block in sorted(metrics.items()):
        if not isinstance(block, dict):
            continue
        overall = block.get("overall", {})
        lines.append(f"  {name}: {overall.get('events', '?')} events, sensitivity {_pct(overall.get('sensitivity'))}, "
                     f"specificity {_pct(overall.get('specificity'))}, accuracy {_pct(overall.get('accuracy'))}"
                     + (f", AUC {block['auc']:.3f}" if isinstance(block.get("auc"), (int, float)) else ""))
        if block.get("source"):
            lines.append(f"    on {block['source']}")
        for run, row in sorted(block.get("runs", {}).items()):
            lines.append(f"    {run}: {row.get('events', '?')} events, sensitivity {_pct(row.get('sensitivity'))}, "
                         f"specificity {_pct(row.get('specificity'))}")
        weak = block.get("weak_hits")
        if isinstance(weak, dict) and weak.get("events"):
            lines.append(f"    weak hits: {weak['events']} events, sensitivity {_pct(weak.get('sensitivity'))}")
    return lines


def _calibration_lines(calibration: Any) -> list[str]:
    if not calibration:
        return ["calibration: none recorded (scores are the network's, not calibrated probabilities)"]
    if not isinstance(calibration, dict):
        return [f"calibration: {calibration}"]
    text = ", ".join(f"{k} {v}" for k, v in sorted(calibration.items()) if not isinstance(v, (list, dict)))
    return [f"calibration: {text or 'recorded (see --json)'}"]


def describe(meta: Any, path: str) -> str:
    """The text ``inspect`` prints for the metadata ``meta`` of ``path``."""
    training = meta.training or {}
    detector = training.get("detector") or {}
    center = meta.crop_center
    lines = [
        f"model: {path}",
        f"architecture: {meta.architecture}, input {'x'.join(map(str, meta.input_shape))}, "
        f"classes {', '.join(meta.class_order)}",
        f"threshold: {meta.threshold:g} (a frame is a hit when its score is at least this)",
        f"crop: {meta.crop_shape[0]}x{meta.crop_shape[1]} around "
        + (f"the beam center {center[0]:g},{center[1]:g} (row,col)" if center else "the frame center, or --center ROW,COL"),
        f"normalization: {meta.normalize}" + (f" {json.dumps(meta.normalize_params)}" if meta.normalize_params else ""),
        f"mask: {'bad pixels read as background (the detector mask is used)' if meta.use_mask else 'not used (raw frames)'}"
        + (f"; trained with {training['mask']}" if training.get("mask") else ""),
    ]
    if detector:
        shapes = ", ".join("x".join(map(str, s)) for s in detector.get("frame_shapes") or [])
        panels = detector.get("panels", "?")
        lines.append(f"detector: {panels} panel{'' if panels == 1 else 's'}, frames {shapes or '?'}"
                     + (f", geometry {detector['geometry']}" if detector.get("geometry") else ""))
    if training:
        lines.append(f"training runs: {_runs(training.get('train_runs'))} ({training.get('train_events', '?')} events, "
                     f"{training.get('train_hits', '?')} hits); validation: "
                     f"{_runs(training.get('val_runs')) if training.get('val_runs') else training.get('validation', '-')}")
        lines.append(f"training: {training.get('epochs_run', '?')} of {training.get('max_epochs', '?')} epochs "
                     f"(best {training.get('best_epoch', '?')}), seed {training.get('seed', '?')}, "
                     f"labels {training.get('labels', '?')}")
    else:
        lines.append("training: no record in the file")
    lines.append("metrics:" if meta.metrics else "metrics: none recorded")
    lines += _metric_lines(meta.metrics or {})
    lines += _calibration_lines(getattr(meta, "calibration", None))
    lines.append(f"package version: {meta.package_version} (format {meta.format_version}); created {meta.created or '?'}")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.keras", nargs="?", default=None,
                        help="the model file (default: the small model shipped with the package)")
    parser.add_argument("--json", action="store_true", help="print the whole metadata as JSON instead")


def run(args: argparse.Namespace) -> int:
    from sfx_cnn_veto.cli_commands import model_path
    from sfx_cnn_veto.core.model import VetoModel

    path = model_path(args)
    meta = VetoModel.read_metadata(path)
    print(json.dumps(asdict(meta), indent=2, sort_keys=True) if args.json else describe(meta, path))
    return 0
