"""Progress of a run by stage (SA purification, attack, RA purifications), also where stdout is a log file.

On a terminal tqdm draws the bars. Where stderr is not one (Slurm, nohup, a pipe) tqdm's bars are off,
and an adaptive attack on one batch runs for minutes to hours without a word; so there a log line is
written when a stage starts and ends and at most every ``interval_s`` seconds while it runs, with its
count, elapsed time and the stage's ETA when its total is known; each finished batch adds the run's ETA.
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
    """Log lines for the stages of each batch of a run (only when stderr is not a terminal).

    ``batch(k)`` brackets the work on the k-th batch to compute (batches resumed from disk are never
    timed, so they do not shorten the run's ETA); ``stage(name, total, unit)`` brackets one stage and
    yields ``tick(n)``, called as its work advances."""

    def __init__(
        self, n_batches: int, interval_s: float = 60.0, interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.n_batches, self.interval_s, self.clock = n_batches, interval_s, clock
        self.active = not (sys.stderr.isatty() if interactive is None else interactive)
        self.batch_seconds: list[float] = []
        self.label = ""
        self._remaining = 0

    def _run_eta(self) -> str:
        if not self.batch_seconds:
            return ""
        eta = sum(self.batch_seconds) / len(self.batch_seconds) * self._remaining
        return f"; run ETA {duration(eta)}"

    @contextmanager
    def batch(self, number: int, first: int, last: int, remaining: int) -> Iterator[None]:
        """The ``number``-th batch (1-based, of ``n_batches``), images ``first``..``last``; ``remaining`` batches
        still to compute after this one."""
        self.label, self._remaining = f"batch {number}/{self.n_batches} (images {first}-{last})", remaining
        started = self.clock()
        yield
        self.batch_seconds.append(self.clock() - started)
        if self.active:
            log.info("%s done in %s%s", self.label, duration(self.batch_seconds[-1]), self._run_eta())

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "") -> Iterator[Callable[[int], None]]:
        """One stage of the current batch; ``total`` ``unit`` of work when known (an ETA), else a bare count."""
        started = last = self.clock()
        count = 0
        of = f"/{total}" if total is not None else ""
        if self.active:
            log.info("%s: %s started%s", self.label, name, f" ({total} {unit})" if total is not None else "")

        def tick(n: int = 1) -> None:
            nonlocal count, last
            count += n
            now = self.clock()
            if not self.active or now - last < self.interval_s:
                return
            last, elapsed = now, now - started
            eta = f", stage ETA {duration(elapsed / count * (total - count))}" if total and count else ""
            log.info("%s: %s %d%s %s, %s elapsed%s", self.label, name, count, of, unit, duration(elapsed), eta)

        yield tick
        if self.active:
            done = f" ({count}{of} {unit})" if count else ""
            log.info("%s: %s done in %s%s", self.label, name, duration(self.clock() - started), done)
