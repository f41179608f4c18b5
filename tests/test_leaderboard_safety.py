"""The leaderboard against CSVs and run files it did not write (issue 22): cells that look like paths or markup,
shard run files that do not add up, boards of unmerged shards and boards behind links."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from purebench.eval.results import COLUMNS, append_row, read_rows, summarise
from purebench.leaderboard.__main__ import main as leaderboard_main
from purebench.leaderboard.latex import latex_tables

PLAIN_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")


def _example(index: int) -> dict[str, int]:
    """A deterministic record: about a third right clean, a quarter right after the attack."""
    sa, hit = int(index % 3 != 1), int(index % 4 == 0)
    return {"index": index, "label": 0, "clean_correct": 1, "adv_correct": 0, "sa_correct": sa, "ra_hits": hit,
            "vote_correct": hit, "perturbed": 1}  # fmt: skip


def _row(run_id: str, **values: object) -> dict[str, str]:
    row = {**dict.fromkeys(COLUMNS, ""), "run_id": run_id, "dataset": "cifar10", "classifier": "resnet20",
           "defense": "gaussian_noise", "defense_params": "sigma=0.1", "attack": "pgd", "threat_model": "oblivious",
           "norm": "Linf", "eps": "0.03137", "seed": "0", "n_eval": "1", "config_hash": "c0ffee0123456789",
           "commit": "abc", "wall_s": "1.0", "finished_at": "2026-01-01T00:00:00+00:00", "n_examples": "8",
           "sa": "75.0", "ra": "50.0", "acc_purified_adv": "50.0", **values}  # fmt: skip
    return {k: str(v) for k, v in row.items()}


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_cells_cannot_place_outputs_outside_results_dir(tmp_path):
    results = tmp_path / "results"
    # Before the fix each cell led to tmp_path (ladder_x/../../escaped.png; robustbench/<dataset>/<threat>/<classifier>
    # climbing three levels from results/escaped/oblivious or from the absolute threat), never further.
    outside = {"dataset": "x/../../escaped", "classifier": "../../../escaped-classifier"}
    for k, threat in enumerate(["oblivious", str(tmp_path / "abs" / "a" / "b")]):  # two rungs: a ladder is drawn
        append_row(results / "leaderboard.csv", _row(f"run{k}", threat_model=threat, **outside))
    before = _files(tmp_path)
    assert leaderboard_main([f"results_dir={results}"]) == 0
    assert _files(tmp_path) - before <= _files(results)  # every new file is inside results_dir
    written = [p.relative_to(results) for p in _files(results) - before]
    assert all(PLAIN_NAME.fullmatch(part) for p in written for part in p.parts), written
    assert len([p for p in written if p.name.startswith("ladder_")]) == 1
    assert len([p for p in written if p.parts[0] == "robustbench"]) == 2


def test_a_run_id_that_is_no_file_name_opens_no_run_file(tmp_path, caplog):
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    secret = [_example(i) for i in range(8)]  # what runs/../../secret.json holds: records that would bound the row
    (tmp_path / "secret.json").write_text(json.dumps({"per_example": secret}))
    figures = summarise(secret, 1)
    old = _row("../../secret", sa=figures["sa"], ra=figures["acc_purified_adv"], acc_purified_adv="")  # RA unbounded
    append_row(results / "leaderboard.csv", old)
    with caplog.at_level(logging.WARNING):
        assert leaderboard_main([f"results_dir={results}"]) == 0
    (read,) = read_rows(results / "leaderboard.csv")
    assert read["ra"] == "" and "'../../secret'" in caplog.text  # read as a row without run file, named
    assert "secret.json" not in (results / "leaderboard.html").read_text()  # and not linked


def _config(n_examples: int = 16, batch_size: int = 4) -> dict[str, object]:
    return {"n_examples": n_examples, "batch_size": batch_size, "dataset": {"name": "cifar10", "sample": "first"}}


def _shards(results: Path, n: int, records: dict[int, list[dict[str, int]]] | None = None, **values: object) -> None:
    """Rows and run files of an n-way sharded run of 16 examples in batches of 4 (shard I: batches I, I+N, ...);
    ``records`` replaces some shards' records, their rows following them."""
    for i in range(n):
        examples = (records or {}).get(i) or [_example(k) for b in range(i, 4, n) for k in range(4 * b, 4 * b + 4)]
        row = _row(f"20260101T00000{i}-c0ffee01-{n}{i}0000", shard=f"{i}/{n}", **summarise(examples, 1), **values)
        (results / "runs").mkdir(parents=True, exist_ok=True)
        (results / "runs" / f"{row['run_id']}.json").write_text(
            json.dumps({"row": row, "config": _config(), "per_example": examples})
        )
        append_row(results / "leaderboard.csv", row)


def _run_file(results: Path, shard: str) -> Path:
    (row,) = [r for r in read_rows(results / "leaderboard.csv") if r["shard"] == shard]
    return results / "runs" / f"{row['run_id']}.json"


def _edit_records(path: Path, edit) -> None:
    content = json.loads(path.read_text())
    content["per_example"] = edit(content["per_example"])
    path.write_text(json.dumps(content))


def _merged(results: Path) -> list[dict[str, str]]:
    return [r for r in read_rows(results / "leaderboard.csv") if r["shard"].startswith("merged")]


def test_honest_shards_merge_into_the_figures_of_all_their_records(tmp_path, capsys):
    _shards(tmp_path, 2)
    assert leaderboard_main(["merge", f"results_dir={tmp_path}"]) == 0
    (merged,) = _merged(tmp_path)
    whole = summarise([_example(k) for k in range(16)], 1)
    assert [merged[k] for k in ("n_examples", "sa", "ra")] == [str(whole[k]) for k in ("n_examples", "sa", "ra")]
    assert PLAIN_NAME.fullmatch(merged["run_id"]) and (tmp_path / "runs" / f"{merged['run_id']}.json").is_file()


def _doubled(examples):  # the case: a shard's records twice over, every one marked correct
    return [{**e, "sa_correct": 1, "ra_hits": 1} for e in examples * 2]


@pytest.mark.parametrize(
    ("edit", "records", "culprits", "problem"),
    [
        ((0, _doubled), None, [0], "more than once"),
        ((1, lambda examples: [{**examples[0], "sa_correct": 1 - examples[0]["sa_correct"]}, *examples[1:]]), None,
         [1], "do not give its row's figures"),
        # rows that agree with their records, records that do not agree with the config's batches:
        (None, {1: [_example(k) for k in [*range(4, 8), *range(12, 16), 0]]}, [0, 1], "both hold example 0"),
        (None, {1: [_example(k) for k in range(4, 8)]}, [1], "does not hold batches 1, 3"),  # a batch lost
        (None, {0: [_example(k) for k in range(8)], 1: [_example(k) for k in range(8, 16)]}, [0], "batches 0, 2"),
    ],
)  # fmt: skip
def test_merge_refuses_shards_whose_run_files_do_not_add_up(tmp_path, capsys, edit, records, culprits, problem):
    _shards(tmp_path, 2, records)
    if edit:
        _edit_records(_run_file(tmp_path, f"{edit[0]}/2"), edit[1])
    assert leaderboard_main(["merge", f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    shards = " and ".join(f"{i}/2" for i in culprits)
    assert err.startswith(f"purebench.leaderboard: error: Shard {shards} of config c0ffee0123456789 cannot be merged")
    assert problem in err and all(f"shard={i}/2" in err for i in culprits) and "Traceback" not in err
    assert _merged(tmp_path) == []


def test_merge_names_the_shard_whose_run_file_is_missing(tmp_path, capsys):
    _shards(tmp_path, 2)
    _run_file(tmp_path, "1/2").unlink()
    assert leaderboard_main(["merge", f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "Shard 1/2 of config c0ffee0123456789" in err and "is missing" in err and "shard=1/2" in err
    assert _merged(tmp_path) == []


def test_a_board_of_unmerged_shards_is_written_and_says_to_merge(tmp_path, capsys):
    _shards(tmp_path, 2)
    assert leaderboard_main([f"results_dir={tmp_path}"]) == 0
    err = capsys.readouterr().err
    markdown = (tmp_path / "leaderboard.md").read_text()
    for text in (err, markdown):
        assert "2 row(s) are shards" in text and "not merged yet" in text
        assert f"python -m purebench.leaderboard merge results_dir={tmp_path}" in text
    assert (tmp_path / "leaderboard.html").is_file() and not (tmp_path / "sa_ra.png").exists()


def test_each_complete_shard_count_can_merge_and_only_the_latest_complete_set_does(tmp_path, capsys):
    _shards(tmp_path, 2)
    _shards(tmp_path, 4, finished_at="2026-01-02T00:00:00+00:00")
    assert leaderboard_main(["merge", f"results_dir={tmp_path}"]) == 0
    assert [r["shard"] for r in _merged(tmp_path)] == ["merged 4"]
    assert "also has a complete 2-way set; only the latest, 4-way, is merged" in capsys.readouterr().out
    assert leaderboard_main(["merge", f"results_dir={tmp_path}"]) == 0 and len(_merged(tmp_path)) == 1  # idempotent

    other = tmp_path / "incomplete"  # a complete 2-way set beside an incomplete 4-way one
    _shards(other, 2)
    _shards(other, 4, finished_at="2026-01-02T00:00:00+00:00")
    _run_file(other, "3/4").unlink()
    board = (other / "leaderboard.csv").read_text().splitlines(keepends=True)
    (other / "leaderboard.csv").write_text("".join(line for line in board if ",3/4," not in line))
    assert leaderboard_main(["merge", f"results_dir={other}"]) == 0
    assert [r["shard"] for r in _merged(other)] == ["merged 2"]


def test_cells_are_literal_text_in_markdown_and_latex(tmp_path):
    markup = {"dataset": "<img src=x onerror=alert(1)>", "defense": "<script>alert(1)</script>", "attack": "a|b`c`\\",
              "attack_params": "line\nbreak [x](javascript:y) *e* _u_", "classifier": "res~net^2"}  # fmt: skip
    append_row(tmp_path / "leaderboard.csv", _row("run0", **markup))
    assert leaderboard_main([f"results_dir={tmp_path}"]) == 0
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "<script>" not in markdown and "<img" not in markdown and "&lt;script&gt;" in markdown
    assert "a\\|b\\`c\\`\\\\" in markdown and "]\\(javascript" in markdown and "\\*e\\* \\_u\\_" in markdown
    header, rule, line = markdown.split("## &lt;img")[1].splitlines()[2:5]
    unescaped = lambda text: len(re.findall(r"(?<!\\)(?:\\\\)*\|", text))  # noqa: E731
    assert unescaped(header) == unescaped(rule) == unescaped(line)  # one cell per column, on one line
    tex = latex_tables(read_rows(tmp_path / "leaderboard.csv"))
    assert "res\\textasciitilde{}net\\textasciicircum{}2" in tex


def test_a_board_behind_a_link_stays_a_link_and_is_updated_and_locked_where_it_lives(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    (results / "leaderboard.csv").symlink_to(shared / "board.csv")
    (results / "leaderboard.md").symlink_to(shared / "board.md")
    append_row(results / "leaderboard.csv", _row("run0"))
    append_row(results / "leaderboard.csv", _row("run1", seed="1"))
    assert (results / "leaderboard.csv").is_symlink()
    assert [r["run_id"] for r in read_rows(shared / "board.csv")] == ["run0", "run1"]
    assert (shared / "board.csv.lock").exists() and not (results / "leaderboard.csv.lock").exists()
    assert leaderboard_main([f"results_dir={results}"]) == 0
    assert (results / "leaderboard.md").is_symlink() and "run1" in (shared / "board.md").read_text()


def _edit_shard(board: Path, shard: str, old: str, new: str) -> None:
    lines = board.read_text().splitlines(keepends=True)
    board.write_text("".join(line.replace(old, new) if f",{shard}," in line else line for line in lines))


def test_shards_of_different_code_are_no_set_whatever_their_commits(tmp_path, capsys):
    # Before issue 24 the shards were grouped by commit, which is 'unknown' for every run outside git: shards run
    # with different blur code were merged into one row. The code version (a hash of the code) keeps them apart.
    old, new = "0123456789abcdef", "fedcba9876543210"
    _shards(tmp_path, 2, commit="unknown", version=old)
    _edit_shard(tmp_path / "leaderboard.csv", "1/2", old, new)
    assert leaderboard_main(["merge", f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert (
        f"computed by 2 different code versions (0/2 by code {old}; 1/2 by code {new}), so they are not one set" in out
    )
    assert _merged(tmp_path) == []

    same = tmp_path / "same"  # the same code, run from a checkout and from an installed copy: one set
    _shards(same, 2, commit="90fff2cb10fb", version=new)
    _edit_shard(same / "leaderboard.csv", "1/2", "90fff2cb10fb", "unknown")
    assert leaderboard_main(["merge", f"results_dir={same}"]) == 0
    assert [(r["shard"], r["version"]) for r in _merged(same)] == [("merged 2", new)]
