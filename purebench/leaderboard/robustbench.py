"""RobustBench-style JSON records, one per (dataset, classifier, defense, threat model).

Field names follow RobustBench's model-info files (clean_acc, autoattack_acc, eps, architecture,
...), so the numbers can be compared with or submitted beside RobustBench entries; purebench adds
what RobustBench cannot see for a purifier: the threat model, the attack actually used, the
worst case over repeated evaluations and the run that produced the numbers.

A defense with other hyper-parameters is another defense (a sweep must not report its worst
setting as the defense's number), so the key holds ``defense_params`` and the file name a short
digest of them. Within a key the record is the evaluation on the most examples and, among those,
the strongest attack (lowest RA; the most recent run on ties).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from purebench.eval.results import atomic_write_text
from purebench.leaderboard.table import complete


def robustbench_records(rows: Sequence[dict[str, str]], out_dir: Path) -> list[Path]:
    best: dict[tuple[str, str, str, str, str], dict[str, str]] = {}
    strength = lambda r: (-int(r["n_examples"]), float(r["ra"]))  # noqa: E731
    for row in sorted(complete(rows), key=lambda r: r["finished_at"]):  # shards count only once merged
        key = (row["dataset"], row["classifier"], row["defense"], row["defense_params"], row["threat_model"])
        if key not in best or strength(row) <= strength(best[key]):
            best[key] = row
    written = []
    for stale in out_dir.glob("*/*/*.json"):  # derived output: mirrors the current rows only
        stale.unlink()
    for (dataset, classifier, defense, params, threat), row in sorted(best.items()):
        record = {
            "name": defense, "architecture": classifier, "dataset": dataset, "threat_model": row["norm"],
            "eps": float(row["eps"]), "clean_acc": row["sa"], "autoattack_acc": row["ra"] if row["attack"] == "autoattack" else None,
            "robust_acc": row["ra"], "robust_acc_worst_case": row.get("ra_worst") or row["ra"], "attack": row["attack"],
            "attack_params": row.get("attack_params", ""), "purebench_threat_model": threat,
            "n_examples": int(row["n_examples"]), "defense_params": params, "run_id": row["run_id"],
            "commit": row["commit"], "config_hash": row["config_hash"], "additional_data": False,
        }  # fmt: skip
        digest = hashlib.sha256(params.encode()).hexdigest()[:8]
        path = out_dir / dataset / threat / f"{classifier}--{defense}--{digest}.json"
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        written.append(path)
    return written
