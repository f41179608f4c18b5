"""RobustBench-style JSON records, one per (dataset, classifier, defense, threat model).

Field names follow RobustBench's model-info files (clean_acc, autoattack_acc, eps, architecture,
...), so the numbers can be compared with or submitted beside RobustBench entries; purebench adds
what RobustBench cannot see for a purifier: the threat model, the attack actually used, the
worst case over repeated evaluations and the run that produced the numbers. Robust accuracy is
RobustBench's: an example counts only when it is classified correctly clean and attacked; rows
whose RA could not be bounded that way (old rows without their run file) are left out.

A defense with other hyper-parameters is another defense (a sweep must not report its worst
setting as the defense's number), so the key holds ``defense_params`` and the file name a short
digest of them; the other parts of the path are the key's cells made plain file names
(:func:`purebench.eval.atomic_files.safe_name`), so no cell can place a record outside ``out_dir``.
Within a key the record is the evaluation on the most examples and, among those, the strongest
attack (lowest RA; the most recent run on ties); ``autoattack_acc`` is the best AutoAttack row at
that size, and a lower RA found on fewer examples is reported beside it.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from purebench.eval.atomic_files import atomic_write_text, inside, safe_name
from purebench.eval.results import has_ra
from purebench.leaderboard.table import complete


def robustbench_records(rows: Sequence[dict[str, str]], out_dir: Path) -> list[Path]:
    """Write one record per key (see the module docstring) under ``out_dir/<dataset>/<threat>/``.

    ``out_dir`` is derived output: records of keys no longer in ``rows`` are deleted.
    """
    by_key: dict[tuple[str, str, str, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in sorted(filter(has_ra, complete(rows)), key=lambda r: r["finished_at"]):  # shards: once merged
        by_key[(row["dataset"], row["classifier"], row["defense"], row["defense_params"], row["threat_model"])].append(
            row
        )
    for stale in out_dir.glob("*/*/*.json"):
        stale.unlink()
    written = []
    for (dataset, classifier, defense, params, threat), candidates in sorted(by_key.items()):
        n = max(int(r["n_examples"]) for r in candidates)
        full = [r for r in candidates if int(r["n_examples"]) == n]
        row = _strongest(full)
        autoattack = _strongest([r for r in full if r["attack"] == "autoattack"])
        lowest = _strongest(candidates)
        record = {
            "name": defense, "architecture": classifier, "dataset": dataset, "threat_model": row["norm"],
            "eps": float(row["eps"]), "clean_acc": row["sa"], "autoattack_acc": autoattack["ra"] if autoattack else None,
            "robust_acc": row["ra"], "robust_acc_worst_case": row.get("ra_worst") or row["ra"], "attack": row["attack"],
            "attack_params": row.get("attack_params", ""), "purebench_threat_model": threat,
            "n_examples": n, "defense_params": params, "run_id": row["run_id"],
            "commit": row["commit"], "config_hash": row["config_hash"], "additional_data": False,
        }  # fmt: skip
        if float(lowest["ra"]) < float(row["ra"]):  # a smaller run found a stronger attack: say so
            record["lower_ra_on_fewer_examples"] = {
                "robust_acc": lowest["ra"], "n_examples": int(lowest["n_examples"]), "attack": lowest["attack"],
                "run_id": lowest["run_id"],
            }  # fmt: skip
        digest = hashlib.sha256(params.encode()).hexdigest()[:8]
        name = f"{safe_name(classifier)}--{safe_name(defense)}--{digest}.json"
        path = inside(out_dir, out_dir / safe_name(dataset) / safe_name(threat) / name)
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        written.append(path)
    return written


def _strongest(rows: Sequence[dict[str, str]]) -> dict[str, str] | None:
    """The row with the lowest RA (the most recent one on ties; ``rows`` are in time order)."""
    return min(reversed(rows), key=lambda r: float(r["ra"]), default=None)
