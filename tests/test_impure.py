"""IMPure: RIAE subsets and their isolation, RCM, training, checkpoints and threat models."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from purebench.cli import CONF_DIR
from purebench.defenses import DEFENSES
from purebench.defenses.impure.riae import RIAE
from purebench.eval.runner import evaluate, group_params
from purebench.seeding import per_example
from purebench.train import checkpoint
from purebench.train.impure import ImpureTrainer, random_combination

TINY_MODEL = [
    "defense.model.dim=32", "defense.model.depth=1", "defense.model.heads=2",
    "defense.model.decoder_dim=32", "defense.model.decoder_depth=1", "defense.model.decoder_heads=2",
]  # fmt: skip


def _riae() -> RIAE:
    torch.manual_seed(0)
    return RIAE(32, 4, 4, 32, 1, 2, 32, 1, 2).eval()


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
        before, after = riae.encode(x, subsets), riae.encode(changed, subsets)
    assert torch.allclose(before[:, 0], after[:, 0], atol=1e-6) and not torch.allclose(before[:, 1], after[:, 1])


def test_a_subset_is_reconstructed_without_its_own_pixels():
    riae, x = _riae(), torch.rand(2, 3, 32, 32)
    subsets = riae.division(x, "uniform")
    own = _pixels_of(subsets, 2)
    changed = x + own * torch.rand_like(x)
    with torch.no_grad():
        before, after = riae(x, subsets, "occlusion"), riae(changed, subsets, "occlusion")
    assert torch.allclose(before * own, after * own, atol=1e-6)  # subset 2's prediction is unchanged
    assert not torch.allclose(before * (1 - own), after * (1 - own))  # the others did see the change


def test_random_combination_takes_x_hat_where_u_is_one_and_x_adv_where_zero():
    x_hat, x_adv = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with per_example(0, [0, 1]):
        u = random_combination(torch.ones_like(x_hat), torch.zeros_like(x_adv), 4)  # = u itself
    with per_example(0, [0, 1]):
        combined = random_combination(x_hat, x_adv, 4)
    assert torch.equal(u[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3), u)  # one value per patch
    assert u.min() >= 0 and u.max() <= 1 and u.std() > 0.1
    assert torch.allclose(combined, x_hat * u + x_adv * (1 - u))


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


def test_checkpoint_round_trip_and_threat_models(trainer, make_cfg, data_root):
    checkpoint.save(trainer.out, trainer.checkpoint_state(0, []))
    cfg = make_cfg("defense=impure", *TINY_MODEL, f"defense.checkpoint={trainer.out}")
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
