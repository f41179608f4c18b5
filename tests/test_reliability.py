"""Bad files, bad settings and killed processes: clear errors before compute, nothing lost or corrupted."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from purebench.classifiers.checkpoints import read_state_dict
from purebench.defenses import DEFENSES, Defense
from purebench.errors import PurebenchError
from purebench.eval import runner
from purebench.eval.atomic_files import locked
from purebench.eval.progress import BatchStore
from purebench.eval.results import COLUMNS, append_row, read_rows
from purebench.eval.runner import evaluate, resolve_device
from purebench.leaderboard.__main__ import main as leaderboard_main
from purebench.train import checkpoint

REPO = Path(__file__).resolve().parent.parent
FAST = ["defense=gaussian_blur", "attack=pgd", "attack.steps=2", "attack.verbose=false", "n_examples=8",
        "batch_size=4", "figures=0"]  # fmt: skip


def _row(run_id: str, seed: int = 0, **values: object) -> dict[str, object]:
    return {**dict.fromkeys(COLUMNS, ""), "run_id": run_id, "dataset": "cifar10", "classifier": "resnet20",
            "defense": "gaussian_blur", "defense_params": "sigma=1.0", "attack": "pgd", "threat_model": "oblivious",
            "norm": "Linf", "eps": 0.03137, "n_examples": 8, "seed": seed, "sa": 75.0, "ra": 12.5,
            "acc_purified_adv": 12.5, "config_hash": "1.69", "finished_at": f"2026-11-28T00:00:0{seed}+00:00", **values}  # fmt: skip


def _no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a batch was computed before the bad input was reported")

    monkeypatch.setattr(runner, "_evaluate_batch", refuse)


def test_a_header_only_edit_is_refused_and_the_file_is_kept(make_cfg, data_root, tmp_path, monkeypatch):
    board = tmp_path / "results" / "leaderboard.csv"
    append_row(board, _row("a", seed=1))
    append_row(board, _row("b", seed=2))
    lines = board.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace("defense_params,", "")  # the user deletes one column name from line 1 only
    board.write_text("".join(lines))
    edited = board.read_bytes()
    _no_compute(monkeypatch)
    with pytest.raises(
        PurebenchError, match=rf"line\(s\) 2, 3 do not have the {len(COLUMNS) - 1} fields .* left as it is"
    ):
        evaluate(make_cfg(*FAST))  # refused before any compute
    with pytest.raises(PurebenchError, match="left as it is"):
        append_row(board, _row("c"))
    assert board.read_bytes() == edited


def test_an_older_header_is_migrated_with_every_value_in_its_column(tmp_path):
    board = tmp_path / "leaderboard.csv"
    old = [c for c in COLUMNS if c not in ("ra_worst", "unperturbed")]
    with open(board, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old, lineterminator="\n")
        writer.writeheader()
        writer.writerow({k: v for k, v in _row("old", seed=3).items() if k in old})
    assert append_row(board, _row("new", seed=4))
    rows = read_rows(board)
    assert [(r["run_id"], r["seed"], r["config_hash"], r["ra_worst"]) for r in rows] == [
        ("old", "3", "1.69", ""), ("new", "4", "1.69", ""),
    ]  # fmt: skip
    assert board.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_a_row_is_added_once_per_run_id(tmp_path):
    board = tmp_path / "leaderboard.csv"
    assert append_row(board, _row("a")) and not append_row(board, _row("a"))
    assert [r["run_id"] for r in read_rows(board)] == ["a"]


def test_the_board_lock_excludes_other_processes_and_follows_the_umask(tmp_path):
    """filelock, not fcntl (which Windows lacks): another process cannot take the board's lock while it is held,
    can once it is released, and a new lock file is group-writable under a group umask like the board's files."""
    board = tmp_path / "leaderboard.csv"
    code = "import sys, filelock\ntry:\n    filelock.FileLock(sys.argv[1], timeout=0.2).acquire()\nexcept filelock.Timeout:\n    sys.exit(3)"
    take = [sys.executable, "-c", code, f"{board}.lock"]
    previous = os.umask(0o002)
    try:
        with locked(board):
            assert subprocess.run(take).returncode == 3
    finally:
        os.umask(previous)
    assert subprocess.run(take).returncode == 0
    assert (board.parent / "leaderboard.csv.lock").stat().st_mode & 0o777 == 0o664


def test_leaderboard_command_skips_garbage_lines_with_a_warning(tmp_path, caplog):
    board = tmp_path / "leaderboard.csv"
    append_row(board, _row("a", seed=1))
    with open(board, "a") as f:
        f.write("this line is garbage\n")
        f.write(",".join(str(v) for v in _row("b", seed=2, sa="n/a").values()) + "\n")
    append_row(board, _row("c", seed=3, threat_model="bpda"))  # appending still works
    with caplog.at_level(logging.WARNING):
        assert leaderboard_main([f"results_dir={tmp_path}"]) == 0
    assert (
        f"line 3 (1 fields for {len(COLUMNS)} header columns)" in caplog.text and "line 4 ('sa' is 'n/a'" in caplog.text
    )
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "| a |" in markdown and "| c |" in markdown and "| b |" not in markdown  # the run column


@pytest.mark.parametrize("broken", ["results_dir_is_a_file", "runs_is_a_file", "leaderboard_is_a_directory"])
def test_an_unwritable_results_dir_fails_before_any_compute(make_cfg, data_root, tmp_path, monkeypatch, broken):
    results = tmp_path / "results"
    if broken == "results_dir_is_a_file":
        results.write_text("not a directory")
    elif broken == "runs_is_a_file":
        results.mkdir()
        (results / "runs").write_text("not a directory")
    else:
        (results / "leaderboard.csv").mkdir(parents=True)
    _no_compute(monkeypatch)
    with pytest.raises(PurebenchError, match="nothing has been computed yet"):
        evaluate(make_cfg(*FAST))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_dir_fails_before_any_compute(make_cfg, data_root, tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    (tmp_path / "results").chmod(0o500)
    _no_compute(monkeypatch)
    try:
        with pytest.raises(PurebenchError, match="Permission denied"):
            evaluate(make_cfg(*FAST))
    finally:
        (tmp_path / "results").chmod(0o700)


@pytest.mark.parametrize("name", ["gpu", "cuda", "cuda:7", "meta", "tpu"])
def test_a_device_this_machine_lacks_is_one_clear_error(name):
    if name.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    with pytest.raises(PurebenchError, match="this machine has cpu"):
        resolve_device(name)
    assert resolve_device("auto").type in ("cpu", "cuda") and resolve_device("cpu").type == "cpu"


def test_cli_reports_a_device_typo_and_an_unwritable_results_dir_in_one_paragraph(tmp_path, data_root):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for args in (["device=gpu"], [f"results_dir={blocker}"]):
        done = subprocess.run(
            [sys.executable, "-m", "purebench", *FAST, f"hydra.run.dir={tmp_path / 'hydra'}",
             f"results_dir={tmp_path / 'r'}", *args],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        message = [line for line in done.stderr.splitlines() if line.startswith("purebench: error:")]
        assert done.returncode == 2 and "Traceback" not in done.stderr and len(message) == 1, done.stderr


def _interrupted_after_first_batch(make_cfg, monkeypatch, *overrides: str) -> None:
    original, calls = runner._evaluate_batch, []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate_batch", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate(make_cfg(*FAST, *overrides))
    monkeypatch.setattr(runner, "_evaluate_batch", original)


def _per_example(results: Path, row: dict) -> list[dict]:
    return json.loads((results / "runs" / f"{row['run_id']}.json").read_text())["per_example"]


def test_a_resumed_row_counts_the_stored_batches_compute_time(make_cfg, data_root, tmp_path, monkeypatch):
    """wall_s is what the cell cost: a cell resumed over sessions was recorded as its last process's time."""
    _interrupted_after_first_batch(make_cfg, monkeypatch)
    [stored] = (tmp_path / "results" / "partial").rglob("batch-0.json")
    record = json.loads(stored.read_text())["payload"]
    assert record["wall_s"] > 0  # each computed batch stores its time
    BatchStore(tmp_path / "results", stored.parent.name).save(record["indices"], {**record, "wall_s": 1000.0})
    resumed = evaluate(make_cfg(*FAST))
    assert 1000 < float(resumed["wall_s"]) < 1000 + 600


@pytest.mark.parametrize("damage", ["truncated", "edited"])
def test_a_corrupt_resume_file_is_recomputed_never_trusted(make_cfg, data_root, tmp_path, monkeypatch, damage):
    reference = evaluate(make_cfg(*FAST, f"results_dir={tmp_path / 'reference'}"))
    _interrupted_after_first_batch(make_cfg, monkeypatch)
    [stored] = (tmp_path / "results" / "partial").rglob("batch-0.json")
    if damage == "truncated":
        stored.write_text(stored.read_text()[:50])
    else:  # valid JSON with a flipped outcome: only the checksum can tell
        record = json.loads(stored.read_text())
        record["payload"]["examples"][0]["sa_correct"] ^= 1
        stored.write_text(json.dumps(record))
    resumed = evaluate(make_cfg(*FAST))
    assert "batch-0.json" in resumed["warnings"] and "recomputed" in resumed["warnings"]
    assert _per_example(tmp_path / "results", resumed) == _per_example(tmp_path / "reference", reference)


@pytest.mark.parametrize("damage", ["truncated", "over_budget"])
def test_a_corrupt_adversarial_cache_entry_is_rejected_and_the_attack_rerun(make_cfg, data_root, tmp_path, damage):
    first = evaluate(make_cfg(*FAST))
    files = sorted((tmp_path / "results" / "cache" / "adversarial").glob("*.pt"))
    assert len(files) == 2 and first["adv_cache"] == "miss"
    for path in files:
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[:100])
        else:  # a self-consistent file whose examples leave the eps-ball: the budget check catches it
            from purebench.eval.adversarial_cache import _digest

            entry = torch.load(path, weights_only=True)
            entry["x_adv"] = (entry["x_adv"] + 0.2).clamp(0, 1)
            entry["sha256"] = _digest(entry["x_adv"])
            torch.save(entry, path)
    second = evaluate(make_cfg(*FAST, "defense=median_blur"))
    assert second["adv_cache"] == "miss" and second["warnings"].count("attack recomputed") == 2
    assert second["adv_acc_undefended"] == first["adv_acc_undefended"]
    third = evaluate(make_cfg(*FAST, "defense=median_blur"))  # the rewritten entries are trusted again
    assert third["adv_cache"] == "hit" and "recomputed" not in third["warnings"]


class _NaN(Defense):
    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


class _Overshoot(Defense):
    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.5 - 0.25


DEFENSES.register("test_nan")(lambda name, classifier: _NaN())
DEFENSES.register("test_overshoot")(lambda name, classifier: _Overshoot())


@pytest.mark.parametrize(
    ("name", "message"), [("test_nan", "NaN or infinite"), ("test_overshoot", "outside \\[0, 1\\]")]
)
def test_a_purifier_output_that_cannot_be_classified_fails_naming_the_defense(make_cfg, data_root, name, message):
    with pytest.raises(PurebenchError, match=f"defense '{name}' returned .*{message}"):
        evaluate(make_cfg(*FAST, "defense=none", f"defense.name={name}"))


def _plant(path: str) -> None:
    Path(path).write_text("pickled code ran")


class _Payload:
    """Unpickling this calls :func:`_plant`: a checkpoint that carries code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant, (str(self.marker),))


def test_a_checkpoint_carrying_pickled_code_is_refused_without_running_it(make_cfg, data_root, tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    torch.save({"purifier": {"weight": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    for load in (read_state_dict, checkpoint.load):
        with pytest.raises(PurebenchError, match=r"carries pickled code or objects \(\S*_plant\).*re-save"):
            load(path)
    with pytest.raises(PurebenchError, match="carries pickled code"):
        evaluate(make_cfg(*FAST, "defense=atop", "defense.purifier=unet", f"defense.checkpoint={path}"))
    assert not marker.exists()


KILL_POINTS = ["attack", "between", "leaderboard", "published"]


def test_runs_killed_at_each_point_and_rerun_give_the_exact_records_and_one_row(make_cfg, data_root, tmp_path):
    args = [*FAST, "n_examples=12", "threads=1"]
    reference = evaluate(make_cfg(*args, f"results_dir={tmp_path / 'reference'}"))
    results = tmp_path / "results"
    board = results / "leaderboard.csv"
    append_row(board, _row("earlier-run", seed=5))  # a leaderboard that already holds finished work
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [f"results_dir={results}", f"hydra.run.dir={tmp_path / 'hydra'}", *args]
    for point in [*KILL_POINTS, None]:
        before = board.read_bytes()
        script = [str(REPO / "tests" / "_killed_run.py"), point] if point else ["-m", "purebench"]
        done = subprocess.run([sys.executable, *script, *command], cwd=REPO, env=env, capture_output=True, text=True)
        if point is None:
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == -signal.SIGKILL, (point, done.stderr)
        rows = read_rows(board)  # never torn: every line parses
        assert len(board.read_text().splitlines()) == len(rows) + 1
        if point in ("attack", "between", "leaderboard"):
            assert board.read_bytes() == before, point
    assert rows[0]["run_id"] == "earlier-run" and len(rows) == 2  # one row for the killed run
    [run_file] = (results / "runs").glob("*.json")
    assert run_file.stem == rows[1]["run_id"]
    assert json.loads(run_file.read_text())["per_example"] == _per_example(tmp_path / "reference", reference)
    assert not list((results / "partial").rglob("*.json")) and not list(results.glob(".leaderboard.csv.*"))


def test_cuda_job_gives_each_sweep_job_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [resolve_device("cuda:job", n).index for n in range(6)] == [0, 1, 2, 3, 0, 1]
    assert resolve_device("cuda:job", None) == torch.device("cuda:0")  # a single run
