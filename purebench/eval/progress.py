"""Per-batch results persisted as a run goes, so an interrupted run resumes where it stopped.

Each finished batch is written atomically to ``results_dir/partial/<key>/batch-<first index>.json``
where the key is the config hash (without ``shard``) and the code version. Re-running the same
command (or another shard of it) reuses every finished batch instead of recomputing it; batches
are fixed by the config, and all randomness is seeded per batch and per example, so a resumed run
yields exactly the numbers of an uninterrupted one. The batch files are removed once the run's row
is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from purebench.eval.results import write_json


class BatchStore:
    def __init__(self, results_dir: Path, key: str) -> None:
        self.dir = results_dir / "partial" / key

    def _path(self, first_index: int) -> Path:
        return self.dir / f"batch-{first_index}.json"

    def load(self, batch: list[int]) -> dict[str, Any] | None:
        """The stored record of ``batch`` (same indices), or None."""
        path = self._path(batch[0])
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        return record if record.get("indices") == list(batch) else None

    def save(self, batch: list[int], record: dict[str, Any]) -> None:
        write_json(self._path(batch[0]), {**record, "indices": list(batch)})

    def discard(self, batches: list[list[int]]) -> None:
        """Remove the records of ``batches`` (the run's row now holds them)."""
        for batch in batches:  # the folder stays: a concurrent shard may be writing into it
            self._path(batch[0]).unlink(missing_ok=True)
