"""The code version is the code and the config hash what decides the numbers (issue 24, item 5).

Before, the version was the git commit plus a hash of git's whole dirty diff: the committed
results/leaderboard.csv is in the tree, so every run of a checkout changed it and no run could reuse
the adversarial cache of the one before; outside git it was ``unknown`` for any code. The config hash
held the data path and output settings, so one job hashed differently on two machines.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import purebench
from purebench import provenance
from purebench.config_paths import CONF_DIR
from purebench.eval.runner import evaluate
from purebench.provenance import code_version, compute_version, git_commit, source_digest

PACKAGE = Path(purebench.__file__).resolve().parent
FAST = ["attack=fgsm", "attack.verbose=false", "n_examples=8", "batch_size=4", "figures=0", "threads=1"]


def _checkout(root: Path) -> tuple[Path, Path]:
    """A copy of the checkout's code (package, conf/ with its link to experiments/) and its outputs."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PACKAGE, root / "purebench", ignore=ignore)
    shutil.copytree(CONF_DIR, root / "conf", symlinks=True)
    shutil.copytree(CONF_DIR / "experiment", root / "experiments")
    (root / "results").mkdir()
    (root / "results" / "leaderboard.csv").write_text("run_id\n")
    return root / "purebench", root / "conf"


def _edited(path: Path, text: str) -> str:
    """Append ``text`` to ``path``; returns the original content."""
    original = path.read_text()
    path.write_text(original + text)
    return original


def test_the_version_follows_the_code_and_nothing_else(tmp_path):
    package, conf = _checkout(tmp_path)
    version = source_digest(package, conf)
    (tmp_path / "results" / "leaderboard.csv").write_text("run_id\nanother row\n")  # what every run does
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "run.log").write_text("an untracked output")
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"bytecode")
    (package / "eval" / ".runner.py.swp").write_bytes(b"an editor's swap file")
    assert source_digest(package, conf) == version
    for edited in (
        package / "defenses" / "blur.py",
        package / "leaderboard" / "templates" / "leaderboard.html.j2",  # package data
        conf / "defense" / "gaussian_blur.yaml",
        tmp_path / "experiments" / "zeropur_table1.yaml",  # a recipe, through conf/experiment
    ):
        original = _edited(edited, "\n# an edit\n")
        assert source_digest(package, conf) != version, edited
        edited.write_text(original)
    assert source_digest(package, conf) == version
    (package / "defenses" / "new_defense.py").write_text("")  # a new module is new code
    assert source_digest(package, conf) != version


def test_an_installed_copy_has_the_version_of_its_checkout(tmp_path):
    package, conf = _checkout(tmp_path / "checkout")
    installed = tmp_path / "site-packages" / "purebench"  # a wheel: the configs inside the package, no link
    shutil.copytree(package, installed)
    shutil.copytree(conf, installed / "conf")
    assert source_digest(installed, installed / "conf") == source_digest(package, conf)
    assert code_version() == source_digest(PACKAGE, CONF_DIR)


def test_one_oblivious_attack_serves_every_defense_while_the_checkout_changes(
    make_cfg, data_root, tmp_path, monkeypatch
):
    from purebench.attacks.base import Attack

    package, conf = _checkout(tmp_path / "checkout")  # the running code, read from a copy that can be edited
    monkeypatch.setattr(provenance, "PACKAGE_DIR", package)
    monkeypatch.setattr(provenance, "CONF_DIR", conf)
    calls = []
    original = Attack.__call__
    monkeypatch.setattr(Attack, "__call__", lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1])

    def run(defense: str) -> dict[str, object]:
        code_version.cache_clear()  # each run reads the version afresh, as a new process would
        compute_version.cache_clear()
        return evaluate(make_cfg(f"defense={defense}", *FAST))

    rows = []
    for k, defense in enumerate(["gaussian_blur", "median_blur", "none"]):
        _edited(tmp_path / "checkout" / "results" / "leaderboard.csv", f"row {k}\n")  # `make demo` between runs
        rows.append(run(defense))
    assert [r["adv_cache"] for r in rows] == ["miss", "hit", "hit"] and len(calls) == 2  # two batches, attacked once
    assert {r["version"] for r in rows} == {source_digest(package, conf)} and rows[0]["commit"] == git_commit()
    assert len({r["adv_acc_undefended"] for r in rows}) == 1
    _edited(package / "leaderboard" / "table.py", "\n# an edit\n")  # how tables are drawn: no figure changes
    redrawn = run("gaussian_blur")
    assert redrawn["adv_cache"] == "hit" and redrawn["version"] != rows[0]["version"]  # the row names the code
    _edited(package / "defenses" / "blur.py", "\n# an edit\n")
    edited = run("gaussian_blur")
    assert edited["adv_cache"] == "miss" and edited["version"] != redrawn["version"]  # other code, attacked afresh


def test_the_same_job_hashes_the_same_wherever_its_data_and_outputs_are(make_cfg, data_root, tmp_path):
    (tmp_path / "elsewhere").symlink_to(data_root)  # another machine's copy of the same data
    job = ["defense=none", "attack=fgsm", "batch_size=4", "threads=1"]
    here = evaluate(make_cfg(*job, "n_examples=8", "attack.verbose=false", "figures=0"))
    moved = [f"dataset.root={tmp_path / 'elsewhere'}", f"results_dir={tmp_path / 'other'}", "device=cpu"]
    there = evaluate(make_cfg(*job, "n_examples=8", *moved, "attack.verbose=true", "figures=2"))
    assert here["config_hash"] == there["config_hash"] and here["data_source"] != there["data_source"]
    fewer = evaluate(make_cfg(*job, "n_examples=4", "attack.verbose=false", "figures=0"))
    assert fewer["config_hash"] != here["config_hash"]


def test_the_config_hash_follows_the_images_and_the_classifier_weights():
    config = {"n_examples": 8, "dataset": {"name": "cifar10", "root": "/data", "split": "test"}}
    images, weights = {0: "a", 4: "b"}, "w"
    chash = provenance.evaluation_hash(config, images, weights)
    moved = {**config, "dataset": {**config["dataset"], "root": "/elsewhere"}}
    assert provenance.evaluation_hash(moved, images, weights) == chash
    assert provenance.evaluation_hash(config, {0: "a", 4: "other images"}, weights) != chash
    assert provenance.evaluation_hash(config, images, "retrained") != chash
    assert provenance.evaluation_hash({**config, "amp": True}, images, weights) != chash  # numerics are hashed


@pytest.mark.parametrize(("version", "code"), [("0123456789abcdef", "0123456789abcdef"), ("0.1.0", "abc-dirty")])
def test_rows_before_the_source_hash_stand_for_their_code_by_commit(version, code):
    assert provenance.row_code_version({"version": version, "commit": "abc-dirty"}) == code
