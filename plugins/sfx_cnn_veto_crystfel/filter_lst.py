"""``sfx-cnn-veto filter-lst``: veto a CrystFEL event list before indexamajig.

Every input event lands in exactly one category, hit, miss or error, and
the outputs say which:

``-o hits.lst``
    what to give ``indexamajig -i``: the hits, the errors (fail open: a frame
    that could not be scored is kept; ``--errors-as-misses`` drops them here)
    and the misses kept by ``--keep-misses-fraction``; in input order, one
    ``path //N`` line each (one space, canonical index, no trailing space).
``--misses misses.lst`` / ``--errors errors.lst``
    every miss (kept ones included) / every error; hits, misses and errors
    together are the input, once each.
``--scores scores.csv``
    ``file,event,score,is_hit,error,decision,in_hits_lst`` for every event, the
    error column holding the reason.
``audit.json`` (beside the hits list; ``--audit-json PATH``)
    the live audit (:mod:`sfx_cnn_veto.core.audit`): peakfinder8 runs on a
    deterministic ``--audit-fraction`` of the events (default 0.02, picked by
    a hash of the ``path //N`` line), vetoed or kept, and the counts give an
    estimate of the veto's sensitivity with a 95% interval and an alarm. An
    audited miss that peakfinder8 calls a hit is written to the hits list
    (label ``miss``, ``in_hits_lst`` 1): the audit rescues hits.

All outputs are written to ``PATH.part`` and renamed when complete. Decisions
are checkpointed in a journal (:mod:`.journal`) block by block; ``--resume``
replays it and scores only what is missing, giving the same bytes as an
uninterrupted run. Under ``mpirun -n N`` the blocks are dealt round-robin to
the ranks and rank 0 writes the outputs, identical to a serial run.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from sfx_cnn_veto.core import audit as A
from sfx_cnn_veto.errors import ConfigError, VetoError
from sfx_cnn_veto import hitrate
from sfx_cnn_veto.event_errors import SETUP_MISTAKE, EventErrors
from sfx_cnn_veto.io import files as atomic
from sfx_cnn_veto.io.files import file_sha256
from sfx_cnn_veto.io.lst import lint_line

from sfx_cnn_veto_crystfel.journal import Event, Journal, block_digest
from sfx_cnn_veto_crystfel import mpi
from sfx_cnn_veto_crystfel.mpi import local_size, world

log = logging.getLogger(__name__)

SCORES_HEADER = ["file", "event", "score", "is_hit", "error", "decision", "in_hits_lst"]


# ---------------------------------------------------------------------------
# Pure helpers (no TensorFlow).

def canonical(ref) -> tuple[str, str | None]:
    """``(lst line, canonical event)`` of an :class:`~sfx_cnn_veto.io.events.EventRef`."""
    line = ref.lst_line()
    if ref.event is None:
        return line, None
    return line, line[len(ref.path) + 1:]


def keep_fraction_draw(line: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the event line and seed (same on any rank, order, resume)."""
    digest = hashlib.blake2b(f"{seed}\0{line}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def explain(line: str, error: str) -> str:
    """The error, with why indexamajig would fail on the line too, if the line is malformed."""
    if line.startswith("#"):
        return f"{error}; '#' lines are not comments to indexamajig (it reads them as file names)"
    hint = lint_line(line)
    if hint and "CRLF" not in hint:
        return f"{error}; {hint}"
    return error


@dataclass
class Options:
    threshold: float
    keep_misses_fraction: float = 0.0
    seed: int = 0
    errors_as_misses: bool = False
    audit_fraction: float = 0.0
    audit_min_peaks: int = A.DEFAULT_MIN_PEAKS
    target_sensitivity: float = A.DEFAULT_TARGET


@dataclass
class Summary:
    events: int = 0
    hits: int = 0
    misses: int = 0
    kept_misses: int = 0
    errors: int = 0
    scored_now: int = 0
    elapsed: float = 0.0  # scoring time (slowest rank)
    wall: float = 0.0     # whole run, model loading and output writing included
    per_rank: list[int] = field(default_factory=list)
    rescued: int = 0      # misses kept because the audit's peakfinder8 calls them hits
    audit: A.AuditCounts | None = None

    @property
    def hit_rate(self) -> float:
        decided = self.hits + self.misses
        return self.hits / decided if decided else 0.0

    def text(self, opts: Options, output: str) -> str:
        rate = self.scored_now / self.elapsed if self.elapsed > 0 else 0.0
        kept = f", {self.kept_misses} of them kept in {output}" if self.kept_misses else ""
        err_where = "not" if opts.errors_as_misses else "kept"
        ranks = f" on {len(self.per_rank)} ranks ({'+'.join(map(str, self.per_rank))})" if len(self.per_rank) > 1 else ""
        replayed = self.events - self.scored_now
        resumed = f"; {replayed} decisions replayed from the journal" if replayed > 0 else ""
        return (
            f"filter-lst: {self.events} events in: {self.hits} hits, {self.misses} misses{kept}, "
            f"{self.errors} errors ({err_where} in {output}); hit rate {100 * self.hit_rate:.1f}% "
            f"(threshold {opts.threshold:g}); scored {self.scored_now} frames in {self.elapsed:.1f} s, "
            f"{rate:.0f} frames/s{ranks}{resumed}; {self.wall:.1f} s in all"
        )

    def audit_lines(self, output: str) -> list[str]:
        """The audit's summary line (and the ALARM line when it fires); none without an audit."""
        if self.audit is None:
            return []
        return self.audit.report_lines("filter-lst", rescued=self.rescued, kept_in=output)


def audit_verdict(event: Event, opts: Options) -> bool | None:
    """peakfinder8's verdict on an audited event (None: not audited, or peakfinder8 failed)."""
    if isinstance(event.audit, bool) or not isinstance(event.audit, int):
        return None
    return event.audit >= opts.audit_min_peaks


def classify(event: Event, opts: Options) -> tuple[str, bool, bool]:
    """``(label, is_hit, in_hits_lst)`` of a journal event under ``opts``."""
    if event.error is not None:
        return "error", not opts.errors_as_misses, not opts.errors_as_misses
    if event.score is not None and event.score >= opts.threshold:
        return "hit", True, True
    kept = opts.keep_misses_fraction > 0 and keep_fraction_draw(event.line, opts.seed) < opts.keep_misses_fraction
    return "miss", False, kept or bool(audit_verdict(event, opts))


def write_outputs(blocks: Iterator, n_events: int, *, output: str, misses: str | None, errors: str | None,
                  scores: str | None, opts: Options, rates=None) -> Summary:
    """Write every output from the journal's blocks (in order) to ``.part`` files, then rename them all."""
    paths = [p for p in (output, misses, errors, scores) if p]
    summary = Summary()
    if opts.audit_fraction > 0:
        summary.audit = A.AuditCounts(audit_fraction=opts.audit_fraction, target_sensitivity=opts.target_sensitivity)
    next_index = 0
    with atomic.writing(paths) as handles:  # a .part already opened is removed if a later one cannot be
        writer = csv.writer(handles[scores], lineterminator="\n") if scores else None
        if writer:
            writer.writerow(SCORES_HEADER)
        for block in blocks:
            if summary.events >= n_events:
                log.warning("journal block %d lies beyond the %d events of the inputs: ignored", block.index, n_events)
                continue
            if block.index != next_index:
                raise VetoError(f"internal: the journal lacks block {next_index}; rerun with --resume")
            next_index += 1
            for event in block.events:
                label, is_hit, listed = classify(event, opts)
                if rates is not None:
                    rates.add(event.path, label)
                summary.events += 1
                if summary.audit is not None and label != "error":
                    verdict = audit_verdict(event, opts)
                    summary.audit.add(vetoed=label == "miss", audited=event.audit is not None, pf8_hit=verdict)
                    summary.rescued += int(label == "miss" and bool(verdict))
                if label == "hit":
                    summary.hits += 1
                elif label == "miss":
                    summary.misses += 1
                    summary.kept_misses += int(listed)
                    if misses:
                        handles[misses].write(event.line + "\n")
                else:
                    summary.errors += 1
                    if errors:
                        handles[errors].write(event.line + "\n")
                if listed:
                    handles[output].write(event.line + "\n")
                if writer:
                    writer.writerow([
                        event.path, event.event or "",
                        "" if event.score is None else f"{event.score:.6f}",
                        int(is_hit), event.error or "", label, int(listed),
                    ])
        if summary.events != n_events:
            raise VetoError(
                f"internal: the journal holds {summary.events} decisions for {n_events} events; "
                "rerun with --resume (missing blocks are scored again)"
            )
    return summary


# ---------------------------------------------------------------------------
# The run.

def _fingerprint(args: argparse.Namespace, model: str, backend: str) -> dict[str, Any]:
    """What the scores depend on: a resume (or another rank) with any of it different is refused.

    Files that change the scores are recorded by their contents (SHA-256), not
    only their names: the model, ``--config``, ``--mask`` and ``--geometry``.
    ``backend`` is the one resolved at load (never ``auto``).
    """
    return {
        "inputs": [os.path.abspath(i) if i != "-" else "-" for i in args.inputs],
        "prefix": args.prefix,
        "dataset": args.dataset,
        "cwd": os.getcwd(),
        "model_sha256": file_sha256(model),
        "backend": backend,
        "batch_size": args.batch_size,
        "center": list(args.center) if getattr(args, "center", None) else None,
        "config": _file_entry(getattr(args, "config", None)),
        "mask": _file_entry(getattr(args, "mask", None), dataset_suffix=True),
        "file_masks": not getattr(args, "no_file_mask", False),
        "geometry": _file_entry(_geometry_file(args)),
        # the audit's peak counts are journaled: a resume must count the same events the same way
        "audit": None if not args.audit_fraction else {
            "fraction": args.audit_fraction,
            "geometry": _file_entry(args.audit_geometry),
        },
    }


def _geometry_file(args: argparse.Namespace) -> str | None:
    """The geometry the veto will use: ``--geometry``, or where the CLI resolves one (config, ``LIST.geom``)."""
    from sfx_cnn_veto import cli_commands

    resolve = getattr(cli_commands, "geometry_path", None)
    return resolve(args) if resolve is not None else getattr(args, "geometry", None)


def _file_entry(spec: str | None, *, dataset_suffix: bool = False) -> dict[str, str] | None:
    """``{"path", "sha256"}`` of an option naming a file (``FILE[:DATASET]`` when ``dataset_suffix``)."""
    if not spec:
        return None
    path, _, dataset = spec.partition(":") if dataset_suffix else (spec, "", "")
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    entry = {"path": os.path.abspath(path), "sha256": digest}
    if dataset:
        entry["dataset"] = dataset
    return entry


def _blocks_of(events: Iterator, size: int) -> Iterator[tuple[int, list]]:
    """Cut ``(ref, error)`` pairs into ``(block index, [(ref, error, line, canonical event), ...])``."""
    block: list = []
    index = 0
    for ref, error in events:
        line, event = canonical(ref)
        block.append((ref, error, line, event))
        if len(block) == size:
            yield index, block
            index += 1
            block = []
    if block:
        yield index, block


class _Counter:
    """Counts every enumerated event and hashes their lines (ranks compare it: same inputs seen)."""

    def __init__(self) -> None:
        self.n = 0
        self.hash = hashlib.blake2b(digest_size=16)

    def add(self, block) -> None:
        self.n += len(block)
        for _ref, _err, line, _ev in block:
            self.hash.update(line.encode("utf-8", "surrogateescape") + b"\n")


class _AuditCounter:
    """peakfinder8 on an audited event's full frame, with the label command's settings and the run's geometry.

    The geometry is ``--audit-geometry``, else ``--geometry``, else ``LIST.geom`` beside the first input
    list; the ADC threshold, SNR cut and the rest are ``sfx-cnn-veto label``'s defaults.

    It reads frames through a store of its own: the veto's store belongs to its prefetch thread, which
    may close or reopen a file while the audit reads it (h5py then fails with "identifier is not of
    specified type").
    """

    def __init__(self, args: argparse.Namespace) -> None:
        from sfx_cnn_veto.cli_commands import reader_options
        from sfx_cnn_veto.io.store import FrameStore
        from sfx_cnn_veto.training.commands import _FrameCounter, configure_label

        parser = argparse.ArgumentParser(add_help=False)
        configure_label(parser)
        settings = parser.parse_args(["-", "-o", "-"])
        settings.geometry = args.audit_geometry
        settings.center = ",".join(map(str, args.center)) if getattr(args, "center", None) else None
        self.frames = _FrameCounter(settings)
        self.list_path = next((i for i in args.inputs if i.endswith(".lst")), None)
        self.fraction = args.audit_fraction
        self.store = FrameStore(reader_options(args))

    def close(self) -> None:
        self.store.close()

    def __call__(self, ref, line: str) -> int | str | None:
        """The peak count of an audited event, why it could not be counted, or None (not audited)."""
        if not A.is_audited(line, self.fraction):
            return None
        from sfx_cnn_veto.training.commands import _countable

        try:
            frame = _countable(self.store.read(ref))
            counter = self.frames.counter(ref.file, tuple(frame.shape), self.list_path)
            return int(counter(frame.reshape(-1, frame.shape[-1]) if frame.ndim > 2 else frame))
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - the audit never drops a frame
            return f"audit: {type(exc).__name__}: {exc}"


def resolve_settings(args: argparse.Namespace) -> None:
    """Fill prefix, batch size and backend from ``--config`` where the command line left them out.

    The journal's fingerprint and the block size need the values that will be used.
    """
    from sfx_cnn_veto.cli_commands import config_of, list_prefix

    cfg = config_of(args)
    args.prefix = list_prefix(args)
    if args.batch_size is None:
        args.batch_size = cfg.model.batch_size
    if args.backend is None:
        args.backend = cfg.model.backend
    if args.threads is None:
        args.threads = cfg.model.threads
    args.audit_fraction = A.check_fraction(args.audit_fraction, name="--audit-fraction")
    if args.audit_geometry is None:  # the veto's: --geometry, the config's, else LIST.geom
        args.audit_geometry = _geometry_file(args)


def run(args: argparse.Namespace) -> int:
    resolve_settings(args)
    _check_options(args)
    comm = world(args.mpi)
    rank, size = comm.Get_rank(), comm.Get_size()
    if size > 1 and args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // local_size())
    start = time.perf_counter()
    journal = Journal(args.output)
    veto, session, backend = _set_up_on_rank_0(args, journal, comm, rank)
    if session is None:
        return 1
    reports = mpi.gather(comm, _score_on_this_rank(args, veto, journal, session, backend, rank, size))
    if rank != 0:
        return mpi.bcast(comm, None)
    try:
        code = _finish(args, journal, reports, start)
    except BaseException:
        mpi.bcast(comm, 3)  # release the other ranks before raising
        raise
    return mpi.bcast(comm, code)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse options out of range and outputs that clash or cannot be written, before any work."""
    from sfx_cnn_veto.cli_commands import check_writable

    if not 0.0 <= args.keep_misses_fraction <= 1.0:
        raise ConfigError(f"--keep-misses-fraction: expected a number in [0, 1], got {args.keep_misses_fraction}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    if not 0.0 <= args.target_sensitivity <= 1.0:
        raise ConfigError(f"--target-sensitivity: expected a number in [0, 1], got {args.target_sensitivity}")
    if args.audit_min_peaks < 1:
        raise ConfigError(f"--audit-min-peaks: expected a positive integer, got {args.audit_min_peaks}")
    outputs = [p for p in (args.output, args.misses, args.errors, args.scores, args.plot) if p]
    if args.audit_fraction > 0:
        outputs.append(audit_json_path(args))
    if len({os.path.abspath(p) for p in outputs}) != len(outputs):
        raise ConfigError("the output files must all be different")
    for path in outputs:
        if os.path.abspath(path) in {os.path.abspath(i) for i in args.inputs}:
            raise ConfigError(f"{path}: output would overwrite an input")
    check_writable(*outputs)
    hitrate.make(args)  # a bad --hit-rate-every now, not after scoring
    for item in args.inputs:
        if item.endswith((".lst", ".txt")) and not os.path.exists(item):
            raise ConfigError(f"{item}: event list not found")
    if args.resume and "-" in args.inputs:
        raise ConfigError("--resume needs inputs read from files, not standard input")


def _set_up_on_rank_0(args: argparse.Namespace, journal: Journal, comm, rank: int):
    """Rank 0 loads the model (the journal records the backend it resolved to) and prepares the journal;
    the others wait for its verdict, which they must hear whatever goes wrong.

    ``(veto or None, session, backend)``; ``session`` is None on a rank other than 0 when set-up failed
    (rank 0 raises the error).
    """
    setup_error = setup_exc = None
    session, backend, veto = 0, None, None
    if rank == 0:
        try:
            veto, session = _set_up_journal(args, journal)
            backend = veto.backend_name
        except VetoError as exc:
            setup_error, setup_exc = str(exc), exc
        except OSError as exc:
            setup_error = f"cannot set up the journal {journal.dir}: {exc}"
            setup_exc = ConfigError(setup_error)
        except BaseException as exc:  # noqa: BLE001 - told to every rank, then raised here
            setup_error, setup_exc = f"internal error: {type(exc).__name__}: {exc}", exc
    setup_error, session, backend = mpi.bcast(comm, (setup_error, session, backend))
    if setup_error:
        if rank == 0:
            raise setup_exc
        return None, None, None
    return veto, session, backend


def _score_on_this_rank(args, veto, journal: Journal, session: int, backend, rank: int, size: int) -> tuple:
    """Score this rank's blocks: ``(failure, events, hash, scored, threshold, seconds)`` for rank 0's report."""
    from sfx_cnn_veto.cli_commands import load_veto, progress, reader_options
    from sfx_cnn_veto.io.store import FrameStore, iter_events

    failure = None
    scored = 0
    counter = _Counter()
    opts_threshold = None
    scoring_time = 0.0
    try:
        if veto is None:
            veto = load_veto(args)
        if veto.backend_name != backend:
            raise ConfigError(f"rank {rank} resolved the backend to {veto.backend_name}, rank 0 to {backend} "
                              "(different installations?); pass --backend to choose one")
        opts_threshold = veto.threshold
        auditor = _AuditCounter(args) if args.audit_fraction > 0 else None
        done = journal.done() if args.resume else {}
        t0 = time.perf_counter()
        try:
            scored = _score_my_blocks(args, veto, journal, session, rank, size, done, counter,
                                      FrameStore, iter_events, reader_options, progress, auditor)
        finally:
            if auditor is not None:
                auditor.close()
        scoring_time = time.perf_counter() - t0
    except KeyboardInterrupt:
        failure = "interrupted"
    except VetoError as exc:
        failure = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported by rank 0, journal kept for --resume
        if getattr(args, "verbose", False) and size == 1:
            raise
        failure = f"internal error: {type(exc).__name__}: {exc}"
    return failure, counter.n, counter.hash.hexdigest(), scored, opts_threshold, scoring_time


def _set_up_journal(args, journal: Journal):
    """Rank 0: load the veto, then create the journal or check the one resumed; ``(veto, session)``."""
    from sfx_cnn_veto.cli_commands import load_veto, model_path
    from sfx_cnn_veto.core.model import VetoModel

    model = model_path(args)
    VetoModel.read_metadata(model)  # a missing or foreign model file: its own error, no journal
    veto = load_veto(args)
    meta = _fingerprint(args, model, veto.backend_name)
    if args.resume and journal.exists() and journal.read_meta() is None and not journal.session_files():
        journal.create(meta)  # killed while creating the journal: nothing was done yet
    elif args.resume and journal.exists():
        journal.check_meta(meta)
    elif args.resume:
        print(f"filter-lst: no journal at {journal.dir}: nothing to resume, starting from the beginning",
              file=sys.stderr)
        journal.create(meta)
    else:
        if journal.exists():
            print(f"filter-lst: discarding the journal of an earlier interrupted run ({journal.dir}); "
                  "use --resume to continue such a run", file=sys.stderr)
        journal.create(meta)
    return veto, journal.next_session()


def _score_my_blocks(args, veto, journal, session, rank, size, done, counter,
                     FrameStore, iter_events, reader_options, progress, auditor=None) -> int:
    """Score this rank's unfinished blocks, journaling each one; returns the number of frames scored."""
    batch = args.batch_size
    pending: collections.deque = collections.deque()
    skipped_blocks = 0

    def mine(store):
        nonlocal skipped_blocks
        for index, block in _blocks_of(iter_events(args.inputs, store, prefix=args.prefix), batch):
            counter.add(block)
            if index in done:
                count, digest = done[index]
                if count == len(block) and digest == block_digest(b[2] for b in block):
                    skipped_blocks += 1
                    continue
                if count == batch:
                    raise ConfigError(
                        f"cannot resume: the inputs changed since the interrupted run (events "
                        f"{index * batch}-{index * batch + batch - 1} differ); rerun without --resume"
                    )
            if index % size != rank:
                continue
            for ref, error, line, event in block:
                pending.append((index, line, event))
                yield ref, error

    writer = journal.writer(session, rank)
    scored = 0
    current: list[Event] = []
    current_index = None
    show = rank == 0
    bar = progress(desc="filter-lst" if size == 1 else f"filter-lst rank 0/{size}") if show else None
    errors = EventErrors("" if args.errors_as_misses else f" (kept in {args.output})")
    try:
        with FrameStore(reader_options(args)) as store:
            # the veto batches exactly as the blocks are cut (batch_size events, aligned)
            for ref, decision in veto.stream_events(mine(store), store):
                index, line, event = pending.popleft()
                if current and index != current_index:
                    writer.write(current_index, current)  # (only the inputs' last block is short)
                    current = []
                current_index = index
                error = explain(line, decision.error) if decision.error else None
                if error:
                    errors.report(ref, error)
                else:
                    errors.ok()
                audit = auditor(ref, line) if auditor is not None and not error else None
                current.append(Event(line, ref.path, event, None if error else float(decision.score), error, audit))
                if len(current) == batch:
                    writer.write(current_index, current)
                    current = []
                scored += 1
                if bar is not None:
                    bar.update(1, hits=decision.is_hit and not error)
            if current:
                writer.write(current_index, current)
        errors.finish(raise_setup=size == 1)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    return scored


def _finish(args, journal: Journal, reports, start: float) -> int:
    from sfx_cnn_veto.cli import EXIT_EVENT_ERRORS, EXIT_INTERNAL, EXIT_USER_ERROR

    failures = [(r, f) for r, (f, *_rest) in enumerate(reports) if f]
    if failures:
        for r, text in failures:
            where = f"rank {r}: " if len(reports) > 1 else ""
            print(f"sfx-cnn-veto: error: {where}{text}", file=sys.stderr)
        setup_mistake = any(f.startswith(SETUP_MISTAKE) for _r, f in failures)
        if any(True for _ in journal.blocks()) and not setup_mistake:
            print(f"filter-lst: stopped; finished blocks are in {journal.dir}: rerun with --resume to continue",
                  file=sys.stderr)
        else:
            journal.remove()  # nothing was done, or nothing worth resuming: leave no journal behind
        internal = any(f.startswith("internal") for _r, f in failures)
        return EXIT_INTERNAL if internal else EXIT_USER_ERROR
    counts = {(n, h) for _f, n, h, *_rest in reports}
    if len(counts) != 1:
        print("sfx-cnn-veto: error: the ranks saw different events (a file changed while being listed?): "
              f"{sorted(n for n, _ in counts)}; rerun with --resume", file=sys.stderr)
        return EXIT_USER_ERROR
    n_events = reports[0][1]
    opts = Options(threshold=reports[0][4], keep_misses_fraction=args.keep_misses_fraction,
                   seed=args.seed, errors_as_misses=args.errors_as_misses, audit_fraction=args.audit_fraction,
                   audit_min_peaks=args.audit_min_peaks, target_sensitivity=args.target_sensitivity)
    rates = hitrate.make(args)
    summary = write_outputs(journal.blocks(), n_events, output=args.output, misses=args.misses,
                            errors=args.errors, scores=args.scores, opts=opts, rates=rates)
    journal.remove()
    summary.scored_now = sum(r[3] for r in reports)
    summary.per_rank = [r[3] for r in reports]
    summary.elapsed = max(r[5] for r in reports)
    summary.wall = time.perf_counter() - start
    print(summary.text(opts, args.output), file=sys.stderr)
    hitrate.finish(rates, args)
    if summary.audit is not None:
        A.write_audit_json(audit_json_path(args), summary.audit)
        for line in summary.audit_lines(args.output):
            print(line, file=sys.stderr)
    return EXIT_EVENT_ERRORS if summary.errors else 0


def audit_json_path(args: argparse.Namespace) -> str:
    """``--audit-json``, else ``audit.json`` in the hits list's directory."""
    return A.audit_json_path(args.audit_json, args.output)


def configure(parser: argparse.ArgumentParser) -> None:
    from sfx_cnn_veto.cli_commands import add_input_arguments, add_model_arguments

    add_input_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="HITS.lst",
                        help="list for indexamajig -i: hits, errors (fail open) and kept misses, in input order")
    parser.add_argument("--misses", metavar="MISSES.lst", help="write every miss here")
    parser.add_argument("--errors", metavar="ERRORS.lst", help="write every event that could not be scored here")
    parser.add_argument("--scores", metavar="SCORES.csv",
                        help="per-event CSV: file,event,score,is_hit,error,decision,in_hits_lst (decision: hit, miss or error)")
    parser.add_argument("--keep-misses-fraction", type=float, default=0.0, metavar="F",
                        help="also keep this random, reproducible fraction of misses in the hits list (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kept-misses draw (default 0)")
    parser.add_argument("--errors-as-misses", action="store_true",
                        help="leave events that could not be scored out of the hits list (default: keep them)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its journal (OUTPUT.journal/) without rescoring")
    hitrate.add_arguments(parser)
    parser.add_argument("--mpi", choices=("auto", "on", "off"), default="auto",
                        help="MPI scale-out: auto (when run under mpirun -n N>1), on, off (default auto)")
    A.add_audit_arguments(parser, peakfinder="peakfinder8", picked_by="line", json_beside="the hits list",
                          geometry=True)
