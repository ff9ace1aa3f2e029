"""A FAKE indexamajig (CrystFEL is not installable here): it indexes nothing.

It records the command line it was given and reads its ``-i`` list exactly as
indexamajig does (shared/HOSTS.md): one entry a line; the event ID is what
follows the LAST space if it contains ``//``, else the whole line is a file
name; ``#`` lines are not comments; relative paths resolve against the
working directory; a line without an event ID means every frame of the file.
Each entry's frame must exist in the data set the ``-g`` geometry names
(``data = ...``), as indexamajig would need it. Any entry it could not read
is reported as indexamajig reports it ("File not found" or an event out of
range) and the exit status is 1. The report (JSON) goes to
``$FAKE_INDEXAMAJIG_REPORT``.
"""

from __future__ import annotations

import json
import os
import re
import sys


def option(argv: list[str], short: str) -> str:
    return argv[argv.index(short) + 1]


def parse_entry(line: str) -> tuple[str, str | None]:
    head, sep, tail = line.rpartition(" ")
    if sep and "//" in tail:
        return head, tail
    return line, None


def main(argv: list[str]) -> int:
    geom = dict(re.match(r"\s*([^=;]+?)\s*=\s*([^;]*?)\s*(;.*)?$", l).groups()[:2]
                for l in open(option(argv, "-g")) if "=" in l and not l.lstrip().startswith(";"))
    dataset = geom["data"]
    entries, problems = [], []
    import h5py

    with open(option(argv, "-i"), encoding="utf-8", newline="") as handle:
        for raw in handle:
            line = raw[:-1] if raw.endswith("\n") else raw
            if not line:
                continue
            path, event = parse_entry(line)
            if not os.path.isfile(path):
                problems.append(f"File not found: {path!r}")
                continue
            with h5py.File(path, "r") as f:
                frames = f[dataset].shape[0]
            if event is None:
                entries.extend([path, f"//{i}"] for i in range(frames))
                continue
            index = event[2:]
            if not index.isdigit() or int(index) >= frames:
                problems.append(f"{path} {event}: no such event (the file holds {frames} frames)")
                continue
            entries.append([path, event])
    with open(os.environ["FAKE_INDEXAMAJIG_REPORT"], "w", encoding="utf-8") as out:
        json.dump({"argv": argv, "cwd": os.getcwd(), "entries": entries, "problems": problems}, out)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
