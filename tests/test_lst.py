"""The .lst parser follows indexamajig's rules (HOSTS.md) to the character."""

import pytest

from sfx_cnn_veto.io.events import EventRef
from sfx_cnn_veto.io.lst import lint_line, parse_line, read_lst, resolve_path


@pytest.mark.parametrize(
    "line, expected",
    [
        ("/data/run.cxi //3\n", ("/data/run.cxi", "//3")),
        ("/data/run.cxi //3", ("/data/run.cxi", "//3")),
        ("/data/my run/file.cxi //12\n", ("/data/my run/file.cxi", "//12")),  # spaces in paths
        ("/data/my run/file.cbf\n", ("/data/my run/file.cbf", None)),  # bare file name with a space
        ("/data/run.cxi\n", ("/data/run.cxi", None)),  # bare: all events
        ("/data/run.cxi //00003\n", ("/data/run.cxi", "//00003")),
        ("/data/run.cxi // 00003\n", ("/data/run.cxi // 00003", None)),  # OM's form: whole line is a name
        ("/data/run.cxi //3 \n", ("/data/run.cxi //3 ", None)),  # trailing space: whole line is a name
        ("/data/run.cxi\t//3\n", ("/data/run.cxi\t//3", None)),  # tab is no separator
        ("/data/run.cxi //3\r\n", ("/data/run.cxi", "//3")),  # CRLF tolerated
        ("# comment\n", ("# comment", None)),  # not a comment for indexamajig
        ("run_1//0 x.h5 //4\n", ("run_1//0 x.h5", "//4")),  # the LAST space counts
        ("\n", None),
        ("", None),
    ],
)
def test_parse_line(line, expected):
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("a.cxi //3 \n", "trailing whitespace"),
        ("a.cxi\t//3\n", "tab"),
        ("a.cxi // 00003\n", "space after '//'"),
        ("a.cxi //3\r\n", "CRLF"),
    ],
)
def test_lint_explains_lines_indexamajig_rejects(line, fragment):
    assert fragment in lint_line(line)


def test_lint_passes_good_line():
    assert lint_line("/x/y.cxi //3\n") is None


def test_event_ref_writes_canonical_lines():
    assert EventRef("/a b/c.cxi", "//00003").lst_line() == "/a b/c.cxi //3"
    assert EventRef("c.cbf").lst_line() == "c.cbf"
    assert EventRef("c.cxi", "//7").index == 7
    with pytest.raises(ValueError, match="expected '//N'"):
        EventRef("c.cxi", "run_1//0").index


def test_read_lst_streams_entries_with_line_numbers(tmp_path):
    lst = tmp_path / "x.lst"
    lst.write_bytes(b"a.cxi //1\n\nb.cbf\r\nc\xff.h5 //2\n")
    entries = list(read_lst(lst))
    assert [(e.path, e.event, e.lineno) for e in entries] == [
        ("a.cxi", "//1", 1),
        ("b.cbf", None, 3),
        ("c\udcff.h5", "//2", 4),  # non-UTF-8 bytes survive (surrogateescape)
    ]


def test_relative_paths_resolve_against_cwd_with_prefix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path("data/a.cxi") == str(tmp_path / "data" / "a.cxi")
    assert resolve_path("a.cxi", prefix="/beam/") == "/beam/a.cxi"
    assert resolve_path("/abs/a.cxi", prefix="") == "/abs/a.cxi"
