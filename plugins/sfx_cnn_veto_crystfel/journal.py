"""The checkpoint journal of ``filter-lst``: decisions of finished blocks, replayed by ``--resume``.

Events are numbered in input order and cut into blocks of ``batch_size``
consecutive events (block ``k`` = events ``k*B .. k*B+B-1``). A block is scored
as one network batch, so its scores do not depend on where a run started, how
many MPI ranks there are, or which rank scored it (TensorFlow's results differ
in the last bits between batch compositions; fixed blocks make them identical).

The journal is a directory ``OUTPUT.journal/`` beside the hits list:

``meta.json``
    what the scores depend on (inputs, prefix, data set, batch size, the
    backend ``auto`` resolved to, and the contents of the model, ``--config``,
    ``--mask`` and ``--geometry`` files); a resume with other settings is refused.
``sNNNN-rNNNN.jsonl``
    one file per run session and rank; one JSON line per finished block
    (per event: line, path, event, score, error and, for an audited event,
    peakfinder8's peak count or why it failed),
    written with a single ``write`` (fsynced at least once a second), in increasing block order.
    A line cut by a crash is not valid JSON (or lacks its newline) and is
    ignored: its block is scored again.
"""

from __future__ import annotations

import glob
import hashlib
import heapq
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Iterator

from sfx_cnn_veto.errors import ConfigError

log = logging.getLogger(__name__)

#: 2: the fingerprint holds the resolved backend and the contents of --config, --mask and --geometry
JOURNAL_FORMAT = 2
_SESSION = re.compile(r"s(\d{4,})-r(\d{4,})\.jsonl$")


@dataclass(frozen=True)
class Event:
    """One decided event as kept in the journal."""

    line: str          # the .lst line (canonical ``path //N``)
    path: str          # the file name as written in the input
    event: str | None  # canonical event ID or None
    score: float | None
    error: str | None
    audit: int | str | None = None  # audited: peakfinder8's peak count, or why it failed; None: not audited


@dataclass(frozen=True)
class Block:
    index: int
    session: int
    events: tuple[Event, ...]

    @property
    def digest(self) -> str:
        return block_digest(e.line for e in self.events)


def block_digest(lines) -> str:
    h = hashlib.blake2b(digest_size=12)
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


class Journal:
    """The journal directory of one output list."""

    def __init__(self, output: str) -> None:
        self.dir = os.path.abspath(output) + ".journal"
        self.meta_path = os.path.join(self.dir, "meta.json")

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    # -- meta ---------------------------------------------------------------
    def read_meta(self) -> dict | None:
        try:
            with open(self.meta_path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def create(self, meta: dict) -> None:
        """A fresh journal (an old one is removed)."""
        self.remove()
        os.makedirs(self.dir, exist_ok=True)
        tmp = self.meta_path + ".part"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"format": JOURNAL_FORMAT, **meta}, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.meta_path)

    def check_meta(self, meta: dict) -> None:
        """Refuse to resume a journal written with settings that change the scores."""
        old = self.read_meta()
        if old is None:
            raise ConfigError(f"{self.dir}: the journal has no readable meta.json; delete the directory and rerun")
        differences = [
            f"{key}: was {old.get(key)!r}, now {value!r}"
            for key, value in sorted({"format": JOURNAL_FORMAT, **meta}.items())
            if old.get(key) != value
        ]
        if differences:
            raise ConfigError(
                f"cannot resume: the interrupted run used other settings ({'; '.join(differences)}); "
                f"rerun without --resume to start over"
            )

    def remove(self) -> None:
        if not self.exists():
            return
        for name in os.listdir(self.dir):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

    # -- sessions -----------------------------------------------------------
    def session_files(self) -> list[tuple[int, int, str]]:
        out = []
        for path in glob.glob(os.path.join(glob.escape(self.dir), "s*-r*.jsonl")):
            match = _SESSION.search(os.path.basename(path))
            if match:
                out.append((int(match.group(1)), int(match.group(2)), path))
        return sorted(out)

    def next_session(self) -> int:
        files = self.session_files()
        return (max(s for s, _, _ in files) + 1) if files else 0

    def writer(self, session: int, rank: int) -> "BlockWriter":
        return BlockWriter(os.path.join(self.dir, f"s{session:04d}-r{rank:04d}.jsonl"), session)

    # -- replay -------------------------------------------------------------
    @staticmethod
    def _read_file(path: str, session: int) -> Iterator[Block]:
        with open(path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    log.info("%s: ignoring a block cut by a crash", path)
                    return
                try:
                    data = json.loads(raw.decode("utf-8"))
                    events = tuple(
                        Event(_unescape(e[0]), _unescape(e[1]), _unescape(e[2]), e[3], _unescape(e[4]),
                              _unescape(e[5]) if len(e) > 5 else None)
                        for e in data["e"]
                    )
                    yield Block(int(data["k"]), session, events)
                except (ValueError, KeyError, IndexError, TypeError):
                    log.info("%s: ignoring an unreadable block line", path)
                    return

    def blocks(self) -> Iterator[Block]:
        """Every finished block in block order; where a block was scored twice, the latest session wins."""
        streams = [self._read_file(path, session) for session, _rank, path in self.session_files()]
        merged = heapq.merge(*streams, key=lambda b: (b.index, -b.session))
        last = None
        for block in merged:
            if block.index == last:
                continue
            last = block.index
            yield block

    def done(self) -> dict[int, tuple[int, str]]:
        """``{block index: (number of events, digest of their lines)}`` of finished blocks."""
        return {b.index: (len(b.events), b.digest) for b in self.blocks()}


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _unescape(text):
    if isinstance(text, list):  # ["b", hex] : raw bytes
        return bytes.fromhex(text[1]).decode("utf-8", "surrogateescape")
    return text


def _field(text: str | None):
    if text is None:
        return None
    if _has_surrogates(text):
        return ["b", text.encode("utf-8", "surrogateescape").hex()]
    return text


class BlockWriter:
    """Appends finished blocks to one session file, one JSON line each.

    Each block is handed to the OS at once (a killed process loses nothing
    written); ``fsync`` runs at most every ``sync_every`` seconds and on close,
    so that a power cut loses at most that much work (a line it cuts is
    ignored on replay) without an fsync per batch slowing small frames down.
    """

    def __init__(self, path: str, session: int, *, sync_every: float = 1.0) -> None:
        self.path = path
        self.session = session
        self.sync_every = sync_every
        self._last_sync = time.monotonic()
        self._handle = open(path, "ab")

    def write(self, index: int, events: list[Event]) -> None:
        data = {
            "k": index,
            "e": [[_field(e.line), _field(e.path), _field(e.event), e.score, _field(e.error)]
                  + ([e.audit if not isinstance(e.audit, str) else _field(e.audit)] if e.audit is not None else [])
                  for e in events],
        }
        raw = (json.dumps(data, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")
        self._handle.write(raw)
        self._handle.flush()
        now = time.monotonic()
        if now - self._last_sync >= self.sync_every:
            os.fsync(self._handle.fileno())
            self._last_sync = now

    def close(self) -> None:
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        finally:
            self._handle.close()
