"""Join the shards of one configuration into one leaderboard row.

Shards are grouped by config hash and code version (shards of different versions are never
mixed); a re-run shard replaces its older row, and a group is merged once it covers shards
0..N-1. SA/RA are recomputed from the per-example records
of the shards' run files (never averaged from their percentages), so the merged row equals the
row of an unsharded run, RA bounded by clean correctness as the runner's is (``summarise``).
Shard rows stay in the leaderboard, marked by their ``shard`` column.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from purebench.eval.atomic_files import write_json
from purebench.eval.results import append_row, read_rows, summarise

MERGED = "merged"


def merge_shards(results_dir: Path) -> list[dict[str, Any]]:
    """Append one merged row per complete, not yet merged group of shards; returns the new rows."""
    rows = read_rows(results_dir / "leaderboard.csv")
    groups: dict[tuple[str, str], dict[str, dict[str, str]]] = defaultdict(dict)
    merged = {(r["config_hash"], r["commit"]) for r in rows if r.get("shard", "").startswith(MERGED)}
    for row in sorted(rows, key=lambda r: r["finished_at"]):  # a re-run shard replaces the older row
        key = (row["config_hash"], row["commit"])
        if row.get("shard") and not row["shard"].startswith(MERGED) and key not in merged:
            groups[key][row["shard"]] = row
    commits: dict[str, set[str]] = defaultdict(set)
    for chash, commit in groups:
        commits[chash].add(commit)
    for chash, versions in sorted(commits.items()):
        if len(versions) > 1:
            print(
                f"purebench.leaderboard merge: shards of config {chash} come from {len(versions)} code versions "
                f"({', '.join(sorted(versions))}); each version is merged only when it has all its shards."
            )
    new_rows = []
    for (chash, _commit), by_id in sorted(groups.items()):
        shards = list(by_id.values())
        ids = sorted(by_id)
        n = int(ids[0].split("/")[1])
        if sorted(int(s.split("/")[0]) for s in ids) != list(range(n)) or any(int(s.split("/")[1]) != n for s in ids):
            print(f"purebench.leaderboard merge: config {chash} has shards {ids}, not all of 0..{n - 1}/{n}; skipped.")
            continue
        examples = []
        for shard in shards:
            examples += json.loads((results_dir / "runs" / f"{shard['run_id']}.json").read_text())["per_example"]
        examples.sort(key=lambda e: e["index"])
        n_eval = int(shards[0]["n_eval"] or 1)
        finished = dt.datetime.now(dt.UTC)
        row = {
            **shards[0],
            "run_id": f"{finished:%Y%m%dT%H%M%S}-{chash[:8]}-{uuid.uuid4().hex[:6]}",
            "shard": f"{MERGED} {n}",
            **summarise(examples, n_eval),
            "wall_s": round(sum(float(r["wall_s"]) for r in shards), 2),
            "warnings": " | ".join(sorted({w for r in shards for w in r["warnings"].split(" | ") if w})),
            "finished_at": finished.isoformat(timespec="seconds"),
        }
        write_json(
            results_dir / "runs" / f"{row['run_id']}.json",
            {"row": row, "shards": [r["run_id"] for r in shards], "per_example": examples},
        )
        append_row(results_dir / "leaderboard.csv", row)
        new_rows.append(row)
    return new_rows
