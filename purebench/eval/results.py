"""Per-run result files and the shared leaderboard CSV.

Writes are atomic: a run file appears whole or not at all (temp file + rename), and leaderboard
rows are appended under an exclusive file lock, so concurrent runs (a multirun on one machine,
array jobs on a shared file system with lock support) never lose or tear a row.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

# Leaderboard columns, in order; a row may leave later (threat-specific) columns empty.
COLUMNS = [
    "run_id", "dataset", "classifier", "defense", "defense_params", "attack", "threat_model", "norm", "eps",
    "n_examples", "seed", "shard", "sa", "ra", "ra_worst", "n_eval", "clean_acc_undefended", "adv_acc_undefended",
    "unperturbed", "attack_steps", "attack_params", "attack_eot_iter", "threat_eot_iter", "threat_backprop_steps", "adv_cache", "defense_randomized",
    "randomness_detected", "wall_s", "config_hash", "commit", "version", "data_source", "warnings", "finished_at",
]  # fmt: skip


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; it replaces ``path`` when the block ends, and is
    removed if the block fails, so readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (flushed to disk before it replaces the old file)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path.lock`` for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_row(csv_path: Path, row: dict[str, Any]) -> None:
    """Append one row under the lock; columns outside :data:`COLUMNS` are an error (schema is fixed)."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"leaderboard row has unknown columns {sorted(unknown)}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    with locked(csv_path):
        new = not csv_path.exists() or csv_path.stat().st_size == 0
        if new:
            writer.writeheader()
        else:
            _migrate_header(csv_path)
        writer.writerow(row)
        # One write() of the whole row on an O_APPEND descriptor, then fsync: no torn rows.
        fd = os.open(csv_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, buf.getvalue().encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _migrate_header(csv_path: Path) -> None:
    """Rewrite a leaderboard written with an older column list to the current one (caller holds the lock)."""
    with open(csv_path, newline="") as f:
        if f.readline().strip() == ",".join(COLUMNS):
            return
        f.seek(0)
        rows = list(csv.DictReader(f))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """All leaderboard rows (empty list when there is no leaderboard yet)."""
    if not csv_path.exists():
        return []
    with locked(csv_path), open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def summarise(examples: Sequence[dict[str, int]], n_eval: int) -> dict[str, Any]:
    """The row's accuracies (percent, 2 decimals) recomputed from per-example records: one code path
    for the runner and the shard merge, so a merged row equals the unsharded run's."""
    percent = lambda values: round(100.0 * float(np.mean(values)), 2)  # noqa: E731
    return {
        "n_examples": len(examples),
        "sa": percent([e["sa_correct"] for e in examples]),
        "ra": percent([ra_hits(e) / n_eval for e in examples]),
        "ra_worst": percent([ra_hits(e) == n_eval for e in examples]),
        "clean_acc_undefended": percent([e["clean_correct"] for e in examples]),
        "adv_acc_undefended": percent([e["adv_correct"] for e in examples]),
        "unperturbed": unperturbed(examples),
    }


def ra_hits(example: dict[str, int]) -> int:
    """Correct purifications of one adversarial example (records before repeated evaluation held
    ``ra_correct`` from their single evaluation)."""
    return example["ra_hits"] if "ra_hits" in example else example["ra_correct"]


def unperturbed(examples: Sequence[dict[str, int]]) -> int | str:
    """How many adversarial examples the attack returned unchanged (AutoAttack keeps x where its
    own check found the example misclassified or never broke it); their RA is the purifier's
    accuracy on a clean image. Empty for records written before the count existed."""
    if any("perturbed" not in e for e in examples):
        return ""
    return sum(1 - e["perturbed"] for e in examples)
