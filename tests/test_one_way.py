"""One way to say each thing: option forms, help text, default model, column and set names."""

from __future__ import annotations

import argparse
import csv

import pytest

from sfx_cnn_veto.cli import build_parser, main
from sfx_cnn_veto.cli_commands import join_pair_arguments
from sfx_cnn_veto.testing import spot_frames, write_cxi

#: the smallest argument lists each command accepts, with a pair option to be added
COMMANDS = {
    "score": ["score", "in.lst"],
    "filter-lst": ["filter-lst", "in.lst", "-o", "hits.lst"],
    "label": ["label", "in.lst", "-o", "labels.csv"],
    "train": ["train", "--labels", "labels.csv", "-o", "m.keras"],
    "tag-stream": ["tag-stream", "in.stream", "-o", "out.stream"],
}


def parse(argv):
    return build_parser().parse_args(join_pair_arguments(list(argv)))


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("form", [["10.5,20"], ["10.5", "20"], ["10.5 20"]])
def test_center_takes_row_comma_col_and_row_space_col_on_every_command(command, form):
    args = parse([*COMMANDS[command], "--center", *form])
    assert tuple(args.center) == (10.5, 20.0)


def test_center_as_two_words_before_the_inputs_leaves_the_inputs_alone():
    args = parse(["score", "--center", "10", "20", "a.lst", "b.lst"])
    assert tuple(args.center) == (10.0, 20.0) and args.inputs == ["a.lst", "b.lst"]


@pytest.mark.parametrize("argv", [["train", "--labels", "l.csv", "-o", "m.keras"], ["show", "f.h5"]])
@pytest.mark.parametrize("form", ["64x48", "64,48", "64X48"])
def test_crop_takes_hxw_and_h_comma_w_on_train_and_show(argv, form):
    assert tuple(parse([*argv, "--crop", form]).crop) == (64, 48)


def test_a_malformed_pair_is_a_one_line_user_error(capsys):
    for argv in (["score", "x.lst", "--center", "10;20"], ["show", "f.h5", "--crop", "0x10"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "ROW,COL" in err and "HxW" in err


def _all_parsers(parser, name="sfx-cnn-veto"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _all_parsers(sub, f"{name} {sub_name}")


def test_every_option_of_every_command_has_help_text():
    missing = []
    for name, parser in _all_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_help_texts_say_center_as_the_config_key_does():
    british = [f"{name}: {action.help}" for name, parser in _all_parsers(build_parser())
               for action in parser._actions if action.help and "centre" in action.help]
    assert not british, british


def test_evaluate_needs_no_model_argument():
    assert parse(["evaluate", "--labels", "l.csv", "--report", "r"]).model is None


@pytest.fixture(scope="module")
def two_frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    frames, _ = spot_frames(2, (700, 700), seed=3)
    return write_cxi(root / "run.cxi", frames)


def test_show_without_model_scores_with_the_shipped_model(two_frames, tmp_path, capsys):
    assert main(["show", str(two_frames), "//1", "--png", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "(score " in out or "kept as hit" in out, out
    assert main(["show", str(two_frames), "//1", "--no-score", "--png", str(tmp_path / "g.png")]) == 0
    assert "(score " not in capsys.readouterr().out


def test_score_says_which_threshold_it_used(two_frames, tmp_path, capsys):
    assert main(["score", str(two_frames), "--threshold", "0.37", "-o", str(tmp_path / "s.csv")]) == 0
    assert "threshold 0.37" in capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 2


def test_report_calls_runs_outside_training_unseen():
    from sfx_cnn_veto.training.report import table_markdown

    row = {"events": 4, "hit_fraction": 0.5, "sensitivity": 1.0, "specificity": 1.0, "accuracy": 1.0,
           "tp": 2, "fp": 0, "tn": 2, "fn": 0}
    text = table_markdown({"runs": {"a": row, "b": row}, "overall": row}, ["a", "b"], train_runs=["a"])
    assert "| a | train |" in text and "| b | unseen |" in text and "validation" not in text
