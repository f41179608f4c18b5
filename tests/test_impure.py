"""IMPure: RIAE subsets and their isolation, RCM, training, checkpoints and threat models."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from purebench.config_paths import CONF_DIR
from purebench.defenses import DEFENSES
from purebench.defenses.checkpoint_config import settle
from purebench.defenses.impure import IMPure
from purebench.defenses.impure.riae import RIAE, noise_level
from purebench.eval.runner import evaluate, group_params
from purebench.seeding import derive_seed, per_example
from purebench.train import checkpoint
from purebench.train.impure import ImpureTrainer, decay_groups, random_combination

TINY_MODEL = [
    "defense.model.dim=32", "defense.model.depth=1", "defense.model.heads=2",
    "defense.model.decoder_dim=32", "defense.model.decoder_depth=1", "defense.model.decoder_heads=2",
    "defense.model.out_indices=[]",
]  # fmt: skip


def _riae() -> RIAE:
    torch.manual_seed(0)
    return RIAE(32, 4, 4, 32, 2, 2, 32, 1, 2, out_indices=[0]).eval()


def _pixels_of(subsets: torch.Tensor, which: int) -> torch.Tensor:
    """(B, 1, 32, 32) mask of the pixels in subset ``which`` (patch size 4, 8 x 8 grid)."""
    mask = torch.zeros(subsets.shape[0], 64)
    mask.scatter_(1, subsets[:, which], 1.0)
    return mask.view(-1, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3)


@pytest.mark.parametrize("division", ["uniform", "random"])
def test_subsets_are_disjoint_and_cover_every_patch(division):
    subsets = _riae().division(torch.rand(3, 3, 32, 32), division)
    assert subsets.shape == (3, 4, 16)
    for row in subsets:
        assert sorted(row.flatten().tolist()) == list(range(64))


def test_a_subset_encoding_ignores_the_other_subsets_pixels():
    riae, x = _riae(), torch.rand(2, 3, 32, 32)
    subsets = riae.division(x, "random")
    changed = x + _pixels_of(subsets, 1) * torch.rand_like(x)  # new pixels in subset 1 only
    with torch.no_grad():
        before, after = riae.encode(riae.normalise(x), subsets), riae.encode(riae.normalise(changed), subsets)
    for b, a in zip(before, after, strict=True):  # patch features, then class tokens
        assert torch.allclose(b[:, 0], a[:, 0], atol=1e-6) and not torch.allclose(b[:, 1], a[:, 1])


def test_a_subset_is_reconstructed_without_its_own_pixels():
    riae, x = _riae(), torch.rand(2, 3, 32, 32)
    subsets = riae.division(x, "uniform")
    own = _pixels_of(subsets, 2)
    interior = -torch.nn.functional.max_pool2d(-own, 3, stride=1, padding=1)  # the final 3x3 conv mixes 1-px borders
    changed = x + own * torch.rand_like(x)
    with torch.no_grad():
        before, after = riae(x, subsets, "occlusion"), riae(changed, subsets, "occlusion")
    assert interior.sum() >= 2 * 16 * 4  # at least the 2x2 centre of each 4x4 patch (image edges: zero padding)
    assert torch.allclose(before * interior, after * interior, atol=1e-6)  # subset 2's own pixels never reach it
    assert not torch.allclose(before * (1 - own), after * (1 - own))  # the others did see the change


def test_image_noise_is_added_in_normalised_units():
    """Code (pre_norm): x_t = sqrt(abar) x_n + sqrt(1 - abar) eps on ImageNet-normalised pixels."""
    riae = _riae()
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(riae.normalise(x) * riae.std + riae.mean, x, atol=1e-6)
    t = torch.full((2,), 400)
    seen = []
    riae.encode = lambda x_norm, subsets, positions: (
        seen.append(x_norm) or RIAE.encode(riae, x_norm, subsets, positions)
    )
    with per_example(0, [0, 1]), torch.no_grad():
        riae(x, riae.division(x, "uniform"), "image_noise", t, t)
    with per_example(0, [0, 1]):
        eps = torch.stack([torch.randn(3, 32, 32, generator=g) for g in _generators(0, [0, 1])])
    abar = float(noise_level(t)[0])
    expected = abar**0.5 * riae.normalise(x) + (1 - abar) ** 0.5 * eps
    assert torch.allclose(seen[1], expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["paper", "code", "per_image"])
def test_random_combination_takes_x_hat_where_u_is_one_and_x_adv_where_zero(mode):
    x_hat, x_adv = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with per_example(0, [0, 1]):
        torch.manual_seed(0)  # code: k and the chunk come from the global stream, once per batch
        u = random_combination(torch.ones_like(x_hat), torch.zeros_like(x_adv), 4, mode)  # = u itself
    with per_example(0, [0, 1]):
        torch.manual_seed(0)
        combined = random_combination(x_hat, x_adv, 4, mode)
    assert torch.equal(u[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3), u)  # one value per patch
    assert u.min() >= 0 and u.max() <= 1 and u.std() > 0.1
    assert torch.allclose(combined, x_hat * u + x_adv * (1 - u))
    if mode != "paper":  # binary: about 1/k of the patches (k in 2..4) from x_adv
        assert set(u.unique().tolist()) == {0.0, 1.0} and 0.15 < (1 - u).mean() < 0.6
    if mode == "code":  # exactly one chunk of round(linspace(0, 63, k + 1)) in every image: 21, 16 or 31-32 patches
        from_adv = (1 - u[:, 0, ::4, ::4]).sum(dim=(1, 2))
        assert from_adv[0] == from_adv[1] and int(from_adv[0]) in (15, 16, 21, 31, 32)
        assert not torch.equal(u[0], u[1])  # each image its own patch order


def test_code_rcm_draws_every_chunk_count_and_position():
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        u = random_combination(torch.ones(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), 4, "code")
        seen.add(int((1 - u[0, 0, ::4, ::4]).sum()))
    assert seen == {15, 16, 21, 31, 32}  # edges round(linspace(0, 63, k + 1)): k=2: 32/31, k=3: 21, k=4: 16/16/15/16


def test_positions_are_the_centred_window_at_test_and_jittered_in_training():
    """Code get_index_pos: a g x g window of the (2g x 2g) table, offset (g + 1) // 2 at test, 0..g in training."""
    riae = _riae()
    g = riae.grid
    centred = riae.positions(2, torch.device("cpu"))
    first = (g + 1) // 2 * (2 * g + 1)
    assert centred[0, 0] == first and centred[0, 1] == first + 1 and centred[0, g] == first + 2 * g
    assert torch.equal(centred[0], centred[1])
    riae.train()
    jittered = riae.positions(200, torch.device("cpu"))
    rows, cols = jittered[:, 0] // (2 * g), jittered[:, 0] % (2 * g)
    assert set(rows.tolist()) == set(range(g + 1)) and set(cols.tolist()) == set(range(g + 1))
    assert riae.pos_table.shape == (4 * g * g, 32)


def test_the_residual_base_starts_at_the_floor_and_keeps_subsets_apart():
    """base=interpolation (CPU scale, not in the paper): the untrained RIAE is exactly impure_floor's rebuild."""
    torch.manual_seed(0)
    riae = RIAE(32, 4, 4, 32, 2, 2, 32, 1, 2, out_indices=[0], base="interpolation").eval()
    x = torch.rand(2, 3, 32, 32)
    floor = DEFENSES.build("impure_floor", classifier=None, patch_size=4, subsets=4, fill_sigma=0.75)
    with torch.no_grad():
        assert torch.allclose(riae(x, riae.division(x, "uniform"), "occlusion"), floor.purify(x), atol=1e-5)
        subsets = riae.division(x, "random")
        own = _pixels_of(subsets, 2)
        base = riae.fill_from_others(x, subsets)
        assert torch.allclose(base * own, riae.fill_from_others(x + own * torch.rand_like(x), subsets) * own)


def test_weight_decay_spares_biases_and_norms():
    """timm's param_groups_weight_decay (the code's optimiser): 1-D parameters and biases without decay."""
    riae = _riae()
    exempt, decayed = ({id(p) for p in group["params"]} for group in decay_groups(riae, 0.05))
    for name, param in riae.named_parameters():
        spared = name.endswith("bias") or "norm" in name or name == "final_conv.bias"
        assert (id(param) in exempt) == spared and (id(param) in decayed) != spared, name


@pytest.fixture
def trainer(data_root, tmp_path) -> ImpureTrainer:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "defense=impure", *TINY_MODEL, "train.n_train=24", "train.batch_size=8", f"train.out={tmp_path / 'i.pt'}",
                f"train.cache_dir={tmp_path / 'cache'}", "train.attacks=[{name: fgsm}, {name: pgd, steps: 2}]",
            ],
        )  # fmt: skip
    return ImpureTrainer(cfg)


def test_pretraining_on_clean_images_lowers_the_pixel_loss(data_root, tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            "defense=impure", *TINY_MODEL, "train.stage=pretrain", "train.n_train=24", "train.batch_size=8",
            "train.lr=2e-3", f"train.out={tmp_path / 'p.pt'}",
        ])  # fmt: skip
    pre = ImpureTrainer(cfg)
    assert pre.x_adv is None and pre.feature_net is None  # no attacks and no perceptual network in pretraining
    x, y = next(pre.batches(0, torch.Generator().manual_seed(0)))
    losses = []
    for _ in range(15):
        with per_example(0, range(8)):
            out = pre.step((x, y), epoch=0)
        assert set(out) == {"pix"}
        losses.append(out["pix"])
    assert losses[-1] < 0.93 * losses[0], losses


def test_training_steps_lower_the_loss_and_the_cache_is_reused(trainer, tmp_path):
    batch = next(trainer.batches(0, torch.Generator().manual_seed(0)))
    assert trainer.x_adv.shape[:2] == (2, 24)
    losses = []
    for _ in range(12):
        with per_example(0, range(8)):  # same noise draws every step: only the weights change
            out = trainer.step(batch, epoch=0)
        losses.append(out["pix"] + out["per"])
    assert losses[-1] < losses[0], losses
    cached = list((tmp_path / "cache").glob("*.pt"))
    assert len(cached) == 1
    again = ImpureTrainer(trainer.cfg)
    assert torch.equal(again.x_adv, trainer.x_adv) and list((tmp_path / "cache").glob("*.pt")) == cached


@pytest.mark.parametrize(("finetune_on", "clean_rows"), [("adversarial", 0), ("mixed", None), ("clean", 8)])
def test_finetune_on_replaces_that_share_of_the_inputs_by_the_clean_image(trainer, finetune_on, clean_rows):
    """CPU-scale option (not in the paper): mixed/clean fine-tuning also rebuilds clean images."""
    trainer.t.finetune_on = finetune_on
    x_adv, x, y = next(trainer.batches(0, torch.Generator().manual_seed(0)))
    seen = []
    predict = trainer.riae.predict
    trainer.riae.predict = lambda x_in, *args: seen.append(x_in) or predict(x_in, *args)
    with per_example(0, range(8)):
        trainer.step((x_adv, x, y), epoch=0)
    from_clean = int((seen[0] == x).flatten(1).all(1).sum())
    assert from_clean == clean_rows if clean_rows is not None else 0 < from_clean < 8


def test_checkpoint_round_trip_and_threat_models(trainer, make_cfg, data_root):
    checkpoint.save(trainer.out, trainer.checkpoint_state(0, []))
    cfg = make_cfg("defense=impure", f"defense.checkpoint={trainer.out}")  # the checkpoint supplies the model
    assert settle(cfg.defense, trainer.out) == ["model"]
    loaded = DEFENSES.build("impure", classifier=None, **group_params(cfg.defense))
    x, _ = trainer.dataset.load(range(4))
    trainer.riae.eval()
    with per_example(1, range(4)), torch.no_grad():
        expected = trainer.defense.purify(x)
    with per_example(1, range(4)), torch.no_grad():
        assert torch.equal(loaded.purify(x), expected)
    for threat in ("oblivious", "adaptive"):
        row = evaluate(
            make_cfg(
                "defense=impure", *TINY_MODEL, f"defense.checkpoint={trainer.out}", "attack=pgd", "attack.steps=2",
                "attack.verbose=false", "n_examples=4", f"threat={threat}", "threat.n_eval=2",
                *(["threat.eot_iter=2"] if threat == "adaptive" else []),
            )
        )  # fmt: skip
        assert row["threat_model"] == threat and row["defense_randomized"] and row["ra_worst"] <= row["ra"]


def test_table_recipes_compose(make_cfg):
    for recipe in ("impure_table1", "impure_table3"):
        cfg = make_cfg(f"+experiment={recipe}", "+impure_attack=mdfgsm")
        assert (cfg.defense.name, cfg.threat.name, cfg.attack.name) == ("impure", "oblivious", "difgsm")
        assert cfg.attack.eps == pytest.approx(16 / 255, abs=1e-4) and cfg.attack.decay == 1.0


def _generators(seed: int, indices: list[int]) -> list[torch.Generator]:
    """The per-example generators of purebench.seeding, advanced past the division draw (uniform: none)."""
    return [torch.Generator().manual_seed(derive_seed(seed, i, "defense")) for i in indices]


def test_eval_pad_pads_and_resizes_back_as_the_code():
    riae = _riae()
    defense = IMPure(riae, "uniform", "occlusion", 400, 600, eval_pad=4)
    plain = IMPure(riae, "uniform", "occlusion", 400, 600)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        padded, purified = defense.purify(x), plain.purify(x)
    expected = torch.nn.functional.interpolate(
        torch.nn.functional.pad(purified, (4, 4, 4, 4)), size=(32, 32), mode="bilinear", align_corners=False
    )
    assert padded.shape == x.shape and torch.allclose(padded, expected.clamp(0, 1))
    assert padded[..., 0, :].mean() < purified[..., 0, :].mean()  # the zero border is blended in
