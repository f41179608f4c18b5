"""Progress of a run by stage (SA purification, attack, RA purifications), also where the output is a log file.

On a terminal tqdm draws the bars. Where stdout or stderr is not one (Slurm, nohup, ``> run.log``) a bar
either vanishes or fills the log with carriage returns, and an adaptive attack on one batch runs for minutes
to hours without a word; so there, as long as INFO logging is on (the CLI's Hydra logging writes it to stdout
and the run's log file), a log line is written when a stage starts and ends and at most every
``interval_s`` seconds while it runs, with its count, elapsed time and an ETA, and each finished batch gives
the run's ETA. The attack's unit is a forward pass of the attacked model; its total is not known in advance,
so its ETA assumes as many passes as the previous batch's attack made (marked ``~``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("purebench.progress")


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: short enough for a log line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class StageProgress:
    """Log lines for the stages of each batch of a run; ``active`` says whether they are written (and then the
    caller's tqdm bars are off).

    ``batch(k)`` brackets the work on the k-th batch to compute (batches resumed from disk are never
    timed, so they do not shorten the run's ETA); ``stage(name, total, unit)`` brackets one stage and
    yields ``tick(n)``, called as its work advances."""

    def __init__(
        self, n_batches: int, interval_s: float = 60.0, interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.n_batches, self.interval_s, self.clock = n_batches, interval_s, clock
        terminal = sys.stdout.isatty() and sys.stderr.isatty() if interactive is None else interactive
        self.active = not terminal and log.isEnabledFor(logging.INFO)
        self.batch_seconds: list[float] = []
        self.label = ""
        self._remaining = 0
        self._previous: dict[str, int] = {}  # a stage's count in the previous batch: the expected total

    def note(self, message: str) -> None:
        """A one-off line about the current batch (e.g. an attack answered from the cache)."""
        if self.active:
            log.info("%s: %s", self.label, message)

    @contextmanager
    def batch(self, number: int, first: int, last: int, remaining: int) -> Iterator[None]:
        """The ``number``-th batch (1-based, of ``n_batches``), images ``first``..``last``; ``remaining`` batches
        still to compute after this one."""
        self.label, self._remaining = f"batch {number}/{self.n_batches} (images {first}-{last})", remaining
        started = self.clock()
        yield
        self.batch_seconds.append(self.clock() - started)
        if self.active:
            mean = sum(self.batch_seconds) / len(self.batch_seconds)
            left = f"; run ETA {duration(mean * remaining)} ({remaining} more)" if remaining else ""
            log.info("%s done in %s%s", self.label, duration(self.batch_seconds[-1]), left)

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "") -> Iterator[Callable[[int], None]]:
        """One stage of the current batch; ``total`` ``unit`` of work when known, else the previous batch's count
        of this stage stands in for it (ETA marked ``~``) and the first batch gives a bare count."""
        started = last = self.clock()
        count = 0
        expected = total if total is not None else self._previous.get(name)
        approx = "~" if total is None else ""
        if self.active:
            planned = f" ({approx}{expected} {_plural(unit, expected)})" if expected is not None else ""
            log.info("%s: %s started%s", self.label, name, planned)

        def tick(n: int = 1) -> None:
            nonlocal count, last
            count += n
            now = self.clock()
            if not self.active or now - last < self.interval_s:
                return
            last, elapsed = now, now - started
            of = f"/{approx}{expected}" if expected else ""
            eta = ""
            if expected and count < expected:
                eta = f", stage ETA {approx}{duration(elapsed / count * (expected - count))}"
            log.info("%s: %s %d%s %s, %s elapsed%s", self.label, name, count, of, _plural(unit, count), duration(elapsed),
                     eta)  # fmt: skip

        yield tick
        self._previous[name] = count
        if self.active:
            done = f" ({count} {_plural(unit, count)})" if count else ""
            log.info("%s: %s done in %s%s", self.label, name, duration(self.clock() - started), done)


def _plural(unit: str, count: int | None) -> str:
    """``evaluations`` -> ``evaluation``, ``forward passes`` -> ``forward pass`` for one (units are given in the
    plural)."""
    if count != 1:
        return unit
    return unit.removesuffix("es") if unit.endswith("sses") else unit.removesuffix("s")
