"""DiffPure: the reverse update against diffusers' schedulers, seeding, exact checkpointed gradients, loading."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from purebench.defenses import DEFENSES
from purebench.defenses.diffpure import DiffPure, reverse_timesteps
from purebench.errors import PurebenchError
from purebench.eval.runner import evaluate
from purebench.seeding import per_example

REPO = Path(__file__).resolve().parent.parent
TINY_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1, "down_block_types": ["DownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 4}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A local diffusers folder: an untrained tiny UNet2DModel and DDPM's scheduler config."""
    folder = tmp_path_factory.mktemp("tiny_diffusion")
    torch.manual_seed(0)
    UNet2DModel(sample_size=8, in_channels=3, out_channels=3, **{
        k: tuple(v) if isinstance(v, list) else v for k, v in TINY_UNET.items()
    }).save_pretrained(folder)  # fmt: skip
    DDPMScheduler().save_pretrained(folder)
    return folder


def _defense(folder: Path, **overrides) -> DiffPure:
    params = {"t_star": 0.1, "sampler": "ddpm", "steps": None, "eta": 0.0, "clip_denoised": True,
              "grad_checkpoint": True, **overrides}  # fmt: skip
    return DEFENSES.build("diffpure", classifier=None, model=str(folder), **params)


@pytest.mark.parametrize("sampler", ["ddpm", "sde"])
def test_purification_is_in_range_random_and_seeded_per_example(tiny_model, sampler):
    defense = _defense(tiny_model, sampler=sampler, steps=5)
    if sampler == "ddpm":
        assert defense.timesteps == [99, 74, 50, 25, 0] and reverse_timesteps(99, None) == list(range(99, -1, -1))
    else:  # torchsde's time s = 1 - t, from 1 - t* to 1 - 1e-5
        assert defense.n_steps == 5 and torch.allclose(defense.grid[[0, -1]], torch.tensor([0.9, 1 - 1e-5]))
    x = torch.rand(4, 3, 8, 8)
    with per_example(0, [10, 11, 12, 13], "purify"):
        batch = defense.purify(x)
    with per_example(0, [12], "purify"):
        alone = defense.purify(x[2:3])
    assert defense.randomized and batch.shape == x.shape and batch.min() >= 0 and batch.max() <= 1
    assert torch.allclose(batch[2:3], alone, atol=1e-6)  # example 12's draws do not depend on its batch
    assert not torch.equal(defense.purify(x), defense.purify(x))  # random outside a seeded context


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_the_reverse_update_equals_diffusers_ddim_step(tiny_model, eta):
    defense = _defense(tiny_model, sampler="ddim", eta=eta, steps=10)
    scheduler = DDIMScheduler.from_pretrained(tiny_model)
    scheduler.set_timesteps(1000 // 11)  # a spacing of 11 steps, as the respaced chain 99, 88, ..., 0
    h, noise = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    for t, t_prev in [(99, 88), (11, 0), (0, -1)]:
        ours = defense.step(h, t, t_prev, noise)
        eps = defense.unet(h, torch.full((2,), t)).sample
        theirs = scheduler.step(eps, t, h, eta=eta, use_clipped_model_output=True, variance_noise=noise).prev_sample
        assert torch.allclose(ours, theirs, atol=1e-5), (t, (ours - theirs).abs().max())


def _input_gradient(defense: DiffPure, x: torch.Tensor, backprop_steps: int | None) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    with per_example(0, range(len(x)), "attack"):
        out = defense.adaptive_purify(x, backprop_steps)
    (grad,) = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), x)
    return grad


@pytest.mark.parametrize("backprop_steps", [None, 3])
def test_the_checkpointed_gradient_equals_the_fully_unrolled_one(tiny_model, backprop_steps):
    x = torch.rand(2, 3, 8, 8)
    naive = _input_gradient(_defense(tiny_model, steps=8, grad_checkpoint=False), x, backprop_steps)
    checkpointed = _input_gradient(_defense(tiny_model, steps=8, grad_checkpoint=True), x, backprop_steps)
    assert naive.abs().max() > 0 and torch.equal(naive, checkpointed)
    if backprop_steps is not None:  # truncation changes the gradient (bridged steps are straight-through)
        assert not torch.equal(naive, _input_gradient(_defense(tiny_model, steps=8, grad_checkpoint=False), x, None))


def _saved_bytes(defense: DiffPure, x: torch.Tensor) -> int:
    """Bytes the autograd graph of one adaptive purification keeps for the backward pass."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        defense.adaptive_purify(x.clone().requires_grad_(True))
    return total


def test_checkpointing_keeps_memory_flat_in_the_number_of_steps(tiny_model):
    x = torch.rand(2, 3, 8, 8)
    saved = {(steps, ckpt): _saved_bytes(_defense(tiny_model, steps=steps, grad_checkpoint=ckpt), x)
             for steps in (5, 20) for ckpt in (False, True)}  # fmt: skip
    assert saved[(20, False)] > 3.5 * saved[(5, False)]  # the naive graph grows with the steps
    assert saved[(20, True)] < 0.1 * saved[(20, False)]
    assert saved[(20, True)] < 5 * saved[(5, True)]  # only each step's inputs are kept


def test_a_folder_that_is_not_a_model_and_a_path_like_name_fail_clearly(tmp_path):
    with pytest.raises(PurebenchError, match="is a folder but not a diffusers model"):
        _defense(tmp_path)
    with pytest.raises(PurebenchError, match="neither a folder nor a hub id"):
        _defense(tmp_path / "missing_model")


def test_a_hub_id_without_network_fails_with_what_to_do(tmp_path):
    code = "from purebench.defenses.diffpure import load_diffusion; load_diffusion('google/ddpm-cifar10-32')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache, no network
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "could not be fetched from the hub" in done.stderr
    assert "huggingface-cli download google/ddpm-cifar10-32" in done.stderr


def test_diffpure_runs_end_to_end_under_the_adaptive_threat(make_cfg, data_root, tiny_model):
    row = evaluate(make_cfg("defense=diffpure", f"defense.model={tiny_model}", "defense.steps=3", "attack=pgd",
                            "attack.steps=2", "attack.verbose=false", "threat=adaptive", "threat.eot_iter=2",
                            "threat.n_eval=2", "n_examples=4", "figures=0"))  # fmt: skip
    assert row["defense_randomized"] and row["threat_eot_iter"] == 2 and row["n_eval"] == 2
    assert 0 <= row["ra_worst"] <= row["ra"] <= 100


def test_train_export_and_evaluate_the_exported_folder(make_cfg, data_root, tmp_path):
    out, folder = tmp_path / "dp.pt", tmp_path / "checkpoints" / "diffpure_tiny"
    unet = [f"defense.unet.{k}=[{','.join(map(str, v))}]" if isinstance(v, list) else f"defense.unet.{k}={v}"
            for k, v in TINY_UNET.items()]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "purebench.train", "defense=diffpure", *unet, "defense.steps=2", "train.n_train=48",
         "train.batch_size=16", "train.epochs=2", "train.val_every=2", f"train.out={out}", "threads=1",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    history = torch.load(out, weights_only=True)["history"]
    assert len(history) == 2 and history[-1]["mse"] < history[0]["mse"] and "val_sa" in history[-1]
    from purebench.train.export import export

    entry = export(out, folder)
    assert entry["file"] == "diffpure_tiny" and (folder / "purebench.json").is_file() and entry["bytes"] < 5 * 2**20
    row = evaluate(make_cfg("defense=diffpure", f"defense.model={folder}", "defense.steps=2", "attack=fgsm",
                            "attack.verbose=false", "n_examples=4", "threat.n_eval=2", "figures=0"))  # fmt: skip
    assert row["defense"] == "diffpure" and 0 <= row["ra"] <= 100


def _configured(tiny_model: Path, folder: Path, **scheduler: object) -> Path:
    """The tiny network with a scheduler config set the given way (a model trained for it, as far as loading goes)."""
    shutil.copytree(tiny_model, folder)
    DDPMScheduler(**scheduler).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize(("variance_type", "clip_sample"), [("fixed_small", True), ("fixed_large", False),
                                                            ("fixed_small_log", True)])  # fmt: skip
def test_every_scheduler_setting_is_honoured_as_diffusers_steps(tiny_model, tmp_path, prediction_type, variance_type,
                                                                clip_sample):  # fmt: skip
    folder = _configured(tiny_model, tmp_path / "m", prediction_type=prediction_type, variance_type=variance_type,
                         clip_sample=clip_sample, clip_sample_range=1.5)  # fmt: skip
    defense = _defense(folder, clip_denoised=None)  # null: the model's clip_sample and range
    assert defense.clip_denoised is clip_sample and defense.settings.prediction_type == prediction_type
    scheduler = DDPMScheduler.from_pretrained(folder)
    scheduler.set_timesteps(timesteps=list(range(99, -1, -1)))
    h = torch.randn(2, 3, 8, 8)
    for t in (99, 50, 1, 0):
        noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(t))
        ours = defense.step(h, t, t - 1, noise)
        raw = defense.unet.network(h, torch.full((2,), t)).sample  # what the network predicts, x0 or v included
        theirs = scheduler.step(raw, t, h, generator=torch.Generator().manual_seed(t)).prev_sample
        assert torch.allclose(ours, theirs, atol=3e-4), (t, (ours - theirs).abs().max())


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"variance_type": "learned_range"}, "variance_type=learned_range"),
     ({"variance_type": "fixed_large_log"}, "variance_type=fixed_large_log"),
     ({"thresholding": True}, "thresholding=true")],
)  # fmt: skip
def test_a_scheduler_setting_the_samplers_cannot_honour_is_refused(tiny_model, tmp_path, setting, message):
    folder = _configured(tiny_model, tmp_path / "m", **setting)
    with pytest.raises(PurebenchError, match=rf"{message} .* do not implement"):
        _defense(folder)
