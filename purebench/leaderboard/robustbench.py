"""RobustBench-style JSON records, one per (dataset, classifier, defense, threat model).

Field names follow RobustBench's model-info files (clean_acc, autoattack_acc, eps, architecture,
...), so the numbers can be compared with or submitted beside RobustBench entries; purebench adds
what RobustBench cannot see for a purifier: the threat model, the attack actually used, the
worst case over repeated evaluations and the run that produced the numbers. One record holds the
most recent run of the strongest attack row (lowest RA) for its key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from purebench.eval.results import atomic_write_text
from purebench.leaderboard.table import complete


def robustbench_records(rows: Sequence[dict[str, str]], out_dir: Path) -> list[Path]:
    best: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for row in sorted(complete(rows), key=lambda r: r["finished_at"]):  # shards count only once merged
        key = (row["dataset"], row["classifier"], row["defense"], row["threat_model"])
        if key not in best or float(row["ra"]) <= float(best[key]["ra"]):
            best[key] = row
    written = []
    for (dataset, classifier, defense, threat), row in sorted(best.items()):
        record = {
            "name": defense, "architecture": classifier, "dataset": dataset, "threat_model": row["norm"],
            "eps": float(row["eps"]), "clean_acc": row["sa"], "autoattack_acc": row["ra"] if row["attack"] == "autoattack" else None,
            "robust_acc": row["ra"], "robust_acc_worst_case": row.get("ra_worst") or row["ra"], "attack": row["attack"],
            "attack_params": row.get("attack_params", ""), "purebench_threat_model": threat,
            "n_examples": int(row["n_examples"]), "defense_params": row["defense_params"], "run_id": row["run_id"],
            "commit": row["commit"], "config_hash": row["config_hash"], "additional_data": False,
        }  # fmt: skip
        path = out_dir / dataset / threat / f"{classifier}--{defense}.json"
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        written.append(path)
    return written
