"""Per-batch results persisted as a run goes, so an interrupted run resumes where it stopped.

Each finished batch is written atomically to ``results_dir/partial/<key>/batch-<first index>.json``
where the key is the config hash (without ``shard``) and the code version. Re-running the same
command (or another shard of it) reuses every finished batch instead of recomputing it; batches
are fixed by the config, and all randomness is seeded per batch and per example, so a resumed run
yields exactly the numbers of an uninterrupted one. Once every batch is done the finished run
(row and run file) is stored there too, before it is published, so a run killed while publishing
is completed by the re-run with the same row instead of a second one. The files are removed once
the row is in the leaderboard.

Every record carries a SHA-256 of its content. A file that does not parse, fails its checksum or
does not describe the expected batch (truncated, edited, from a crashed disk) is never trusted:
it is recomputed, and :attr:`BatchStore.warnings` says so for the row's ``warnings``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from purebench.eval.atomic_files import write_json

_EXAMPLE_KEYS = ("index", "label", "clean_correct", "adv_correct", "sa_correct", "ra_hits", "vote_correct", "perturbed")


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class BatchStore:
    def __init__(self, results_dir: Path, key: str) -> None:
        self.dir = results_dir / "partial" / key
        self.warnings: list[str] = []

    def _path(self, first_index: int) -> Path:
        return self.dir / f"batch-{first_index}.json"

    def _run_path(self, shard: str) -> Path:
        return self.dir / f"run-{shard.replace('/', '-of-') or 'all'}.json"

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The checked payload of ``path``; None (and a warning) when it cannot be trusted."""
        if not path.exists():
            return None
        try:
            stored = json.loads(path.read_text())
            payload = stored["payload"]
            if stored["sha256"] != _digest(payload):
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            self.warnings.append(f"unreadable resume file {path.name} ({type(exc).__name__}: {exc}); recomputed")
            return None
        return payload

    def _write(self, path: Path, payload: dict[str, Any]) -> None:
        payload = json.loads(json.dumps(payload, default=str))  # the digest covers what is read back
        write_json(path, {"payload": payload, "sha256": _digest(payload)})

    def has(self, batch: list[int]) -> bool:
        """Whether ``batch`` has a stored record (unchecked: for estimates, never for results)."""
        return self._path(batch[0]).exists()

    def load(self, batch: list[int]) -> dict[str, Any] | None:
        """The stored record of ``batch`` (same indices, one well-formed example per index), or None."""
        path = self._path(batch[0])
        record = self._read(path)
        if record is None:
            return None
        examples = record.get("examples")
        well_formed = (
            isinstance(examples, list)
            and [e.get("index") if isinstance(e, dict) else None for e in examples] == list(batch)
            and all(set(_EXAMPLE_KEYS) <= set(e) for e in examples)
        )
        if record.get("indices") != list(batch) or not well_formed:
            self.warnings.append(f"resume file {path.name} does not describe batch {batch[0]}..{batch[-1]}; recomputed")
            return None
        return record

    def save(self, batch: list[int], record: dict[str, Any]) -> None:
        self._write(self._path(batch[0]), {**record, "indices": list(batch)})

    def load_run(self, shard: str) -> dict[str, Any] | None:
        """The finished run (``row`` and ``run_file``) of this shard ('' for the whole run), or None."""
        run = self._read(self._run_path(shard))
        return run if run is not None and {"row", "run_file"} <= set(run) else None

    def save_run(self, shard: str, run: dict[str, Any]) -> None:
        self._write(self._run_path(shard), run)

    def discard(self, batches: list[list[int]], shard: str) -> None:
        """Remove the records of ``batches`` and of the finished run (the leaderboard now holds them)."""
        for batch in batches:  # the folder stays: a concurrent shard may be writing into it
            self._path(batch[0]).unlink(missing_ok=True)
        self._run_path(shard).unlink(missing_ok=True)
