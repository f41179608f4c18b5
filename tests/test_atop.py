"""AToP: transforms RT1-RT3, DeepFill and MAE purifiers, the training CLI and the defense."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from purebench.defenses import DEFENSES
from purebench.defenses.atop import AToP
from purebench.defenses.atop.deepfill import DeepFillGenerator, PatchDiscriminator
from purebench.defenses.atop.mae import MAEPurifier
from purebench.defenses.atop.transforms import RandomTransform
from purebench.errors import PurebenchError
from purebench.eval.runner import evaluate, group_params
from purebench.seeding import per_example

REPO = Path(__file__).resolve().parent.parent
TINY_DEEPFILL = ["defense.deepfill.cnum=8", "train.discriminator_cnum=8"]
TINY_MAE = [
    "defense.purifier=mae", "defense.mae.dim=32", "defense.mae.depth=1", "defense.mae.heads=2",
    "defense.mae.decoder_dim=32", "defense.mae.decoder_depth=1", "defense.mae.decoder_heads=2",
]  # fmt: skip


def _transform(kind: str) -> RandomTransform:
    return RandomTransform(kind, sigma=0.25, grid=8, missing_rate=0.25, n_masks=4)


@pytest.mark.parametrize("kind", ["rt1", "rt2"])
def test_rt1_rt2_hide_a_quarter_of_the_patches(kind):
    x = torch.rand(3, 3, 32, 32)
    with per_example(0, [0, 1, 2]):
        [(x_t, m)] = _transform(kind).views(x)
    patches = m[:, 0, ::4, ::4]  # one value per 4x4 patch (p = 32 / 8)
    assert torch.equal(m, patches.repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1))
    assert (patches == 0).flatten(1).sum(1).tolist() == [16, 16, 16]  # r = 0.25 of 64 patches
    assert torch.all(x_t[m.expand_as(x_t) == 0] == 0) and x_t.shape == x.shape and x_t.min() >= 0 and x_t.max() <= 1
    kept = m.expand_as(x_t) == 1
    assert torch.equal(x_t[kept], x[kept]) == (kind == "rt1")  # RT2 adds noise to the kept pixels


def test_rt3_masks_are_disjoint_and_cover_the_image():
    views = _transform("rt3").views(torch.rand(2, 3, 32, 32))
    hidden = sum(1 - m for _, m in views)
    assert len(views) == 4 and torch.equal(hidden, torch.ones_like(hidden))
    generated = [torch.full((2, 3, 32, 32), float(i)) for i in range(4)]
    combined = RandomTransform.combine(views, generated)  # Eq. 4: each pixel from the view that hid it
    for i, (_, m) in enumerate(views):
        assert torch.all(combined[(1 - m).bool().expand_as(combined)] == i)


def test_masks_are_per_example_and_reproducible():
    x = torch.rand(4, 3, 32, 32)
    with per_example(7, range(4)):
        batch = _transform("rt2").views(x)[0][0]
    with per_example(7, [2]):
        alone = _transform("rt2").views(x[2:3])[0][0]
    assert torch.equal(batch[2:3], alone)
    with pytest.raises(PurebenchError, match="n_masks \\* missing_rate must be 1"):
        RandomTransform("rt3", 0.25, 8, 0.25, 3)
    with pytest.raises(PurebenchError, match="must divide the 64 patches"):
        RandomTransform("rt3", 0.25, 8, 1 / 3, 3)  # N * r = 1, but 64 patches do not split into 3 equal masks


def test_deepfill_layout_matches_the_public_pytorch_port():
    generator = DeepFillGenerator(cnum=48)
    keys = generator.state_dict()
    assert len(keys) == 85 and sum(p.numel() for p in generator.parameters()) == pytest.approx(4.05e6, rel=0.01)
    assert keys["stage1.conv1.conv.weight"].shape == (48, 5, 5, 5)  # 2 x cnum/2 gated outputs, 5 input channels
    assert keys["stage2.up_block1.conv1_upsample.conv.conv.weight"].shape == (96, 96, 3, 3)
    assert keys["stage2.conv_to_rgb.conv.weight"].shape == (3, 12, 3, 3)  # plain RGB conv, no gate
    assert "stage2.contextual_attention.fuse_weight" in keys
    assert set(PatchDiscriminator(64).state_dict()) >= {"conv1.conv_sn.weight", "conv6.conv_sn.weight_u"}
    x, m = torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32)
    m[:, :, 8:16] = 0
    out = generator(x * m, m)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_mae_never_sees_the_hidden_pixels():
    mae = MAEPurifier(32, 4, 32, 1, 2, 32, 1, 2, visible_weight=1.0).eval()
    with per_example(0, [0, 1]):
        [(x_t, m)] = _transform("rt1").views(torch.rand(2, 3, 32, 32))
    changed = x_t + (1 - m) * torch.rand_like(x_t)  # new content only where the mask hides
    with torch.no_grad():
        assert torch.allclose(mae(x_t, m), mae(changed, m), atol=1e-6)


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "purebench.train", "defense=atop", "train.n_train=40", "train.batch_size=8",
         "threads=1", "hydra.run.dir=" + str(cwd / "hydra-out"), *args],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip


def test_train_pretrain_resume_finetune_and_evaluate(make_cfg, data_root, tmp_path):
    pre, fine = tmp_path / "pre.pt", tmp_path / "fine.pt"
    done = _train(*TINY_DEEPFILL, f"train.out={pre}", "train.epochs=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    state = torch.load(pre, weights_only=True)
    assert state["epoch"] == 2 and state["config"]["train"]["stage"] == "pretrain"
    history = state["history"]
    assert history[-1]["rec"] < history[0]["rec"]  # the purifier learns to restore
    assert {"val_sa", "val_ra"} <= set(history[-1])
    again = _train(*TINY_DEEPFILL, f"train.out={pre}", "train.epochs=3", cwd=tmp_path)
    assert again.returncode == 0 and torch.load(pre, weights_only=True)["history"] == history  # nothing redone
    foreign = _train(*TINY_DEEPFILL, f"train.out={pre}", "train.lr=0.1", cwd=tmp_path)
    assert foreign.returncode == 2 and "different training config" in foreign.stderr
    no_init = _train(*TINY_DEEPFILL, f"train.out={fine}", "train.stage=finetune", cwd=tmp_path)
    assert no_init.returncode == 2 and "train.init" in no_init.stderr
    done = _train(
        *TINY_DEEPFILL, f"train.out={fine}", "train.stage=finetune", f"train.init={pre}", "train.epochs=1", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "ce" in torch.load(fine, weights_only=True)["history"][0]
    row = evaluate(
        make_cfg(
            "defense=atop", "defense.deepfill.cnum=8", f"defense.checkpoint={fine}", "attack=fgsm",
            "attack.verbose=false", "n_examples=8", "threat.n_eval=3",
        )
    )  # fmt: skip
    assert row["defense_randomized"] and row["n_eval"] == 3 and row["ra_worst"] <= row["ra"]
    with pytest.raises(PurebenchError, match="does not match"):
        evaluate(make_cfg("defense=atop", "defense.deepfill.cnum=16", f"defense.checkpoint={fine}", "n_examples=2"))


def test_mae_purifier_trains(data_root, tmp_path):
    out = tmp_path / "mae.pt"
    done = _train(
        *TINY_MAE, f"train.out={out}", "train.epochs=4", "train.lr=1e-3", "defense.transform=rt1", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    history = torch.load(out, weights_only=True)["history"]
    assert history[-1]["rec"] < history[0]["rec"] and "d" not in history[0]


def test_atop_without_checkpoint_says_how_to_train(make_cfg, data_root):
    with pytest.raises(PurebenchError, match=r"python -m purebench\.train"):
        evaluate(make_cfg("defense=atop", "n_examples=2"))


def _train_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    from purebench.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["defense=atop", *TINY_DEEPFILL, "train.n_train=40", *overrides])


def test_finetune_steps_lower_the_classification_loss_and_leave_the_classifier_alone(data_root, tmp_path):
    from purebench.train.atop import AToPTrainer

    trainer = AToPTrainer(_train_cfg("train.stage=finetune", "train.init=unused", f"train.out={tmp_path / 'f.pt'}"))
    before = {k: v.clone() for k, v in trainer.classifier.state_dict().items()}
    x, y = trainer.dataset.load(range(8))
    ce = [trainer.step((x, y), epoch=0)["ce"] for _ in range(15)]
    assert ce[-1] < ce[0], ce
    after = trainer.classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_checkpoint_round_trip_reproduces_the_purified_images(make_cfg, data_root, tmp_path):
    from purebench.train import checkpoint
    from purebench.train.atop import AToPTrainer

    trainer = AToPTrainer(_train_cfg(f"train.out={tmp_path / 'p.pt'}"))
    x, y = trainer.dataset.load(range(8))
    trainer.step((x, y), epoch=0)
    checkpoint.save(trainer.out, trainer.checkpoint_state(0, []))
    trained = AToP(trainer.transform, trainer.purifier.eval())
    cfg = make_cfg("defense=atop", "defense.deepfill.cnum=8", f"defense.checkpoint={trainer.out}")
    loaded = DEFENSES.build("atop", classifier=None, **group_params(cfg.defense))
    with per_example(3, range(8)), torch.no_grad():
        expected = trained.purify(x)
    with per_example(3, range(8)), torch.no_grad():
        assert torch.equal(loaded.purify(x), expected)


@pytest.mark.parametrize("threat", ["oblivious", "bpda_eot", "adaptive"])
def test_atop_runs_under_the_threat_models(make_cfg, data_root, tmp_path, threat):
    from purebench.train import checkpoint
    from purebench.train.atop import AToPTrainer

    trainer = AToPTrainer(_train_cfg(f"train.out={tmp_path / 'p.pt'}"))
    checkpoint.save(trainer.out, trainer.checkpoint_state(0, []))
    row = evaluate(
        make_cfg(
            "defense=atop", "defense.deepfill.cnum=8", f"defense.checkpoint={trainer.out}", "attack=pgd",
            "attack.steps=2", "attack.verbose=false", "n_examples=4", f"threat={threat}", "threat.n_eval=2",
            *([] if threat == "oblivious" else ["threat.eot_iter=2"]),
        )
    )  # fmt: skip
    assert row["threat_model"] == threat and row["n_eval"] == 2 and row["ra_worst"] <= row["ra"]
    assert row["threat_eot_iter"] == (1 if threat == "oblivious" else 2)
