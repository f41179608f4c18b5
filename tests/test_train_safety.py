"""Training and export safety (issue 22): export never destroys what it did not write, training keys that leave
nothing to train are refused, another defense's checkpoint is named, and a purifier evaluated on its own training
images says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from purebench.cli import CONF_DIR
from purebench.defenses.checkpoint_config import settle
from purebench.errors import PurebenchError

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
