"""Training the DiffPure score network: the standard noise-prediction loss (Ho et al. 2020, Alg. 1).

Each step draws t uniformly and eps ~ N(0, I), forms x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
(x0 in [-1, 1]) and regresses the network's output on eps (mean squared error), with DDPM's linear
schedule (beta 1e-4 to 0.02 over 1000 steps, diffusers' ``DDPMScheduler`` defaults).

Timesteps: unlike a general-purpose model, t is drawn only from the labels the purifier ever evaluates
at t* = ``train.t_max`` (by default the defense's t*): 0 .. t*T, both ends included, since the ``ddpm``
and ``ddim`` chains label their steps t*T - 1 .. 0 and the ``sde`` sampler's adapter floor(t T) labels
them t*T .. 1. The small CPU-trained network spends its capacity there.

Loss weight: uniform in t (Ho et al.'s L_simple), kept on purpose. An error e in the predicted noise
moves a reverse step's mean by beta_t / sqrt(alpha_t (1 - abar_t)) e (Ho et al. Eq. 11; the VP SDE's
drift has the same factor), which is flat within 6 % over 5 <= t <= 100 and at most 1.6 times that
below, so every step of the purification chain is about equally sensitive to the noise error; the
x0-error weight (1 - abar_t) / abar_t would instead neglect the last steps, whose unremoved noise the
chain hands straight to the classifier.

EMA: the network evaluated (validation, export, ``defense.model``) is an exponential moving average of
the trained weights (Ho et al. 2020 Sec. 4 and every diffusion model since), stored as ``purifier``;
the trained weights are ``online``. DDPM's decay 0.9999 averages ~10^4 steps, more than a CPU run
makes, so the decay is ``train.ema_decay`` with the warm-up min(decay, (1 + k) / (10 + k)) after k
updates (``tf.train.ExponentialMovingAverage``'s num_updates): it averages roughly the last tenth of a
short run instead of keeping the random initialisation. Validation: SA and oblivious RA of the
purifier with the defense's test-time settings.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

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


def sample_timesteps(n: int, t_last: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` timesteps drawn uniformly from 0 .. ``t_last``, both included (the labels the purifier evaluates)."""
    return torch.randint(0, t_last + 1, (n,), device=device)


def ema_decay(max_decay: float, updates: int) -> float:
    """The EMA decay of update number ``updates`` (from 0): ``max_decay`` once the warm-up (1 + k) / (10 + k)
    exceeds it, so the first updates follow the trained weights instead of averaging in the initialisation."""
    return min(max_decay, (1 + updates) / (10 + updates))


@torch.no_grad()
def ema_update(ema: nn.Module, online: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * online, parameter by parameter; buffers are copied."""
    for averaged, trained in zip(ema.parameters(), online.parameters(), strict=True):
        averaged.lerp_(trained, 1 - decay)
    for averaged, trained in zip(ema.buffers(), online.buffers(), strict=True):
        averaged.copy_(trained)


class DiffPureTrainer(Trainer):
    purifier_keys = ("unet",)
    label_free_stages = ("pretrain",)
    evaluation_keys = ("model", "sampler", "steps", "eta", "clip_denoised", "grad_checkpoint", "adjoint")

    def __init__(self, cfg: DictConfig) -> None:
        if cfg.train.stage != "pretrain":
            raise PurebenchError(f"DiffPure has one training stage, pretrain; got train.stage={cfg.train.stage}.")
        super().__init__(cfg)
        self.unet = build_unet(OmegaConf.to_container(cfg.defense.unet)).to(self.device)
        self.ema = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.networks["purifier"] = self.ema  # what validation, export and evaluation use
        self.networks["online"] = self.unet
        self.optimizers["online"] = torch.optim.Adam(self.unet.parameters(), lr=float(self.t.lr))
        self.ema_updates = 0
        if not 0 <= float(self.t.ema_decay) < 1:
            raise PurebenchError(f"train.ema_decay must be in [0, 1) (0: no averaging), got {self.t.ema_decay}.")
        self.alphas_cumprod = noise_schedule().to(self.device)
        n_steps = len(self.alphas_cumprod)
        if not 0 < float(self.t.t_max) <= 1:
            raise PurebenchError(f"train.t_max must be in (0, 1] (a fraction of the diffusion), got {self.t.t_max}.")
        self.t_last = min(round(float(self.t.t_max) * n_steps), n_steps - 1)
        self.validation_attack = ATTACKS.build(
            self.t.val_attack.name, seed=self.seed, verbose=False, norm=self.t.norm, eps=self.t.eps,
            **group_params(self.t.val_attack),
        )  # fmt: skip

    def step(self, batch: tuple[torch.Tensor, ...], epoch: int) -> dict[str, float]:
        x, _ = batch
        self.unet.train()
        x0 = 2 * x - 1
        t = sample_timesteps(x.shape[0], self.t_last, x.device)
        eps = torch.randn_like(x0)
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(self.unet(abar.sqrt() * x0 + (1 - abar).sqrt() * eps, t).sample, eps)
        optimizer = self.optimizers["online"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), float(self.t.grad_clip))
        optimizer.step()
        ema_update(self.ema, self.unet, ema_decay(float(self.t.ema_decay), self.ema_updates))
        self.ema_updates += 1
        return {"mse": loss.item()}

    def checkpoint_state(self, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {**super().checkpoint_state(epoch, history), "ema_updates": self.ema_updates}

    def _restore(self, state: dict[str, Any]) -> None:
        super()._restore(state)
        self.ema_updates = int(state["ema_updates"])  # the warm-up continues where it stopped

    def validation_defense(self) -> Defense:
        d = self.cfg.defense
        return DiffPure(self.ema, self.alphas_cumprod, d.t_star, d.sampler, d.steps, d.eta, d.clip_denoised, False)
