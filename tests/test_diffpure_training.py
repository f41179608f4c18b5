"""Training the DiffPure score network: the EMA of the weights (what is validated and exported) and the timesteps
drawn (every label the purifier evaluates at t*, no other)."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import UNet2DModel
from hydra import compose, initialize_config_dir
from torch import nn

from purebench.config_paths import CONF_DIR
from purebench.errors import PurebenchError
from purebench.train import checkpoint
from purebench.train.diffpure import DiffPureTrainer, ema_decay, ema_update, sample_timesteps
from purebench.train.export import export

TINY_UNET = ["defense.unet.block_out_channels=[8,16]", "defense.unet.down_block_types=[DownBlock2D,DownBlock2D]",
             "defense.unet.up_block_types=[UpBlock2D,UpBlock2D]", "defense.unet.norm_num_groups=4"]  # fmt: skip


def _trainer(tmp_path, *overrides: str) -> DiffPureTrainer:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["defense=diffpure", *TINY_UNET, "train.n_train=16", "train.batch_size=4",
                                          f"train.out={tmp_path / 'dp.pt'}", *overrides])  # fmt: skip
    return DiffPureTrainer(cfg)


def test_the_decay_warms_up_then_stays_at_its_maximum():
    decays = [ema_decay(0.999, k) for k in range(20_000)]
    assert decays[0] == pytest.approx(0.1) and decays[90] == pytest.approx(0.91)  # (1 + k) / (10 + k)
    assert all(a <= b for a, b in itertools.pairwise(decays)) and decays[-1] == 0.999
    assert ema_decay(0.0, 500) == 0.0  # no averaging: the EMA is the trained network


def test_an_update_moves_each_parameter_a_fraction_one_minus_decay_towards_the_trained_one():
    torch.manual_seed(0)
    ema, online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    online[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema_update(ema, online, 0.9)
    for name, p in online.named_parameters():
        assert torch.allclose(ema.state_dict()[name], 0.9 * before[name] + 0.1 * p, atol=1e-7, rtol=0)
    assert torch.equal(ema[1].running_mean, online[1].running_mean)  # buffers are not averaged
    ema_update(ema, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), online.state_dict().values(), strict=True))


def test_timesteps_cover_zero_to_t_last_inclusive():
    torch.manual_seed(0)
    t = sample_timesteps(20_000, 100)
    assert t.dtype == torch.int64 and set(t.tolist()) == set(range(101))


@pytest.mark.parametrize(("t_max", "t_last"), [(0.1, 100), (0.05, 50), (1.0, 999)])
def test_the_trainer_draws_every_label_the_purifier_evaluates_and_no_other(data_root, tmp_path, t_max, t_last):
    trainer = _trainer(tmp_path, f"train.t_max={t_max}")
    assert trainer.t_last == t_last  # ddpm labels t*T - 1 .. 0, the sde adapter t*T .. 1; 999 is the last of T
    seen: list[torch.Tensor] = []
    trainer.unet.register_forward_pre_hook(lambda _, args: seen.append(args[1]))
    x, y = trainer.dataset.load(range(4))
    for _ in range(3):
        trainer.step((x, y), epoch=0)
    seen_t = torch.cat(seen)
    assert int(seen_t.min()) >= 0 and int(seen_t.max()) <= t_last


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_a_t_max_outside_the_diffusion_is_refused(data_root, tmp_path, value):
    with pytest.raises(PurebenchError, match=r"train\.t_max"):
        _trainer(tmp_path, f"train.t_max={value}")


@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_an_ema_decay_outside_zero_to_one_is_refused(data_root, tmp_path, value):
    with pytest.raises(PurebenchError, match=r"train\.ema_decay"):
        _trainer(tmp_path, f"train.ema_decay={value}")


def test_the_trainer_averages_the_trained_weights_and_exports_the_average(data_root, tmp_path):
    trainer = _trainer(tmp_path, "train.ema_decay=0.5")
    x, y = trainer.dataset.load(range(4))
    expected = {k: v.clone() for k, v in trainer.unet.state_dict().items()}
    for k in range(3):
        trainer.step((x, y), epoch=0)
        decay = min(0.5, (1 + k) / (10 + k))
        expected = {n: decay * expected[n] + (1 - decay) * v for n, v in trainer.unet.state_dict().items()}
    assert trainer.ema_updates == 3
    for name, value in trainer.ema.state_dict().items():
        assert torch.allclose(value, expected[name], atol=1e-6, rtol=0), name
    assert not all(torch.equal(a, b) for a, b in zip(trainer.ema.parameters(), trainer.unet.parameters(), strict=True))
    assert trainer.validation_defense().unet is trainer.ema

    state = trainer.checkpoint_state(0, [{"epoch": 0, "mse": 1.0, "seconds": 1.0}])
    checkpoint.save(trainer.out, state)
    resumed = _trainer(tmp_path, "train.ema_decay=0.5")
    resumed._restore(checkpoint.load(trainer.out))
    assert resumed.ema_updates == 3  # the warm-up continues where it stopped
    for a, b in [(resumed.ema, trainer.ema), (resumed.unet, trainer.unet)]:
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    export(trainer.out, tmp_path / "exported")
    loaded = UNet2DModel.from_pretrained(tmp_path / "exported", low_cpu_mem_usage=False)
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, trainer.ema.state_dict()[name]), name  # the average, not the trained weights


def _resume(trainer: DiffPureTrainer) -> dict | None:
    return checkpoint.resume_state(trainer.out, trainer.config, trainer.resume_view, trainer.training_data)


def test_a_checkpoint_resumes_under_other_evaluation_settings_and_names_what_blocks_it(data_root, tmp_path):
    trainer = _trainer(tmp_path, "defense.sampler=ddpm", "defense.clip_denoised=true")
    state = trainer.checkpoint_state(0, [{"epoch": 0, "mse": 1.0, "seconds": 1.0}])
    state["config_hash"] = "written-before"  # ignored: the stored config is compared, not its stored hash
    del state["config"]["defense"]["adjoint"]  # a key added to the defense after the checkpoint was written
    state["config"]["dataset"]["root"] = "data-moved-since"  # the same images at another path
    checkpoint.save(trainer.out, state)
    # sampling and the attack's gradient options only change how the network purifies; threads how fast
    resumed = _trainer(tmp_path, "defense.sampler=sde", "defense.adjoint=true", "train.max_minutes=5", "threads=2")
    assert _resume(resumed)["epoch"] == 0
    other = _trainer(tmp_path, "train.lr=0.01", "defense.t_star=0.2", "threads=2")  # what is trained differs
    with pytest.raises(PurebenchError) as refused:
        _resume(other)
    named = str(refused.value)
    assert "defense.t_star=0.2 (checkpoint: 0.1)" in named and "train.lr=0.01 (checkpoint: 0.0" in named
    assert "dataset.root" not in named and "threads" not in named and "sampler" not in named  # only what blocks it


def test_a_checkpoint_trained_on_other_images_is_refused_even_where_the_config_matches(data_root, tmp_path):
    """A root (or PUREBENCH_DATA) holding other images changes no config key the resume compares."""
    trainer = _trainer(tmp_path)
    state = trainer.checkpoint_state(0, [])
    state["training_data"] = [{**state["training_data"][0], "indices": [[0, 5]]}]
    checkpoint.save(trainer.out, state)
    with pytest.raises(
        PurebenchError, match=r"the training images \(cifar10 train: 15 images; checkpoint: cifar10 train: 5"
    ):
        _resume(trainer)
    checkpoint.save(trainer.out, {**state, "config": None, "training_data": trainer.training_data})
    with pytest.raises(PurebenchError, match="stores no training config"):
        _resume(trainer)
