"""Progress by stage where the output is a log file (Slurm, nohup): a line per stage with counts and ETAs."""

from __future__ import annotations

import io
import logging

from purebench.eval.runner import evaluate
from purebench.eval.stages import StageProgress, duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_unit_reads_in_the_singular():
    from purebench.eval.stages import _plural

    assert [_plural(u, 1) for u in ("forward passes", "evaluations")] == ["forward pass", "evaluation"]
    assert _plural("forward passes", 2) == "forward passes"


def test_durations_read_as_seconds_minutes_hours():
    assert [duration(s) for s in (0, 42.4, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]


def test_a_stage_logs_its_start_progress_with_an_eta_and_its_end_then_the_run_eta(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="purebench.progress")
    stages = StageProgress(3, interval_s=60, interactive=False, clock=clock)
    with stages.batch(1, 0, 31, remaining=2), stages.stage("RA purification", 10, "evaluations") as tick:
        clock.now = 30
        tick(2)  # within the interval: no line
        clock.now = 120
        tick(2)  # 4 of 10 in 120 s: 180 s to go
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "batch 1/3 (images 0-31): RA purification started (10 evaluations)",
        "batch 1/3 (images 0-31): RA purification 4/10 evaluations, 2m00s elapsed, stage ETA 3m00s",
        "batch 1/3 (images 0-31): RA purification done in 2m00s (4 evaluations)",
        "batch 1/3 (images 0-31) done in 2m00s; run ETA 4m00s (2 more)",  # two more batches of 120 s
    ]


def test_on_a_terminal_the_bars_speak_and_nothing_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="purebench.progress")
    stages = StageProgress(1, interval_s=0, interactive=True)
    with stages.batch(1, 0, 3, remaining=0), stages.stage("attack pgd") as tick:
        tick(5)
    assert not caplog.records


def test_without_info_logging_the_bars_stay_on(caplog):
    """The Python API in a script with redirected output and no logging configured: silence would be worse."""
    caplog.set_level(logging.WARNING, logger="purebench.progress")
    assert not StageProgress(1, interactive=False).active


def test_an_attack_without_a_total_is_timed_against_the_previous_batch(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="purebench.progress")
    stages = StageProgress(2, interval_s=60, interactive=False, clock=clock)
    for number in (1, 2):
        with (
            stages.batch(number, 0, 0, remaining=2 - number),
            stages.stage("attack pgd", unit="forward passes") as tick,
        ):
            for _ in range(40):
                clock.now += 3
                tick(1)
    lines = [r.getMessage() for r in caplog.records]
    assert "batch 2/2 (images 0-0): attack pgd started (~40 forward passes)" in lines
    assert "batch 2/2 (images 0-0): attack pgd 20/~40 forward passes, 1m00s elapsed, stage ETA ~1m00s" in lines
    assert lines[-1] == "batch 2/2 (images 0-0) done in 2m00s"  # the last batch: no run ETA


def test_a_run_logged_to_a_file_names_every_stage_of_every_batch(make_cfg, data_root, caplog, monkeypatch):
    cfg = make_cfg("defense=gaussian_blur", "attack=pgd", "attack.steps=3", "attack.random_start=false",
                   "attack.verbose=false", "threat=adaptive", "n_examples=4", "batch_size=2")  # fmt: skip
    caplog.set_level(logging.INFO, logger="purebench.progress")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # stderr is a file: not a terminal, also under pytest -s
    evaluate(cfg)
    lines = [r.getMessage() for r in caplog.records]
    for batch in ("batch 1/2 (images 0-1)", "batch 2/2 (images 2-3)"):
        assert f"{batch}: SA purification done" in "\n".join(lines)
        assert any(line.startswith(f"{batch}: attack pgd done") for line in lines)
        assert f"{batch}: RA purification done" in "\n".join(lines)
    attack_done = next(line for line in lines if "attack pgd done" in line)
    assert attack_done.endswith("(3 forward passes)")  # one per PGD step, through the purifier
    assert "batch 2/2 (images 2-3): attack pgd started (~3 forward passes)" in lines  # the first batch's count
    assert lines[-1].startswith("batch 2/2 (images 2-3) done in") and "ETA" not in lines[-1]


def test_a_stage_without_a_total_counts_without_an_eta(caplog):
    caplog.set_level(logging.INFO, logger="purebench.progress")
    stages = StageProgress(1, interval_s=0, interactive=False)
    with stages.batch(1, 0, 0, remaining=0), stages.stage("attack apgd-ce", unit="forward passes") as tick:
        tick(7)
    assert "attack apgd-ce 7 forward passes" in caplog.records[1].getMessage()
    assert "ETA" not in caplog.records[1].getMessage()
