"""Training and export safety (issue 22): export never destroys what it did not write, training keys that leave
nothing to train are refused, another defense's checkpoint is named, and a purifier evaluated on its own training
images says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from purebench.config_paths import CONF_DIR
from purebench.defenses.checkpoint_config import settle
from purebench.defenses.training_data import training_overlap
from purebench.errors import PurebenchError
from purebench.train import checkpoint
from purebench.train.export import export

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "results" / "checkpoints"
TINY_ATOP = ["defense=atop", "defense.purifier=unet", "defense.unet.widths=[8,16]", "defense.unet.groups=4",
             "defense.purifier_size=32", "train.n_train=40"]  # fmt: skip
TINY_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1, "down_block_types": ["DownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 4}  # fmt: skip
EXTRA = "train.extra_images=[{name: cifar100, split: test}]"


def _train_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


# ---- Unclear 13: keys that leave nothing to train --------------------------------------------------------------
@pytest.mark.parametrize("key", ["epochs", "max_minutes", "batch_size", "val_every"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_training_keys_that_leave_nothing_to_train_are_refused(tmp_path, key, value):
    from purebench.train.atop import AToPTrainer

    cfg = _train_cfg(*TINY_ATOP, f"train.out={tmp_path / 'a.pt'}", f"train.{key}={value}")
    with pytest.raises(PurebenchError, match=rf"train\.{key} must be a positive number, got {value}"):
        AToPTrainer(cfg)  # refused before the data or the classifier are loaded


def test_the_training_cli_refuses_zero_epochs_with_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "purebench.train", *TINY_ATOP, "train.epochs=0", f"train.out={tmp_path / 'a.pt'}",
         "threads=1", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "train.epochs" in done.stderr, done.stderr
    assert not (tmp_path / "a.pt").exists()


# ---- Unclear 2: another defense's checkpoint ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("defense", "weights", "owner"),
    [("atop", "defense.checkpoint=impure.pt", "impure"), ("impure", "defense.checkpoint=atop_rt2_pre.pt", "atop"),
     ("atop", "defense.checkpoint=diffpure_small", "diffpure"), ("impure", "defense.checkpoint=diffpure_small",
     "diffpure"), ("diffpure", "defense.model=impure.pt", "impure"), ("diffpure", "defense.model=atop_rt2_atop.pt",
     "atop")],
)  # fmt: skip
def test_a_checkpoint_of_another_defense_is_named(make_cfg, defense, weights, owner):
    key, name = weights.split("=")
    cfg = make_cfg(f"defense={defense}", f"{key}={SHIPPED / name}")
    with pytest.raises(PurebenchError, match=rf"checkpoint of defense={owner} .* not of defense={defense}"):
        settle(cfg.defense, cfg.defense.get("checkpoint"))  # as the runner calls it


def test_fine_tuning_from_another_defenses_checkpoint_is_refused(tmp_path):
    from purebench.train.atop import AToPTrainer

    cfg = _train_cfg(*TINY_ATOP, f"train.out={tmp_path / 'a.pt'}", "train.stage=finetune",
                     f"train.init={SHIPPED / 'impure.pt'}")  # fmt: skip
    with pytest.raises(PurebenchError, match="checkpoint of defense=impure"):
        AToPTrainer(cfg)


def test_the_evaluation_cli_names_the_other_defense_with_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "purebench", "defense=atop", f"defense.checkpoint={SHIPPED / 'impure.pt'}",
         "n_examples=2", "figures=0", "threads=1", f"results_dir={tmp_path / 'r'}", f"hydra.run.dir={tmp_path / 'h'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    message = [line for line in done.stderr.splitlines() if line.startswith("purebench: error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(message) == 1, done.stderr
    assert "defense=impure" in message[0]


# ---- Defect 2: export -------------------------------------------------------------------------------------------
def _training_checkpoint(path: Path, defense: str) -> Path:
    """A minimal training checkpoint of ``defense`` (optimiser state included), as export reads it."""
    if defense == "diffpure":
        from purebench.train.diffpure import build_unet

        purifier, purifier_config = build_unet(TINY_UNET).state_dict(), {"unet": TINY_UNET}
    else:
        purifier, purifier_config = {"w": torch.zeros(3)}, {"transform": "rt2"}
    checkpoint.save(path, {
        "purifier": purifier, "purifier_config": purifier_config, "opt_purifier": {"state": {}}, "epoch": 0,
        "history": [{"epoch": 0, "seconds": 60.0}], "config": {"defense": {"name": defense}, "train": {}},
    })  # fmt: skip
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("defense", ["atop", "diffpure"])
def test_export_into_an_existing_plain_folder_is_refused_and_the_folder_kept(tmp_path, defense):
    source = _training_checkpoint(tmp_path / "train.pt", defense)
    shelf = tmp_path / "checkpoints"
    shelf.mkdir()
    (shelf / "manifest.json").write_text("[]\n")
    (shelf / "other.pt").write_bytes(b"someone's weights")
    (shelf / "notes.txt").write_text("the user's file")
    before = _tree(shelf)
    with pytest.raises(PurebenchError, match=r"existing folder.*name the export itself"):
        export(source, shelf)
    assert _tree(shelf) == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "train.pt"]


def test_export_onto_its_own_source_is_refused_under_any_spelling(tmp_path):
    source = _training_checkpoint(tmp_path / "train.pt", "diffpure")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pt").symlink_to(source)
    for target in (source, tmp_path / "sub" / ".." / "train.pt", tmp_path / "link.pt"):
        with pytest.raises(PurebenchError, match="is the training checkpoint itself"):
            export(source, target)
    assert source.is_file() and "opt_purifier" in checkpoint.load(source)  # training can still resume


def test_export_replaces_only_an_export_of_the_same_kind(tmp_path):
    atop, impure = _training_checkpoint(tmp_path / "a.pt", "atop"), _training_checkpoint(tmp_path / "i.pt", "impure")
    other_training = _training_checkpoint(tmp_path / "b.pt", "atop")
    with pytest.raises(PurebenchError, match="not an export of defense=atop"):
        export(atop, other_training)  # another run's training checkpoint (optimiser state) is not overwritten
    assert "opt_purifier" in checkpoint.load(other_training)
    export(impure, tmp_path / "out" / "slim.pt")
    with pytest.raises(PurebenchError, match="not an export of defense=atop"):
        export(atop, tmp_path / "out" / "slim.pt")
    export(impure, tmp_path / "out" / "slim.pt")  # re-exporting over its own earlier export is fine
    with pytest.raises(PurebenchError, match="manifest"):
        export(atop, tmp_path / "fresh" / "manifest.json")


def test_a_diffpure_export_replaces_its_earlier_export_and_leaves_no_temporaries(tmp_path):
    source = _training_checkpoint(tmp_path / "train.pt", "diffpure")
    export(source, tmp_path / "out" / "dp")
    export(source, tmp_path / "out" / "dp")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dp", "manifest.json"]
    (tmp_path / "out" / "dp.pt").write_bytes(b"not a folder")
    with pytest.raises(PurebenchError, match="not an export of defense=diffpure"):
        export(source, tmp_path / "out" / "dp.pt")


@pytest.mark.parametrize("defense", ["atop", "diffpure"])
def test_exported_files_follow_the_umask(tmp_path, defense):
    source = _training_checkpoint(tmp_path / "train.pt", defense)
    old = os.umask(0o027)
    try:
        export(source, tmp_path / "out" / "slim")
    finally:
        os.umask(old)
    written = [tmp_path / "out" / "slim", *(tmp_path / "out" / "slim").rglob("*"), tmp_path / "out" / "manifest.json"]
    modes = {p.name: p.stat().st_mode & 0o777 for p in written}
    assert modes == {p.name: 0o750 if p.is_dir() else 0o640 for p in written}


def test_the_export_cli_exits_2_with_one_paragraph(tmp_path):
    source = _training_checkpoint(tmp_path / "train.pt", "atop")
    done = subprocess.run([sys.executable, "-m", "purebench.train.export", str(source), str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "name the export itself" in done.stderr


# ---- Defect 5: evaluation on a purifier's training images ---------------------------------------------------
def _defense_cfg(make_cfg, defense: str, weights: Path):
    key = "model" if defense == "diffpure" else "checkpoint"
    return make_cfg(f"defense={defense}", f"defense.{key}={weights}").defense


@pytest.mark.parametrize(
    ("defense", "name", "through"),
    [("diffpure", "diffpure_small", None), ("atop", "atop_rt2_pre.pt", None), ("impure", "impure_pre.pt", None),
     ("atop", "atop_rt2_atop.pt", "atop_rt2_pre.pt"), ("impure", "impure.pt", "impure_pre.pt"),
     ("impure", "impure_lown.pt", "impure_pre.pt")],
)  # fmt: skip
def test_shipped_purifiers_name_their_training_images(make_cfg, defense, name, through):
    cfg = _defense_cfg(make_cfg, defense, SHIPPED / name)
    warning = training_overlap(cfg, "cifar100", "test", list(range(16)))
    assert warning is not None and "trained on 16 of the 16 evaluated images (cifar100 test" in warning
    assert name in warning and (through is None or through in warning)
    assert training_overlap(cfg, "cifar10", "test", list(range(16))) is None  # the benchmark's images: unseen
    assert "16 of the 16" in training_overlap(cfg, "cifar10", "train", list(range(16)))


def test_purifiers_without_recorded_training_data_pass_silently(make_cfg):
    assert training_overlap(make_cfg("defense=zeropur").defense, "cifar100", "test", [0, 1]) is None
    assert training_overlap(make_cfg("defense=atop").defense, "cifar100", "test", [0, 1]) is None  # no checkpoint


def test_training_records_its_images_and_fine_tuning_inherits_them(make_cfg, data_root, tmp_path):
    from purebench.train.atop import AToPTrainer

    pre = AToPTrainer(_train_cfg(*TINY_ATOP, f"train.out={tmp_path / 'pre.pt'}", EXTRA))
    checkpoint.save(pre.out, pre.checkpoint_state(0, [{"epoch": 0, "seconds": 1.0}]))
    cfg = _defense_cfg(make_cfg, "atop", pre.out)
    trained, held_out = pre.train_idx.tolist(), pre.val_idx.tolist()
    assert training_overlap(cfg, "cifar10", "train", held_out) is None  # validation images are not trained on
    assert f"{len(trained[:5])} of the 5 evaluated" in training_overlap(cfg, "cifar10", "train", trained[:5])
    assert "6 of the 10 evaluated" in training_overlap(cfg, "cifar100", "test", list(range(910, 920)))  # 916 here
    assert training_overlap(cfg, "cifar10", "test", trained[:5]) is None  # same indices, another split
    slim = tmp_path / "shipped" / "pre_slim.pt"
    export(pre.out, slim)  # the record survives the export
    assert "3 of the 3" in training_overlap(_defense_cfg(make_cfg, "atop", slim), "cifar100", "test", [0, 1, 2])

    tuned = AToPTrainer(_train_cfg(*TINY_ATOP, f"train.out={tmp_path / 'ft.pt'}", "train.stage=finetune",
                                   f"train.init={slim}"))  # fmt: skip
    checkpoint.save(tuned.out, tuned.checkpoint_state(0, [{"epoch": 0, "seconds": 1.0}]))
    slim.unlink()  # the fine-tuned checkpoint carries its init's record: no need to find the file again
    warning = training_overlap(_defense_cfg(make_cfg, "atop", tuned.out), "cifar100", "test", [0, 1, 2])
    assert "3 of the 3" in warning and str(slim) in warning


def test_a_diffpure_export_records_its_training_images(make_cfg, data_root, tmp_path):
    from purebench.train.diffpure import DiffPureTrainer

    unet = [f"defense.unet.{k}=[{','.join(map(str, v))}]" if isinstance(v, list) else f"defense.unet.{k}={v}"
            for k, v in TINY_UNET.items()]  # fmt: skip
    trainer = DiffPureTrainer(_train_cfg("defense=diffpure", *unet, "train.n_train=40", EXTRA,
                                         f"train.out={tmp_path / 'dp.pt'}"))  # fmt: skip
    checkpoint.save(trainer.out, trainer.checkpoint_state(0, [{"epoch": 0, "seconds": 1.0}]))
    export(trainer.out, tmp_path / "dp")
    assert json.loads((tmp_path / "dp" / "purebench.json").read_text())["training_data"]
    warning = training_overlap(_defense_cfg(make_cfg, "diffpure", tmp_path / "dp"), "cifar100", "test", [5, 2000])
    assert "1 of the 2 evaluated" in warning


def test_an_older_checkpoint_whose_init_is_gone_counts_its_own_splits_and_says_so(make_cfg, tmp_path, caplog):
    legacy = tmp_path / "tuned.pt"
    torch.save({"purifier": {}, "config": {"defense": {"name": "atop"}, "dataset": {"name": "cifar10", "split": "train"},
                                           "train": {"extra_images": [], "init": "gone/pre.pt"}}}, legacy)  # fmt: skip
    cfg = _defense_cfg(make_cfg, "atop", legacy)
    assert "all of it counts" in training_overlap(cfg, "cifar10", "train", [3, 4])
    assert training_overlap(cfg, "cifar100", "test", [3, 4]) is None
    assert "continued training from gone/pre.pt, which is not here" in caplog.text
