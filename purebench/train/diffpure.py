"""Training the DiffPure score network: the standard noise-prediction loss (Ho et al. 2020, Alg. 1).

Each step draws t uniformly and eps ~ N(0, I), forms x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
(x0 in [-1, 1]) and regresses the network's output on eps (mean squared error), with DDPM's linear
schedule (beta 1e-4 to 0.02 over 1000 steps, diffusers' ``DDPMScheduler`` defaults). Unlike a
general-purpose model, t is drawn only below ``train.t_max`` of the diffusion (by default the
defense's t*), the range the purifier ever visits: the small CPU-trained network spends its
capacity there. No EMA of the weights (DDPM keeps one at 0.9999, which would barely move over the
few thousand steps a CPU allows). Validation: SA and oblivious RA of the purifier with the
defense's test-time settings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from purebench.attacks import ATTACKS
from purebench.defenses import Defense
from purebench.defenses.diffpure import DiffPure
from purebench.errors import PurebenchError
from purebench.eval.runner import group_params
from purebench.train.base import Trainer


def build_unet(unet_config: dict) -> torch.nn.Module:
    """The small 32x32 ``UNet2DModel`` of ``defense.unet`` (3 channels in and out)."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, **{
        k: tuple(v) if isinstance(v, list) else v for k, v in unet_config.items()
    })  # fmt: skip


def noise_schedule() -> torch.Tensor:
    """abar_t of DDPM's linear schedule (diffusers ``DDPMScheduler()`` defaults)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler().alphas_cumprod.float()


class DiffPureTrainer(Trainer):
    purifier_keys = ("unet",)
    label_free_stages = ("pretrain",)

    def __init__(self, cfg: DictConfig) -> None:
        if cfg.train.stage != "pretrain":
            raise PurebenchError(f"DiffPure has one training stage, pretrain; got train.stage={cfg.train.stage}.")
        super().__init__(cfg)
        self.unet = build_unet(OmegaConf.to_container(cfg.defense.unet)).to(self.device)
        self.networks["purifier"] = self.unet
        self.optimizers["purifier"] = torch.optim.Adam(self.unet.parameters(), lr=float(self.t.lr))
        self.alphas_cumprod = noise_schedule().to(self.device)
        self.t_max = round(float(self.t.t_max) * len(self.alphas_cumprod))
        if not 1 <= self.t_max <= len(self.alphas_cumprod):
            raise PurebenchError(f"train.t_max must be in (0, 1] (a fraction of the diffusion), got {self.t.t_max}.")
        self.validation_attack = ATTACKS.build(
            self.t.val_attack.name, seed=self.seed, verbose=False, norm=self.t.norm, eps=self.t.eps,
            **group_params(self.t.val_attack),
        )  # fmt: skip

    def step(self, batch: tuple[torch.Tensor, ...], epoch: int) -> dict[str, float]:
        x, _ = batch
        self.unet.train()
        x0 = 2 * x - 1
        t = torch.randint(0, self.t_max, (x.shape[0],), device=x.device)
        eps = torch.randn_like(x0)
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(self.unet(abar.sqrt() * x0 + (1 - abar).sqrt() * eps, t).sample, eps)
        optimizer = self.optimizers["purifier"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), float(self.t.grad_clip))
        optimizer.step()
        return {"mse": loss.item()}

    def validation_defense(self) -> Defense:
        d = self.cfg.defense
        return DiffPure(
            self.unet.eval(), self.alphas_cumprod, d.t_star, d.sampler, d.steps, d.eta, d.clip_denoised, False
        )
