"""Issue 22's run-side cases: bad values refused before compute with a message naming the key,
failures mid-run that say what was kept, and rows that say when their numbers mean nothing."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from purebench.attacks.torchattacks_adapter import TorchattacksAdapter
from purebench.classifiers import CLASSIFIERS
from purebench.errors import PurebenchError
from purebench.eval import runner
from purebench.eval.progress import BatchStore
from purebench.eval.runner import evaluate

REPO = Path(__file__).resolve().parent.parent
original_batch = runner._evaluate_batch
FAST = ["defense=gaussian_blur", "attack=pgd", "attack.steps=2", "attack.verbose=false", "n_examples=8",
        "batch_size=4", "figures=0"]  # fmt: skip


def _no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a batch was computed before the bad input was reported")

    monkeypatch.setattr(runner, "_evaluate_batch", refuse)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("n_examples=abc", r"n_examples='abc' is not valid: .* whole number >= 1"),
        ("n_examples=8.9", r"n_examples=8.9 is not valid"),  # was truncated to 8
        ("batch_size=abc", r"batch_size='abc' is not valid"),
        ("seed=abc", r"seed='abc' is not valid"),
        ("threads=abc", r"threads='abc' is not valid"),
        ("seed=18446744073709551616", r"seed=18446744073709551616 is too large"),  # failed mid-attack
        ("attack.eps=abc", r"attack.eps='abc' is not valid: attack 'pgd' needs a number"),
        ("attack.alpha=abc", r"attack.alpha='abc' is not a number"),
        ("attack.steps=0", r"attack.steps=0 must be a whole number >= 1"),  # wrote a PGD row without a step
        ("attack.steps=-3", r"attack.steps=-3 must be a whole number >= 1"),
        ("+defense.note=x", r"defense 'gaussian_blur' has no parameter\(s\) defense.note. Its parameters are: sigma"),
        ("defense.sigma=abc", r"defense.sigma='abc' is not valid"),
        ("logger.name=foo", r"logger=foo is not a logger purebench has"),  # found only after the row was published
        ("shard=3/4", r"shard=3/4 gets no batch: .* 2 batch\(es\)"),  # wrote a NaN row with n=0
    ],
)
def test_a_bad_value_is_refused_before_any_compute(make_cfg, data_root, tmp_path, monkeypatch, override, message):
    _no_compute(monkeypatch)
    with pytest.raises(PurebenchError, match=message):
        evaluate(make_cfg(*FAST, override))
    assert not (tmp_path / "results" / "leaderboard.csv").exists()


def test_an_unknown_parameter_of_a_defense_with_other_keys_lists_them(make_cfg, data_root, monkeypatch):
    _no_compute(monkeypatch)
    with pytest.raises(PurebenchError, match=r"no parameter\(s\) defense.kernel. Its parameters are: kernel_size"):
        evaluate(make_cfg(*FAST, "defense=median_blur", "+defense.kernel=5"))


def test_a_budget_written_as_a_fraction_is_that_number(make_cfg, data_root):
    row = evaluate(make_cfg(*FAST, "attack.eps=8/255", "attack.alpha=2/255"))
    assert row["eps"] == pytest.approx(8 / 255, abs=1e-15)
    assert "alpha=0.00784313725490196" in row["attack_params"]


def test_more_threads_than_cores_is_a_warning(make_cfg, data_root, monkeypatch, caplog):
    _no_compute(monkeypatch)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this process's threads as they are
    with caplog.at_level(logging.WARNING), pytest.raises(AssertionError, match="a batch was computed"):
        evaluate(make_cfg(*FAST, "threads=64"))
    assert "threads=64 is more than the 2 CPU cores" in caplog.text


def test_the_cli_reports_a_bad_value_in_one_paragraph_with_status_2(tmp_path, data_root):
    done = subprocess.run(
        [sys.executable, "-m", "purebench", *FAST, "attack.steps=0", f"hydra.run.dir={tmp_path / 'hydra'}",
         f"results_dir={tmp_path / 'r'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    message = [line for line in done.stderr.splitlines() if line.startswith("purebench: error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(message) == 1, done.stderr
    assert "attack.steps=0" in message[0]


def test_an_attack_leaving_its_budget_is_the_projects_error_and_writes_nothing(
    make_cfg, data_root, tmp_path, monkeypatch
):
    monkeypatch.setattr(TorchattacksAdapter, "perturb", lambda self, model, x, y: (x + 0.1).clamp(0, 1))
    with pytest.raises(PurebenchError, match=r"attack 'pgd' exceeded its budget: .* nothing was recorded"):
        evaluate(make_cfg(*FAST))
    assert not (tmp_path / "results" / "leaderboard.csv").exists()


def _batch_files(results: Path) -> list[Path]:
    return sorted((results / "partial").rglob("batch-*.json"))


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "no longer writable"),  # results_dir made read-only
        (OSError(errno.ENOSPC, "No space left on device"), "full"),
        (RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1472 vs 1360"), "full"),
    ],
)
def test_a_write_failing_mid_run_says_what_was_kept_and_the_rerun_resumes(
    make_cfg, data_root, tmp_path, monkeypatch, failure, reason
):
    results = tmp_path / "results"
    monkeypatch.setattr(runner, "compute_version", lambda: "fixed")  # resume keys survive edits elsewhere
    reference = evaluate(make_cfg(*FAST, f"results_dir={tmp_path / 'reference'}"))
    original = BatchStore.save

    def fail_on_second(self, batch, record):
        if batch[0] > 0:
            if isinstance(failure, OSError) and failure.errno == errno.EACCES:
                failure.filename = str(self.dir / "batch-4.json")
            raise failure
        original(self, batch, record)

    monkeypatch.setattr(BatchStore, "save", fail_on_second)
    with pytest.raises(PurebenchError, match=rf"is {reason} .* 1 of 2 batches had finished; they are kept .* resumes"):
        evaluate(make_cfg(*FAST))
    assert len(_batch_files(results)) == 1 and not (results / "leaderboard.csv").exists()
    monkeypatch.setattr(BatchStore, "save", original)
    computed = []
    monkeypatch.setattr(runner, "_evaluate_batch", lambda *a, **k: computed.append(1) or original_batch(*a, **k))
    row = evaluate(make_cfg(*FAST))
    assert len(computed) == 1  # only the batch that was lost
    per_example = json.loads((results / "runs" / f"{row['run_id']}.json").read_text())["per_example"]
    reference_examples = json.loads((tmp_path / "reference" / "runs" / f"{reference['run_id']}.json").read_text())
    assert per_example == reference_examples["per_example"]


def test_a_read_error_outside_results_dir_is_not_reported_as_a_storage_failure(make_cfg, data_root, monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/data.bin")

    monkeypatch.setattr(runner, "_evaluate_batch", unreadable)
    with pytest.raises(PermissionError):
        evaluate(make_cfg(*FAST))


def test_a_classifier_without_weights_is_refused_unless_asked_for(make_cfg, data_root, monkeypatch):
    _no_compute(monkeypatch)
    with pytest.raises(PurebenchError, match=r"classifier 'wrn28_10' has no weights: .* classifier.pretrained=false"):
        evaluate(make_cfg(*FAST, "classifier=wrn28_10"))
    with pytest.raises(PurebenchError, match=r"classifier 'resnet50' has no weights"):
        CLASSIFIERS.build("resnet50")
    assert CLASSIFIERS.build("resnet50", pretrained=False).num_classes == 10


def test_a_classifier_at_chance_is_named_in_the_rows_warnings(make_cfg, data_root):
    torch.manual_seed(0)  # the random initialisation
    row = evaluate(make_cfg(*FAST, "classifier.pretrained=false", "n_examples=64", "batch_size=64"))
    assert row["clean_acc_undefended"] <= 15
    assert "is at chance (10% for 10 classes): classifier 'resnet20' is untrained" in row["warnings"]
    trained = evaluate(make_cfg(*FAST, "defense=none"))
    assert "at chance" not in trained["warnings"]


def test_a_checkpoint_is_recorded_by_its_repository_path_and_sha256(make_cfg, data_root, tmp_path, monkeypatch):
    shipped = REPO / "results" / "checkpoints" / "impure.pt"
    manifest = {e["file"]: e for e in json.loads((shipped.parent / "manifest.json").read_text())}
    monkeypatch.chdir(REPO)
    spellings = [str(shipped), "results/checkpoints/impure.pt", "./results/checkpoints/../checkpoints/impure.pt"]
    params = set()
    for k, spelling in enumerate(spellings):
        row = evaluate(make_cfg(*FAST, "defense=impure", f"defense.checkpoint={spelling}",
                                f"results_dir={tmp_path / str(k)}", "n_examples=4"))  # fmt: skip
        params.add(row["defense_params"])
    (recorded,) = params  # one setting, however the path was written
    assert "checkpoint=results/checkpoints/impure.pt," in recorded and str(REPO) not in recorded
    assert f"checkpoint_sha256={manifest['impure.pt']['sha256'][:16]}" in recorded
    run_file = json.loads((tmp_path / str(k) / "runs" / f"{row['run_id']}.json").read_text())
    assert run_file["checkpoint_sha256"] == {"checkpoint": manifest["impure.pt"]["sha256"]}


def test_a_purifier_evaluated_on_its_own_training_images_says_so_in_the_row(make_cfg, data_root):
    shipped = REPO / "results" / "checkpoints" / "impure_pre.pt"  # trained with extra_images: cifar100 test
    overrides = [*FAST, "defense=impure", f"defense.checkpoint={shipped}", "n_examples=4", "threat.n_eval=1"]
    row = evaluate(
        make_cfg(*overrides, "dataset=cifar100", "classifier.pretrained=false", "classifier.num_classes=100")
    )
    assert "was trained on 4 of the 4 evaluated images (cifar100 test" in row["warnings"]
    assert "was trained on" not in evaluate(make_cfg(*overrides))["warnings"]  # CIFAR-10 test: never seen
