"""Built-in registrations of the training package: the label/train/evaluate commands and peakfinder8."""

from __future__ import annotations

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.types import CommandSpec, LabelerSpec


def _create_peakfinder8(options):
    from sfx_cnn_veto.training.peaks import create_peakfinder8

    return create_peakfinder8(options)


@hookimpl(trylast=True)
def sfxveto_labelers():
    return [
        LabelerSpec("peakfinder8", _create_peakfinder8, "OM's compiled peakfinder8 (ondamonitor), full frame"),
    ]


def _lazy(name):
    def call(*args):
        from sfx_cnn_veto.training import commands

        return getattr(commands, name)(*args)

    return call


@hookimpl(trylast=True)
def sfxveto_commands():
    return [
        CommandSpec("label", "count Bragg peaks per event (peakfinder8 or existing counts) and write a labels CSV",
                    _lazy("configure_label"), _lazy("run_label")),
        CommandSpec("train", "train a model on labelled runs (early stopping, threshold for a target sensitivity)",
                    _lazy("configure_train"), _lazy("run_train")),
        CommandSpec("evaluate", "the paper's Table II per run, figures, and the naive intensity baseline",
                    _lazy("configure_evaluate"), _lazy("run_evaluate")),
        CommandSpec("calibrate", "set a model's threshold for a new run from a few hundred labelled frames (no training)",
                    _lazy("configure_calibrate"), _lazy("run_calibrate")),
    ]
