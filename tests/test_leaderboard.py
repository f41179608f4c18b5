"""Leaderboard outputs computed from rows alone (no evaluation needed)."""

from __future__ import annotations

import json

from purebench.leaderboard.robustbench import robustbench_records


def _row(params: str, n: int, ra: float, attack: str, finished: str) -> dict[str, str]:
    return {
        "dataset": "cifar10", "classifier": "resnet20", "defense": "zeropur", "defense_params": params,
        "threat_model": "oblivious", "norm": "Linf", "eps": "0.0314", "sa": "90.0", "ra": str(ra), "ra_worst": str(ra),
        "attack": attack, "attack_params": "", "n_examples": str(n), "run_id": f"run-{finished}", "commit": "c",
        "config_hash": "h", "shard": "", "finished_at": finished,
    }  # fmt: skip


def test_robustbench_records_keep_defense_settings_apart_and_prefer_the_largest_evaluation(tmp_path):
    out = tmp_path / "robustbench"
    stale = out / "cifar10" / "oblivious" / "resnet20--zeropur.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    rows = [
        _row("sigma=1.2", 512, 40.0, "autoattack", "2026-01-01"),
        _row("sigma=1.2", 64, 10.0, "pgd", "2026-01-02"),  # a pilot on fewer images does not stand for the defense
        _row("sigma=1.2", 512, 35.0, "pgd", "2026-01-03"),  # the strongest attack on the full evaluation does
        _row("sigma=0.6", 512, 20.0, "autoattack", "2026-01-04"),  # another setting is another record
    ]
    paths = robustbench_records(rows, out)
    records = {json.loads(p.read_text())["defense_params"]: json.loads(p.read_text()) for p in paths}
    assert len(paths) == 2 and not stale.exists()
    assert records["sigma=1.2"]["robust_acc"] == "35.0" and records["sigma=1.2"]["attack"] == "pgd"
    assert records["sigma=1.2"]["autoattack_acc"] == "40.0"  # AutoAttack's own number stays visible
    assert records["sigma=1.2"]["lower_ra_on_fewer_examples"]["n_examples"] == 64  # the pilot is not hidden
    assert records["sigma=0.6"]["autoattack_acc"] == "20.0" and "lower_ra_on_fewer_examples" not in records["sigma=0.6"]


def test_per_example_worst_case_counts_an_example_broken_by_any_threat_model(tmp_path):
    from purebench.leaderboard.table import threat_pivot

    rows = []
    for threat, hits in (("oblivious", [1, 0]), ("bpda", [0, 1])):  # each rung breaks a different example
        row = {**_row("sigma=1.2", 2, 50.0, "pgd", f"2026-01-0{len(rows) + 1}"), "threat_model": threat, "n_eval": "1"}
        field = "ra_hits" if threat == "bpda" else "ra_correct"  # runs before repeated evaluation wrote ra_correct
        per_example = [{"index": i, field: h} for i, h in enumerate(hits)]
        (tmp_path / f"{row['run_id']}.json").write_text(json.dumps({"per_example": per_example}))
        rows.append(row)
    table = threat_pivot(rows, ["oblivious", "bpda"], tmp_path).splitlines()
    header, line = [c.strip() for c in table[2].split("|")], [c.strip() for c in table[4].split("|")]
    cell = dict(zip(header, line, strict=True))
    assert cell["worst-case RA % (threat)"].startswith("50.0") and cell["per-example worst RA %"] == "0.00"
