"""The hit rate over a run: per file and per block of events, as text and as a PNG.

``filter-lst`` and ``tag-stream`` feed every decision, in input order, to a
:class:`HitRate`; it reports one line per file (several files) or per block
of ``every`` events (one file), and :meth:`HitRate.plot` draws the hit rate
of each block over the event number, files marked.
"""

from __future__ import annotations

from dataclasses import dataclass

#: at most this many report lines; the rest is summed up in one line (the PNG has them all)
MAX_LINES = 20


@dataclass
class Count:
    """Events, hits and errors of one file or block (errors are neither hit nor miss)."""

    name: str
    first: int = 0     # index of the first event (0-based, input order)
    events: int = 0
    hits: int = 0
    errors: int = 0

    @property
    def rate(self) -> float:
        decided = self.events - self.errors
        return self.hits / decided if decided else 0.0

    def line(self) -> str:
        errors = f", {self.errors} errors" if self.errors else ""
        return f"  {self.name}: {self.events} events, {self.hits} hits ({100 * self.rate:.1f}%){errors}"


class HitRate:
    """Hit-rate bookkeeping per file and per ``every`` events.

    Parameters
    ----------
    every : int
        Events per block (default 1,000).
    """

    def __init__(self, every: int = 1000) -> None:
        if every < 1:
            raise ValueError(f"events per block must be at least 1, got {every}")
        self.every = every
        self.files: list[Count] = []
        self.blocks: list[Count] = []
        self.n = 0

    def add(self, file: str, decision: str) -> None:
        """One event of ``file``, decided ``"hit"``, ``"miss"`` or ``"error"``."""
        if not self.files or self.files[-1].name != file:
            self.files.append(Count(file, self.n))
        if self.n % self.every == 0:
            self.blocks.append(Count(f"events {self.n + 1}-{self.n + self.every}", self.n))
        for count in (self.files[-1], self.blocks[-1]):
            count.events += 1
            count.hits += decision == "hit"
            count.errors += decision == "error"
        self.n += 1

    def report(self, what: str = "") -> str:
        """Lines per file when there are several, else per block of ``every`` events."""
        if not self.n:
            return ""
        by_file = len(self.files) > 1
        rows = self.files if by_file else self.blocks
        head = f"{what}hit rate per file:" if by_file else f"{what}hit rate per {self.every:,} events:"
        if not by_file and len(rows) == 1:
            return ""  # one file shorter than a block: the summary line says it all
        lines = [head] + [row.line() for row in rows[:MAX_LINES]]
        if len(rows) > MAX_LINES:
            rest = rows[MAX_LINES:]
            events, hits, errors = (sum(getattr(r, k) for r in rest) for k in ("events", "hits", "errors"))
            lines.append(f"  ... {len(rest)} more: {events} events, {hits} hits"
                         f" ({100 * hits / max(events - errors, 1):.1f}%) (see --plot)")
        return "\n".join(lines)

    def plot(self, path: str, title: str = "") -> str:
        """A PNG of the hit rate per block over the event number, file starts marked; returns ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
        centers = [b.first + b.events / 2 for b in self.blocks]
        ax.step(centers, [100 * b.rate for b in self.blocks], where="mid", color="tab:blue",
                label=f"per {self.every:,} events")
        if 1 < len(self.files) <= 200:
            for count in self.files[1:]:
                ax.axvline(count.first, color="0.8", lw=0.6)
            ax.plot([f.first + f.events / 2 for f in self.files], [100 * f.rate for f in self.files], "o",
                    ms=3, color="tab:orange", label="per file (grey lines: file starts)")
        ax.set_xlabel("event (input order)")
        ax.set_ylabel("hit rate (%)")
        ax.set_ylim(0, 100)
        ax.set_xlim(0, max(self.n, 1))
        ax.set_title(title or f"hit rate: {sum(f.hits for f in self.files)} hits in {self.n} events")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


def add_arguments(parser) -> None:
    """``--hit-rate-every N`` and ``--plot PNG`` (filter-lst, tag-stream)."""
    parser.add_argument("--hit-rate-every", type=int, default=1000, metavar="N",
                        help="report the hit rate per file, or per N events of one file (default 1000)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="draw the hit rate per N events over the run, files marked, to this PNG")


def finish(rates: HitRate, args, stream=None) -> None:
    """Print the hit-rate report and draw ``--plot``."""
    import sys

    stream = stream or sys.stderr
    text = rates.report()
    if text:
        print(text, file=stream)
    if getattr(args, "plot", None):
        rates.plot(args.plot)
        print(f"hit-rate plot: {args.plot}", file=stream)


def make(args) -> HitRate:
    """A :class:`HitRate` for ``--hit-rate-every`` (a one-line error when it is below 1)."""
    from sfx_cnn_veto.errors import ConfigError

    every = getattr(args, "hit_rate_every", 1000)
    if every < 1:
        raise ConfigError(f"--hit-rate-every: expected a positive number of events, got {every}")
    return HitRate(every)
