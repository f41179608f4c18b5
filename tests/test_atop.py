"""AToP: transforms RT1-RT3, DeepFill and MAE purifiers, the training CLI and the defense."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from purebench.defenses import DEFENSES
from purebench.defenses.atop import AToP
from purebench.defenses.atop.deepfill import DeepFillGenerator, PatchDiscriminator
from purebench.defenses.atop.mae import MAEPurifier
from purebench.defenses.atop.transforms import RandomTransform
from purebench.defenses.checkpoint_config import settle
from purebench.errors import PurebenchError
from purebench.eval.runner import evaluate, group_params
from purebench.seeding import per_example

REPO = Path(__file__).resolve().parent.parent
TINY_DEEPFILL = ["defense.deepfill.cnum=8", "train.discriminator_cnum=8", "defense.purifier_size=32"]
TINY_UNET = ["defense.purifier=unet", "defense.unet.widths=[8,16]", "defense.unet.groups=4", "defense.purifier_size=32"]
TINY_MAE = [
    "defense.purifier=mae", "defense.mae.dim=32", "defense.mae.depth=1", "defense.mae.heads=2",
    "defense.mae.decoder_dim=32", "defense.mae.decoder_depth=1", "defense.mae.decoder_heads=2", "defense.purifier_size=32",
]  # fmt: skip


def _transform(kind: str, work_size: int = 32, purifier_size: int | None = None) -> RandomTransform:
    return RandomTransform(kind, 0.25, 8, 0.25, 4, work_size=work_size, purifier_size=purifier_size)


def test_transform_at_the_work_size_has_the_codes_statistics():
    """Code: Resize(256), noise N(0, 0.25^2) per 256-px pixel clipped to [0, 1], 16 of 64 blocks of 32 px hidden."""
    x = torch.full((2, 3, 32, 32), 0.5)
    with per_example(0, [0, 1]):
        [(x_t, m)] = _transform("rt2", work_size=256).views(x)
    assert x_t.shape == (2, 3, 256, 256)
    blocks = m[:, 0, ::32, ::32]
    assert torch.equal(m[:, 0], blocks.repeat_interleave(32, 1).repeat_interleave(32, 2))
    assert (blocks == 0).flatten(1).sum(1).tolist() == [16, 16]
    kept = (x_t - 0.5)[m.expand_as(x_t) == 1]
    assert abs(kept.mean()) < 0.01 and 0.23 < kept.std() < 0.25  # sigma 0.25, a little less after clipping at 2 sigma
    with per_example(0, [0, 1]):  # the purifier at 32 px sees the same draw area-downsampled: sigma / 8 per pixel
        [(small, small_m)] = _transform("rt2", work_size=256, purifier_size=32).views(x)
    assert torch.allclose(small, F.avg_pool2d(x_t, 8), atol=1e-6) and torch.equal(small_m, m[..., ::8, ::8])
    assert 0.027 < (small - 0.5)[small_m.expand_as(small) == 1].std() < 0.033


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
        RandomTransform("rt3", 0.25, 8, 0.25, 3, 32)
    with pytest.raises(PurebenchError, match="must divide the 64 patches"):
        RandomTransform("rt3", 0.25, 8, 1 / 3, 3, 32)  # N * r = 1, but 64 patches do not split into 3 equal masks


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
    assert foreign.returncode == 2 and "train.lr=0.1 (checkpoint: 0.0001)" in foreign.stderr, foreign.stderr
    no_init = _train(*TINY_DEEPFILL, f"train.out={fine}", "train.stage=finetune", cwd=tmp_path)
    assert no_init.returncode == 2 and "train.init" in no_init.stderr
    done = _train(
        *TINY_DEEPFILL,
        f"train.out={fine}",
        "train.stage=finetune",
        f"train.init={pre}",
        "train.epochs=1",
        "train.cls_start_epoch=0",
        cwd=tmp_path,
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
    with pytest.raises(PurebenchError, match=r"defense\.deepfill=\{'cnum': 16\} \(checkpoint: \{'cnum': 8\}\)"):
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

    from purebench.config_paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["defense=atop", *TINY_DEEPFILL, "train.n_train=40", *overrides])


def test_finetune_steps_lower_the_classification_loss_and_leave_the_classifier_alone(data_root, tmp_path):
    from purebench.train.atop import AToPTrainer

    trainer = AToPTrainer(
        _train_cfg(
            "train.stage=finetune", "train.init=unused", "train.cls_start_epoch=0", f"train.out={tmp_path / 'f.pt'}"
        )
    )
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
    cfg = make_cfg("defense=atop", f"defense.checkpoint={trainer.out}")  # the checkpoint supplies width and sizes
    assert set(settle(cfg.defense, trainer.out)) == {"deepfill", "purifier_size"}
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


def test_the_gan_term_reaches_the_generator_only_when_asked(data_root, tmp_path):
    """Code default: G steps on L1 (+ CE) only; the discriminator still trains. gan_weight=1 is Eq. 9's text."""
    from purebench.train.atop import AToPTrainer

    x, _ = AToPTrainer(_train_cfg(f"train.out={tmp_path / 'a.pt'}")).dataset.load(range(4))
    for gan_weight, generator_moves in ((0, False), (1, True)):
        trainer = AToPTrainer(
            _train_cfg(f"train.out={tmp_path / 'g.pt'}", "train.l1_weight=0", f"train.gan_weight={gan_weight}")
        )
        g_before = [p.clone() for p in trainer.purifier.parameters()]
        d_before = [p.clone() for p in trainer.discriminator.parameters()]
        losses = trainer.step((x, torch.zeros(4, dtype=torch.long)), epoch=0)
        g_moved = any(not torch.equal(a, b) for a, b in zip(g_before, trainer.purifier.parameters(), strict=True))
        assert g_moved == generator_moves and ("gan" in losses) == generator_moves
        assert any(not torch.equal(a, b) for a, b in zip(d_before, trainer.discriminator.parameters(), strict=True))


def test_unet_pretraining_lowers_the_loss_in_a_few_steps(data_root, tmp_path):
    from purebench.train.atop import AToPTrainer

    trainer = AToPTrainer(_train_cfg(*TINY_UNET, f"train.out={tmp_path / 'u.pt'}", "train.lr=3e-3"))
    x, y = trainer.dataset.load(range(8))
    losses = [trainer.step((x, y), epoch=0)["rec"] for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_resumed_training_equals_an_uninterrupted_run(data_root, tmp_path):
    common = [*TINY_UNET, "train.lr=1e-3", "train.n_train=24", "train.val_fraction=0.2"]
    whole, split = tmp_path / "whole.pt", tmp_path / "split.pt"
    assert _train(*common, f"train.out={whole}", "train.epochs=2", cwd=tmp_path).returncode == 0
    assert (
        _train(*common, f"train.out={split}", "train.epochs=2", "train.max_minutes=0.0001", cwd=tmp_path).returncode
        == 0
    )
    assert torch.load(split, weights_only=True)["epoch"] == 0  # stopped by the budget after the first epoch
    assert _train(*common, f"train.out={split}", "train.epochs=2", cwd=tmp_path).returncode == 0
    a, b = torch.load(whole, weights_only=True), torch.load(split, weights_only=True)
    assert a["command"].startswith("python -m purebench.train defense=atop train.n_train=40")  # the CLI records it
    assert [h["val_sa"] for h in a["history"]] == [h["val_sa"] for h in b["history"]]
    assert all(torch.equal(a["purifier"][k], b["purifier"][k]) for k in a["purifier"])
    assert [h["rec"] for h in a["history"]] == [h["rec"] for h in b["history"]]


def test_extra_images_only_for_pretraining_and_never_the_evaluation_split(data_root, tmp_path):
    from purebench.train.atop import AToPTrainer

    extra = "train.extra_images=[{name: cifar100, split: test}]"
    trainer = AToPTrainer(_train_cfg(*TINY_UNET, f"train.out={tmp_path / 'e.pt'}", extra))
    assert trainer.n_batches() == -(-(len(trainer.train_idx) + 916) // 8)
    labels = torch.cat([y for _, y in trainer.batches(0, torch.Generator().manual_seed(0))])
    assert int((labels == -1).sum()) == 916 and int((labels >= 0).sum()) == len(trainer.train_idx)  # extra: no label
    with pytest.raises(PurebenchError, match="only pretrain stages"):
        AToPTrainer(
            _train_cfg(*TINY_UNET, f"train.out={tmp_path / 'f.pt'}", extra, "train.stage=finetune", "train.init=x")
        )
    with pytest.raises(PurebenchError, match="evaluation images"):
        AToPTrainer(
            _train_cfg(
                *TINY_UNET, f"train.out={tmp_path / 'f.pt'}", "train.extra_images=[{name: cifar10, split: test}]"
            )
        )
    with pytest.raises(PurebenchError, match="pretraining starts fresh"):
        AToPTrainer(_train_cfg(*TINY_UNET, f"train.out={tmp_path / 'f.pt'}", "train.init=some.pt"))


def test_export_keeps_what_evaluation_needs_and_records_the_manifest(make_cfg, data_root, tmp_path):
    import json

    from purebench.classifiers.checkpoints import sha256_of
    from purebench.train import checkpoint
    from purebench.train.atop import AToPTrainer
    from purebench.train.export import export

    trainer = AToPTrainer(_train_cfg(*TINY_UNET, f"train.out={tmp_path / 'full.pt'}"))
    trainer.command = "python -m purebench.train defense=atop (as typed)"
    checkpoint.save(trainer.out, trainer.checkpoint_state(0, [{"epoch": 0, "rec": 0.5, "seconds": 90.0}]))
    slim = tmp_path / "shipped" / "atop_tiny.pt"
    entry = export(trainer.out, slim)
    state = torch.load(slim, weights_only=True)
    assert "opt_purifier" not in state and state["purifier_config"]["purifier"] == "unet"
    assert "unet" in state["purifier_config"] and "deepfill" not in state["purifier_config"]  # only the block in use
    assert slim.stat().st_size < trainer.out.stat().st_size
    [recorded] = json.loads((slim.parent / "manifest.json").read_text())
    assert recorded == entry and entry["sha256"] == sha256_of(slim) and entry["minutes"] == 1.5
    assert entry["stage"] == "pretrain"  # the matrix caption names the file by it
    assert entry["data"][0].startswith(str(data_root)) and entry["command"] == trainer.command
    cfg = make_cfg("defense=atop", f"defense.checkpoint={slim}")  # nothing else: the checkpoint supplies the rest
    settle(cfg.defense, slim)
    assert cfg.defense.purifier == "unet" and cfg.defense.purifier_size == 32
    DEFENSES.build("atop", classifier=None, **group_params(cfg.defense))


def test_training_curves_from_checkpoint_histories(tmp_path, capsys):
    from purebench.train import checkpoint
    from purebench.train.curves import main

    history = [{"epoch": e, "rec": 0.1 / (e + 1), "val_sa": 50.0 + e, "val_ra": 30.0, "seconds": 1.0} for e in range(3)]
    checkpoint.save(tmp_path / "run.pt", {"history": history})
    main([str(tmp_path / "run.pt"), "--out", str(tmp_path / "curves.png")])
    printed = capsys.readouterr().out
    assert "| epoch | rec | val_sa | val_ra |" in printed and "| 2 | 0.0333" in printed
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_the_classification_term_joins_at_the_codes_epoch(data_root, tmp_path):
    """Code: `if epoch > 2: g_loss += cls_loss * cls_n` with epochs from 1, i.e. the third epoch (2 counted from 0)."""
    from purebench.train.atop import AToPTrainer

    trainer = AToPTrainer(
        _train_cfg(*TINY_UNET, "train.stage=finetune", "train.init=x", f"train.out={tmp_path / 'c.pt'}")
    )
    assert (trainer.t.cls_start_epoch, trainer.t.lambda_cls, trainer.t.objective) == (2, 0.05, "logged")
    x, y = trainer.dataset.load(range(4))
    assert "ce" not in trainer.step((x, y), epoch=1) and "ce" in trainer.step((x, y), epoch=2)


@pytest.mark.parametrize("objective", ["logged", "eq9", "restore"])
def test_objectives_reconstruct_what_each_source_reconstructs(data_root, tmp_path, objective):
    """logged: L1 on a clean pass g(t(x)) vs x, CE on a second pass g(t(x')) with the same mask and noise;
    eq9: g(t(x')) vs x'; restore: g(t(x')) vs x (one pass for both terms)."""
    from purebench.train.atop import AToPTrainer

    trainer = AToPTrainer(
        _train_cfg(
            *TINY_UNET, "train.stage=finetune", "train.init=x", f"train.out={tmp_path / 'o.pt'}",
            f"train.objective={objective}", "train.l1_weight=1", "train.cls_start_epoch=0",
        )
    )  # fmt: skip
    x, y = trainer.dataset.load(range(4))
    x_adv = x.clone()
    x_adv[0] = 1 - x[0]  # only image 0 differs: the other images of both passes must coincide (shared draws)
    trainer.adversary = lambda classifier, images, labels: x_adv
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    trainer.purifier.register_forward_hook(lambda module, args, out: calls.append((*args, out.detach())))
    losses = trainer.step((x, y), epoch=0)
    (x_t, m, out) = calls[0]
    t = trainer.transform
    first_pass_image, target = {"logged": (x, x), "eq9": (x_adv, x_adv), "restore": (x_adv, x)}[objective]
    assert len(calls) == (2 if objective == "logged" else 1)
    [(fresh, fresh_m)] = t.apply(first_pass_image, t.draw(x))  # another draw: other patches and noise
    both = (m * fresh_m)[0].bool().expand_as(x_t[0])
    assert (x_t[0] - fresh[0])[both].abs().mean() < 0.1  # the L1 pass saw the expected image (x and 1 - x: ~0.5)
    rec = trainer.purifier.reconstruction_loss(out, t.target(target), m)
    assert losses["rec"] == pytest.approx(rec.item(), rel=1e-5)
    if objective == "logged":
        (x_t2, m2, _) = calls[1]
        assert torch.equal(m, m2) and torch.equal(x_t[1:], x_t2[1:]) and not torch.equal(x_t[0], x_t2[0])


def test_loads_the_authors_fine_tuned_checkpoint_format(tmp_path):
    """Their notebooks save misc.save_states(..., model, ...) with model = Model_g: G holds `generator.*` (DeepFill)
    beside `res.*` (their ResNet-18), next to D, the optimisers and n_iter; evaluate.ipynb keeps `generator.*`."""
    from purebench.defenses.atop import load_purifier
    from purebench.defenses.atop.unet import UNetPurifier

    source = DeepFillGenerator(cnum=8)
    g = {f"generator.{k}": v for k, v in source.state_dict().items()}
    g |= {"res.conv1.weight": torch.zeros(64, 3, 3, 3), "res.bn1.num_batches_tracked": torch.tensor(3)}
    optim = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.999), "params": [0, 1]}]}
    d = PatchDiscriminator(8).state_dict()
    path = tmp_path / "states_10_9.pth"
    torch.save({"G": g, "D": d, "G_optim": optim, "D_optim": optim, "n_iter": 9}, path)
    loaded = DeepFillGenerator(cnum=8)
    load_purifier(loaded, str(path))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in source.state_dict().items())
    with pytest.raises(PurebenchError, match=r"authors' fine-tuned AToP model.*defense\.purifier=deepfill"):
        load_purifier(UNetPurifier([8, 16], 4), str(path))
    with pytest.raises(PurebenchError, match="shape mismatches"):
        load_purifier(DeepFillGenerator(cnum=16), str(path))
