"""Sweeps through ``hydra/launcher=slurm`` on a real (single-node) Slurm cluster.

Needs the Debian packages slurm-wlm and munge and root (``.ci/run`` installs them and sets
PUREBENCH_REQUIRE_SLURM=1, which turns the skip into a failure).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import cluster, missing

from purebench.eval.runner import evaluate

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]  # fmt: skip
ZEROPUR = ["defense=zeropur", "defense.gs_steps=2", "defense.ap_steps=4", "attack=pgd", "attack.steps=3",
           "attack.verbose=false", "n_examples=32", "batch_size=4", "threat.n_eval=2", "figures=0", "threads=1"]  # fmt: skip


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    reason = missing()
    if reason:
        if os.environ.get("PUREBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"no Slurm cluster: {reason}; PUREBENCH_REQUIRE_SLURM=1 forbids skipping")
        pytest.skip(reason)
    with cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def _sweep(env: dict[str, str], results: Path, sweep_dir: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "purebench", *args, f"results_dir={results}", f"hydra.sweep.dir={sweep_dir}",
               *LAUNCHER, "--multirun"]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(results: Path) -> list[dict[str, str]]:
    with open(results / "leaderboard.csv") as f:
        return list(csv.DictReader(f))


def test_a_sweep_runs_every_job_on_slurm(slurm, data_root, tmp_path):
    results = tmp_path / "results"
    sweep = _sweep(slurm, results, tmp_path / "sweep", "defense=none,median_blur", "attack=pgd", "attack.steps=2",
                   "attack.verbose=false", "n_examples=8", "batch_size=4", "figures=0", "threads=1")  # fmt: skip
    _, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err[-3000:]
    assert sorted(r["defense"] for r in _rows(results)) == ["median_blur", "none"]


def test_a_killed_job_resumes_from_its_finished_batches(slurm, data_root, tmp_path, make_cfg, request):
    results, sweep_dir = tmp_path / "results", tmp_path / "sweep"
    first = _sweep(slurm, results, sweep_dir, *ZEROPUR)
    request.addfinalizer(lambda: first.poll() is None and first.kill())  # never leave the launcher waiting
    deadline = time.time() + 300
    while not list((results / "partial").rglob("batch-*.json")) and time.time() < deadline:
        time.sleep(0.2)
    assert list((results / "partial").rglob("batch-*.json")), "the job saved no batch in time"
    # The job's processes die as under the OOM killer or a node failure. (A plain scancel is not used: submitit
    # ignores its SIGTERM, and on this single-node cluster the job finished within the grace time.)
    [job] = subprocess.run(["squeue", "-h", "-o", "%i", "--name=purebench"], env=slurm, capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    listed = subprocess.run(["scontrol", "listpids", job], env=slurm, capture_output=True, text=True).stdout
    pids = [int(line.split()[0]) for line in listed.splitlines()[1:] if line.split()[0].isdigit()]
    assert pids, listed
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while job in subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm, capture_output=True, text=True).stdout:
        assert time.time() < deadline, "the killed job stayed in the queue"
        time.sleep(0.5)
    # Without accounting (sacct) submitit cannot tell that the job died and keeps waiting; the user stops it.
    first.send_signal(signal.SIGINT)
    try:
        first.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # submitit may keep polling after Ctrl-C: stop it as a second Ctrl-C would
        first.kill()
        first.communicate()
    assert not (results / "leaderboard.csv").exists()  # killed before its row
    again = _sweep(slurm, results, sweep_dir, *ZEROPUR)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    logs = "".join(p.read_text(errors="replace") for p in sweep_dir.rglob("*") if p.suffix in (".log", ".out", ".err"))
    assert "resumed:" in logs  # the re-submitted job reused the killed one's finished batches
    [row] = _rows(results)
    whole = evaluate(make_cfg(*ZEROPUR, f"results_dir={tmp_path / 'whole'}"))
    for key in ("sa", "ra", "ra_worst", "ra_vote", "adv_acc_undefended", "n_examples"):
        assert float(row[key]) == float(whole[key]), key
    run_file = json.loads((results / "runs" / f"{row['run_id']}.json").read_text())
    assert [e["index"] for e in run_file["per_example"]] == list(range(32))
