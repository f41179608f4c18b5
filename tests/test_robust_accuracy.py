"""Robust accuracy as AutoAttack and RobustBench count it (issue 21): an example is robust only when the
defended model classifies it correctly clean and attacked, so RA <= SA; the accuracy on purified
adversarial inputs alone stays in ``acc_purified_adv``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from purebench.eval.intervals import percent_bounds
from purebench.eval.results import COLUMNS, append_row, summarise
from purebench.leaderboard.merge import merge_shards


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


def _write_run(results: Path, run_id: str, examples: list[dict[str, int]]) -> None:
    (results / "runs").mkdir(parents=True, exist_ok=True)
    (results / "runs" / f"{run_id}.json").write_text(json.dumps({"per_example": examples}))


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


def test_merged_shards_get_the_bounded_figures(tmp_path):
    board = tmp_path / "leaderboard.csv"
    halves = {"0/2": REPEATED[:3], "1/2": REPEATED[3:]}
    for k, (shard, examples) in enumerate(halves.items()):
        row = _row(f"shard{k}", shard=shard, n_eval="4", **summarise(examples, 4))
        _write_run(tmp_path, row["run_id"], examples)
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
