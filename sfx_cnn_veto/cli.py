"""The ``sfx-cnn-veto`` console script: one parser, sub-commands from plugins.

Exit codes (documented in the README):

* 0: everything done, every event decided;
* 1: user error (bad arguments, missing file, bad model or config, an output that cannot be
  written): one line on stderr;
* 2: the run finished but some events could not be decided (they are in the
  error list or scores CSV with a reason, and kept as hits unless told otherwise);
* 3: an unexpected internal error (a bug: please report it with ``--verbose`` output);
* 4: ``train`` failed: the model's held-out sensitivity or specificity is below 50%; it is
  written as ``NAME.failed.keras`` (marked failed in its metadata), not to ``NAME.keras``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Sequence

from sfx_cnn_veto import __version__
from sfx_cnn_veto.errors import VetoError

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_EVENT_ERRORS = 2
EXIT_INTERNAL = 3
EXIT_TRAINING_FAILED = 4

PROG = "sfx-cnn-veto"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def build_parser(pm=None) -> argparse.ArgumentParser:
    from sfx_cnn_veto import manager

    parser = _Parser(
        prog=PROG,
        description="A CNN hit/miss veto for serial crystallography frames (OM, psana, CrystFEL).",
        epilog="Exit codes: 0 ok, 1 user error, 2 some events could not be decided, 3 internal error, "
               "4 training failed (a useless model, written as NAME.failed.keras).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, spec in sorted(manager.commands(pm).items()):
        cmd = sub.add_parser(name, help=spec.help, description=spec.help, aliases=list(spec.aliases))
        cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks and debug logging")
        spec.configure(cmd)
        cmd.set_defaults(_run=spec.run)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line, like the errors (``--verbose`` keeps Python's form, with the source line)."""
    return f"{PROG}: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    if not verbose:
        warnings.formatwarning = _one_line_warning
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        from sfx_cnn_veto.cli_commands import join_pair_arguments

        parser = build_parser()
        args = parser.parse_args(join_pair_arguments(argv))
        if not getattr(args, "_run", None):
            parser.print_help()
            return EXIT_USER_ERROR
        return int(args._run(args) or 0)
    except VetoError as exc:
        if verbose:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # a file that cannot be read or written (permissions, no such directory, disk full)
        if verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{PROG}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - one line unless --verbose
        if verbose:
            raise
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
