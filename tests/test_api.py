"""``purebench.evaluate``: the CLI's evaluation in one Python call, with names or objects."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import purebench
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.defenses import Defense
from purebench.errors import PurebenchError

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("n_examples", "sa", "ra", "ra_worst", "ra_vote", "acc_purified_adv", "clean_acc_undefended",
           "adv_acc_undefended", "config_hash")  # fmt: skip


class Quantise(Defense):
    """Bit-depth reduction with a straight-through gradient (deterministic)."""

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x + (torch.round(x * 7) / 7 - x).detach()


def test_the_api_and_the_cli_give_the_same_figures_and_records(data_root, tmp_path):
    args = ["defense=gaussian_noise", "attack=pgd", "attack.steps=3", "n_examples=8", "batch_size=4", "threat.n_eval=2"]
    cli = tmp_path / "cli"
    done = subprocess.run(
        [sys.executable, "-m", "purebench", *args, f"results_dir={cli}", "threads=1", f"hydra.run.dir={tmp_path / 'h'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_file,) = (cli / "runs").glob("*.json")
    expected = json.loads(run_file.read_text())
    result = purebench.evaluate(
        classifier="resnet20", defense="gaussian_noise", attack={"name": "pgd", "steps": 3}, n_examples=8,
        overrides=["batch_size=4", "threat.n_eval=2"], threads=1,
    )  # fmt: skip
    assert {k: result[k] for k in FIGURES} == {k: expected["row"][k] for k in FIGURES}
    assert result["per_example"] == expected["per_example"]
    assert result["defense"] == "gaussian_noise" and result["defense_params"] == expected["row"]["defense_params"]


def test_nothing_is_written_without_results_dir(data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = purebench.evaluate(defense="none", attack="fgsm", n_examples=4, figures=0)
    assert list(tmp_path.iterdir()) == [] and len(result["per_example"]) == 4
    kept = purebench.evaluate(defense="none", attack="fgsm", n_examples=4, figures=0, results_dir=tmp_path / "r")
    assert (tmp_path / "r" / "runs" / f"{kept['run_id']}.json").exists()


def test_a_defense_object_under_the_adaptive_threat_is_named_by_its_class(data_root):
    result = purebench.evaluate(
        classifier="resnet20", defense=Quantise(), attack="fgsm", threat="adaptive", n_examples=8
    )
    assert result["defense"] == "python:Quantise" and result["threat_model"] == "adaptive"
    assert 0 <= result["ra"] <= result["sa"] <= 100 and len(result["per_example"]) == 8


def test_a_module_a_callable_and_tensors(data_root):
    pretrained = CLASSIFIERS.build("resnet20")
    net = nn.Sequential(pretrained)  # a plain module (not a purebench Classifier) from [0, 1] images to logits
    x, y = DATASETS.build("cifar10", root=str(data_root)).load(range(16, 24))
    result = purebench.evaluate(classifier=net, defense=lambda im: im.clamp(0.1, 0.9), attack="pgd", x=x, y=y)
    assert result["n_examples"] == 8 and result["dataset"] == "tensors"
    assert [e["index"] for e in result["per_example"]] == list(range(8))
    assert result["classifier"] == "python:Sequential" and result["defense"].startswith("python:test_a_module")
    assert result["clean_acc_undefended"] == 100 * float((pretrained(x).argmax(1) == y).float().mean())
    with pytest.raises(PurebenchError, match="outside \\[0, 1\\]"):
        purebench.evaluate(classifier=net, defense="none", attack="fgsm", x=x * 255, y=y)
    with pytest.raises(PurebenchError, match="give both x and y"):
        purebench.evaluate(classifier=net, defense="none", attack="fgsm", x=x)


def test_the_api_example_runs(data_root, capsys):
    os.environ.setdefault("PUREBENCH_DATA", str(data_root))
    runpy.run_path(str(REPO / "examples" / "python_api.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "Quantise vs FGSM, adaptive: SA" in out and "robust examples" in out
