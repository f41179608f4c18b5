"""Robust accuracy as AutoAttack and RobustBench count it (issue 21): an example is robust only when the
defended model classifies it correctly clean and attacked, so RA <= SA; the accuracy on purified
adversarial inputs alone stays in ``acc_purified_adv``. Old rows are bounded from their run files when read."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from purebench.eval.intervals import percent_bounds, row_bounds
from purebench.eval.results import COLUMNS, append_row, read_rows, summarise
from purebench.leaderboard.__main__ import main as leaderboard_main
from purebench.leaderboard.merge import merge_shards
from purebench.leaderboard.table import UNDERIVED, threat_pivot, with_interval

REPO = Path(__file__).resolve().parent.parent
OLD_COLUMNS = COLUMNS[: COLUMNS.index("acc_purified_adv")]  # the header before RA was bounded


def _example(index: int, sa: int, hits: int, vote: int) -> dict[str, int]:
    return {"index": index, "label": 0, "clean_correct": 1, "adv_correct": 0, "sa_correct": sa, "ra_hits": hits,
            "vote_correct": vote, "perturbed": 1}  # fmt: skip


# One evaluation: example 0 is wrong clean and right after the attack (the purifier lands on the label by chance).
SINGLE = [_example(0, sa=0, hits=1, vote=1), _example(1, 1, 1, 1), _example(2, 1, 0, 0), _example(3, 0, 0, 0)]
# Four evaluations: example 1 is wrong clean and right in all four, example 4 wrong clean and right in two.
REPEATED = [_example(0, sa=1, hits=3, vote=1), _example(1, 0, 4, 1), _example(2, 1, 4, 1), _example(3, 1, 1, 0),
            _example(4, 0, 2, 0)]  # fmt: skip


def _row(run_id: str, **values: object) -> dict[str, str]:
    row = {**dict.fromkeys(COLUMNS, ""), "run_id": run_id, "dataset": "cifar10", "classifier": "resnet20",
           "defense": "gaussian_noise", "defense_params": "sigma=0.1", "attack": "pgd", "threat_model": "oblivious",
           "norm": "Linf", "eps": "0.03137", "seed": "0", "config_hash": "h", "commit": "c", "wall_s": "1.0",
           "finished_at": "2026-01-01T00:00:00+00:00", **values}  # fmt: skip
    return {k: str(v) for k, v in row.items()}


def _write_run(results: Path, run_id: str, examples: list[dict[str, int]], config: dict | None = None) -> None:
    (results / "runs").mkdir(parents=True, exist_ok=True)
    content = {"per_example": examples, **({"config": config} if config else {})}  # merge checks shards against it
    (results / "runs" / f"{run_id}.json").write_text(json.dumps(content))


def _old_row(run_id: str, examples: list[dict[str, int]], n_eval: int, **values: object) -> dict[str, str]:
    """A row as purebench wrote it before issue 21: the accuracy on purified adversarial inputs under ``ra``."""
    figures = summarise(examples, n_eval)
    share = lambda counted: 100.0 * sum(counted) / len(examples)  # noqa: E731
    unbounded = {"ra": figures["acc_purified_adv"], "ra_worst": share(e["ra_hits"] == n_eval for e in examples),
                 "ra_vote": share(e["vote_correct"] for e in examples)}  # fmt: skip
    old = {**figures, **unbounded, "n_eval": n_eval, **values}
    old.update(row_bounds(old))  # the bounds of the unbounded figures, as they were written
    return {c: v for c, v in _row(run_id, **old).items() if c in OLD_COLUMNS}


def _write_old_board(results: Path, rows: list[dict[str, str]]) -> Path:
    board = results / "leaderboard.csv"
    board.parent.mkdir(parents=True, exist_ok=True)
    with open(board, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=OLD_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return board


def test_an_example_wrong_clean_and_right_attacked_is_not_robust():
    row = summarise(SINGLE, n_eval=1)
    assert row["sa"] == 50.0 and row["acc_purified_adv"] == 50.0  # example 0 counts in the old figure
    assert row["ra"] == row["ra_worst"] == row["ra_vote"] == 25.0  # but not in any robust one
    assert (row["ra_lo"], row["ra_hi"]) == percent_bounds(25.0, 4)  # the interval follows the bounded figure


def test_a_randomized_defense_counts_its_mean_over_evaluations_only_where_clean_is_correct():
    row = summarise(REPEATED, n_eval=4)
    assert row["sa"] == 60.0
    assert row["acc_purified_adv"] == 70.0  # (3 + 4 + 4 + 1 + 2) / 4 / 5: every example's mean
    assert row["ra"] == 40.0  # (3 + 4 + 1) / 4 / 5: examples 1 and 4 are wrong clean
    assert row["ra_worst"] == 20.0 and row["ra_vote"] == 40.0  # unbounded: 40.0 and 60.0
    assert row["ra_worst"] <= row["ra"] <= row["sa"] and row["ra_vote"] <= row["sa"]
    assert (row["ra_worst_lo"], row["ra_worst_hi"]) == percent_bounds(20.0, 5)


def test_every_committed_row_has_ra_at_most_sa():
    board = REPO / "results" / "leaderboard.csv"
    with open(board, newline="") as f:
        lines = sum(1 for _ in csv.DictReader(f))
    rows = read_rows(board)
    assert len(rows) == lines > 0
    for row in rows:
        assert row["ra"] != "", f"{row['run_id']}: RA could not be bounded from its run file"
        for figure in ("ra", "ra_worst", "ra_vote"):
            if row[figure] != "":
                assert float(row[figure]) <= float(row["sa"]), (row["run_id"], figure, row[figure], row["sa"])
        assert float(row["ra_hi"]) <= float(row["sa_hi"]) and row["acc_purified_adv"] != ""


def test_old_rows_are_bounded_from_their_run_files_when_read(tmp_path, caplog):
    results = tmp_path / "results"
    _write_run(results, "single", SINGLE)
    _write_run(results, "repeated", [{k: v for k, v in e.items() if k != "vote_correct"} for e in REPEATED])
    _write_run(results, "other", SINGLE)  # a run file whose records are not this row's
    rows = [
        _old_row("single", SINGLE, 1),
        _old_row("repeated", REPEATED, 4, ra_vote=""),  # before the vote existed: records without vote_correct
        _old_row("missing", SINGLE, 1, defense="gaussian_blur"),
        _old_row("other", REPEATED, 4, defense="median_blur"),
    ]
    board = _write_old_board(results, rows)
    text = board.read_text()
    with caplog.at_level(logging.WARNING):
        read = {r["run_id"]: r for r in read_rows(board)}
    assert board.read_text() == text  # reading never rewrites a line
    single, repeated = read["single"], read["repeated"]
    assert (single["ra"], single["ra_worst"], single["ra_vote"]) == ("25.0",) * 3 and single[
        "acc_purified_adv"
    ] == "50.0"
    assert (repeated["ra"], repeated["ra_worst"], repeated["ra_vote"]) == ("40.0", "20.0", "")
    assert repeated["acc_purified_adv"] == "70.0" and float(repeated["ra_worst_hi"]) == percent_bounds(20.0, 5)[1]
    for underived in (read["missing"], read["other"]):  # the unbounded figure is never shown as RA
        assert underived["ra"] == underived["ra_worst"] == underived["ra_lo"] == "" and underived["acc_purified_adv"]
    assert (
        "missing (run file missing)" in caplog.text
        and "other (its records give SA 50.0 and old RA 12.5)" in caplog.text
    )
    assert leaderboard_main([f"results_dir={results}"]) == 0
    markdown = (results / "leaderboard.md").read_text()
    assert markdown.count(UNDERIVED) == 4  # the two rows' cells in the tables and in the pivot
    assert (results / "leaderboard.html").read_text().count(UNDERIVED) == 2
    assert (results / "leaderboard.tex").read_text().count(UNDERIVED) == 2
    assert f"| {with_interval(single, 'sa')} | {with_interval(single, 'ra')} |" in markdown  # the bounded RA
    (record,) = [json.loads(p.read_text()) for p in (results / "robustbench").glob("*/*/*.json")]  # none without RA
    assert record["name"] == "gaussian_noise" and record["robust_acc"] == "40.0" and record["clean_acc"] == "60.0"
    assert record["robust_acc_worst_case"] == "20.0" and record["lower_ra_on_fewer_examples"]["robust_acc"] == "25.0"


def test_the_per_example_worst_case_counts_an_example_wrong_clean_as_broken(tmp_path):
    rows = []
    for threat in ("oblivious", "bpda"):  # both rungs leave examples 0 and 1 right after the attack
        row = _row(f"run-{threat}", threat_model=threat, n_eval="1", n_examples="2", sa="50.0", ra="50.0",
                   acc_purified_adv="100.0", ra_worst="50.0")  # fmt: skip
        _write_run(tmp_path, row["run_id"], [_example(0, sa=0, hits=1, vote=1), _example(1, 1, 1, 1)])
        rows.append(row)
    table = threat_pivot(rows, ["oblivious", "bpda"], tmp_path / "runs").splitlines()
    header, line = [c.strip() for c in table[2].split("|")], [c.strip() for c in table[4].split("|")]
    assert dict(zip(header, line, strict=True))["per-example worst RA %"] == "50.00"  # unbounded: 100.00


def test_merged_shards_get_the_bounded_figures(tmp_path):
    board = tmp_path / "leaderboard.csv"
    halves = {"0/2": REPEATED[:3], "1/2": REPEATED[3:]}
    for k, (shard, examples) in enumerate(halves.items()):
        row = _row(f"shard{k}", shard=shard, n_eval="4", **summarise(examples, 4))
        _write_run(tmp_path, row["run_id"], examples, {"n_examples": 5, "batch_size": 3})  # batches 0-2 and 3-4
        append_row(board, row)
    (merged,) = merge_shards(tmp_path)
    whole = summarise(REPEATED, 4)
    assert (
        (merged["ra"], merged["ra_worst"], merged["ra_vote"])
        == (40.0, 20.0, 40.0)
        == tuple(whole[k] for k in ("ra", "ra_worst", "ra_vote"))
    )
    assert merged["acc_purified_adv"] == 70.0 and merged["ra_lo"] == whole["ra_lo"]


@pytest.mark.parametrize("n_eval", [1, 4])
def test_ra_never_exceeds_sa_whatever_the_records(n_eval):
    examples = [_example(i, sa=i % 2, hits=(i // 2) % (n_eval + 1), vote=i % 3 == 0) for i in range(40)]
    row = summarise(examples, n_eval)
    assert max(row["ra"], row["ra_worst"], row["ra_vote"]) <= row["sa"]


def test_worst_combines_runs_per_example_as_an_attack_ensemble(tmp_path, capsys):
    """DiffPure's Table 1 RA: an example counts only if it survives both AutoAttack versions."""

    rand = [_example(0, 1, 1, 1), _example(1, 1, 0, 0), _example(2, 1, 1, 1), _example(3, 0, 1, 1)]
    standard = [_example(0, 1, 0, 0), _example(1, 1, 1, 1), _example(2, 1, 1, 1), _example(3, 0, 1, 1)]
    board = tmp_path / "leaderboard.csv"
    for run_id, examples in (("rand", rand), ("standard", standard)):
        _write_run(tmp_path, run_id, examples)
        append_row(board, _row(run_id, **summarise(examples, 1), n_eval=1))
    assert leaderboard_main(["worst", f"results_dir={tmp_path}", "rand", "standard"]) == 0
    out = capsys.readouterr().out
    assert out.count("oblivious, RA 50.0\n") == 2  # each row: 2 of 4 (example 3 is wrong clean)
    assert "per-example worst case over 2 runs, n=4: RA 25.00 [" in out  # only example 2 survives both
    _write_run(tmp_path, "standard", standard[:3])
    assert leaderboard_main(["worst", f"results_dir={tmp_path}", "rand", "standard"]) == 2
    assert "do not cover the same examples" in capsys.readouterr().err
