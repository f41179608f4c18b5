"""``python tests/_killed_run.py POINT [overrides...]``: ``python -m purebench`` that SIGKILLs itself at POINT.

Used by the fault-injection test. The kill is delivered from inside the process at a chosen
instant, so each run stops at exactly the intended place:

- ``attack``: during the attack of the second batch (the first is finished and saved);
- ``between``: right after a batch record was saved, before the next batch starts;
- ``leaderboard``: halfway through writing the new leaderboard file;
- ``published``: after the leaderboard row was added, before the resume files are removed.
"""

from __future__ import annotations

import os
import signal
import sys

from purebench import cli
from purebench.attacks.base import Attack
from purebench.eval import results
from purebench.eval.atomic_files import atomic_path
from purebench.eval.progress import BatchStore


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    if point == "attack":
        attack_call, calls = Attack.__call__, []

        def attack_then_die(self, model, x, y):
            calls.append(1)
            if len(calls) == 2:
                die()
            return attack_call(self, model, x, y)

        Attack.__call__ = attack_then_die
    elif point == "between":
        save = BatchStore.save

        def save_then_die(self, batch, record):
            save(self, batch, record)
            die()

        BatchStore.save = save_then_die
    elif point == "leaderboard":

        def write_half_then_die(path, text):
            with atomic_path(path) as tmp, open(tmp, "w") as f:
                f.write(text[: len(text) // 2])
                f.flush()
                die()

        results.atomic_write_text = write_half_then_die
    elif point == "published":
        BatchStore.discard = lambda self, batches, shard: die()
    else:
        raise SystemExit(f"unknown kill point {point}")


if __name__ == "__main__":
    install(sys.argv[1])
    sys.argv = ["purebench", *sys.argv[2:]]
    cli.main()
