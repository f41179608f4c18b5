"""The worked plugin example (examples/plugin_bitdepth) installed as a real package and run end to end.

pip installs it into a temporary folder (no network: setuptools from the environment), and the
CLI runs with that folder on PYTHONPATH: the `purebench.plugins` entry point registers the
defense and the package's Hydra search-path plugin makes `defense=bit_depth` compose.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

from conftest import REPO


def test_plugin_package_installs_and_runs_from_the_cli(tmp_path, data_root):
    source, target, results = tmp_path / "src", tmp_path / "site", tmp_path / "results"
    leftovers = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")  # of a manual install in the checkout
    shutil.copytree(REPO / "examples" / "plugin_bitdepth", source, ignore=leftovers)  # builds never litter the repo
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    built = subprocess.run([*pip, str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "PUREBENCH_DATA": str(data_root)}
    for threat in ("oblivious", "bpda"):
        done = subprocess.run(
            [sys.executable, "-m", "purebench", "defense=bit_depth", "defense.bits=4", "attack=pgd", f"threat={threat}",
             "n_examples=32", "batch_size=32", "figures=0", f"results_dir={results}", f"hydra.run.dir={tmp_path}/h"],
            cwd=REPO, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    with open(results / "leaderboard.csv") as f:
        rows = {row["threat_model"]: row for row in csv.DictReader(f)}
    assert {row["defense"] for row in rows.values()} == {"bit_depth"}
    assert rows["bpda"]["defense_params"] == "bits=4"  # the package's config composed, the override applied
    assert float(rows["bpda"]["sa"]) >= 75  # 4-bit images stay classifiable
    assert float(rows["bpda"]["ra"]) <= 10  # BPDA breaks a quantiser (Athalye et al. 2018)
    assert rows["bpda"]["defense_randomized"] == "False"
