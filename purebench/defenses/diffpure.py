"""DiffPure (Nie et al. 2022): diffuse the input to t*, then run the reverse process back to 0.

x_{t*} = sqrt(abar_{t*}) x + sqrt(1 - abar_{t*}) eps (Eq. 2, images in [-1, 1]), then the reverse
chain with a noise-predicting score network (diffusers ``UNet2DModel``) and the noise schedule of a
diffusers DDPM scheduler config. DiffPure's CIFAR-10 setting is t* = 0.1 of the VP-SDE, i.e. the
last 100 of 1000 discrete steps; as in the authors' discrete (guided-diffusion) path, the input is
noised to step t*T - 1 and every step down to 0 is an ancestral DDPM step (Ho et al. 2020, Eq. 6-7),
with the predicted x0 clipped to [-1, 1].

Both samplers are the generalised DDIM update (Song et al. 2021, Eq. 12) over the chosen
timesteps: ``ddpm`` is eta = 1 (the DDPM posterior; with every step, exactly ancestral DDPM; with
fewer, the respaced chain of Nichol & Dhariwal), ``ddim`` is eta = ``defense.eta`` (0:
deterministic after the forward noise). The update is written out rather than taken from the
schedulers' ``step`` because those draw their noise internally: here every draw is made up front
(per-example seeded, as every defense's), so the gradient-checkpointed adaptive path replays
exactly the noise of the forward pass. A test checks the update equals diffusers' schedulers.

Adaptive attacks (``adaptive_purify``) differentiate through every reverse step; with
``defense.grad_checkpoint`` each step is recomputed in the backward pass
(``torch.utils.checkpoint``, non-reentrant), so memory stays flat in the number of steps instead of
growing with it; ``backprop_steps=k`` unrolls only the last k steps and bridges the earlier ones
straight-through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from purebench.classifiers import Classifier
from purebench.defenses.base import DEFENSES, Defense
from purebench.errors import PurebenchError
from purebench.seeding import randn_like

SAMPLERS = ("ddpm", "ddim")


def _load_part(cls: Any, source: str, subfolder: str, offline: bool, **options: Any) -> Any:
    """``cls.from_pretrained`` from the root of ``source`` or, as a saved pipeline keeps it, its ``subfolder``."""
    try:
        return cls.from_pretrained(source, local_files_only=offline, **options)
    except (OSError, ValueError):
        return cls.from_pretrained(source, subfolder=subfolder, local_files_only=offline, **options)


def _from_pretrained(source: str, offline: bool) -> tuple[nn.Module, torch.Tensor]:
    from diffusers import DDPMScheduler, UNet2DModel

    unet = _load_part(UNet2DModel, source, "unet", offline, low_cpu_mem_usage=False)  # no `accelerate` needed
    scheduler = _load_part(DDPMScheduler, source, "scheduler", offline)
    return unet.eval(), scheduler.alphas_cumprod.float()


def load_diffusion(model: str) -> tuple[nn.Module, torch.Tensor]:
    """The score network and the cumulative noise schedule abar_t of a diffusers model: a local
    folder (``config.json`` + weights and ``scheduler_config.json``, at its root or in the ``unet/`` and
    ``scheduler/`` folders of a saved pipeline)
    or a hub id, taken from the Hugging Face cache or fetched where there is a network."""
    path = Path(model).expanduser()
    if path.is_dir():
        try:
            return _from_pretrained(str(path), offline=True)
        except (OSError, ValueError) as exc:
            raise PurebenchError(
                f"defense.model='{model}' is a folder but not a diffusers model ({str(exc).splitlines()[0]}). It needs "
                "config.json and diffusion_pytorch_model.safetensors of a UNet2DModel and a DDPM scheduler_config.json."
            ) from exc
    if path.suffix or path.is_absolute() or str(model).startswith((".", "~")) or str(model).count("/") != 1:
        raise PurebenchError(
            f"defense.model='{model}' is neither a folder nor a hub id (owner/name). Point it at a diffusers model "
            "folder, e.g. results/checkpoints/diffpure_small, or a hub id such as google/ddpm-cifar10-32."
        )
    try:
        return _from_pretrained(model, offline=True)  # already in the hub cache
    except (OSError, ValueError):
        pass
    try:
        return _from_pretrained(model, offline=False)
    except (OSError, ValueError) as exc:
        raise PurebenchError(
            f"defense.model='{model}' is not a local folder, not in the Hugging Face cache, and could not be fetched "
            f"from the hub (no network here?). Where there is a network, download it once (huggingface-cli download "
            f"{model} --local-dir DIR) and set defense.model=DIR; offline, use the small model shipped in "
            "results/checkpoints/diffpure_small."
        ) from exc


def reverse_timesteps(t_start: int, steps: int | None) -> list[int]:
    """``steps`` timesteps from t_start down to 0, evenly spaced (all t_start + 1 of them for None)."""
    if steps is None or steps >= t_start + 1:
        return list(range(t_start, -1, -1))
    if steps < 1:
        raise PurebenchError(f"defense.steps must be null (every step) or >= 1, got {steps}.")
    spaced = torch.linspace(t_start, 0, steps).round().long().tolist()
    return sorted(set(spaced), reverse=True)


class DiffPure(Defense):
    randomized = True

    def __init__(
        self,
        unet: nn.Module,
        alphas_cumprod: torch.Tensor,
        t_star: float,
        sampler: str,
        steps: int | None,
        eta: float,
        clip_denoised: bool,
        grad_checkpoint: bool,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise PurebenchError(f"defense.sampler must be one of {', '.join(SAMPLERS)}, got '{sampler}'.")
        n_train = len(alphas_cumprod)
        t_start = round(t_star * n_train) - 1
        if not 0 <= t_start < n_train:
            raise PurebenchError(f"defense.t_star must be in (0, 1] (a fraction of the diffusion), got {t_star}.")
        self.unet = unet
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.timesteps = reverse_timesteps(t_start, steps)
        self.eta = 1.0 if sampler == "ddpm" else float(eta)
        self.clip_denoised, self.grad_checkpoint = clip_denoised, grad_checkpoint

    def _abar(self, t: int) -> torch.Tensor:
        return self.alphas_cumprod[t] if t >= 0 else self.alphas_cumprod.new_tensor(1.0)

    def step(self, h: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> torch.Tensor:
        """One reverse step t -> t_prev (Song et al. 2021 Eq. 12; eta = 1 is the DDPM posterior, Ho et al. Eq. 6-7)."""
        abar, abar_prev = self._abar(t), self._abar(t_prev)
        eps = self.unet(h, torch.full((h.shape[0],), t, device=h.device)).sample
        x0 = (h - (1 - abar).sqrt() * eps) / abar.sqrt()
        if self.clip_denoised:
            x0 = x0.clamp(-1, 1)
            eps = (h - abar.sqrt() * x0) / (1 - abar).sqrt()  # the noise consistent with the clipped x0
        sigma = self.eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp_min(0).sqrt()
        return abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp_min(0).sqrt() * eps + sigma * noise

    def _draws(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The forward noise and one noise tensor per reverse step, drawn up front (replayable)."""
        return randn_like(x), [randn_like(x) for _ in self.timesteps]

    def _run(self, x: torch.Tensor, keep_last: int) -> torch.Tensor:
        """The purification; the last ``keep_last`` reverse steps stay in the autograd graph."""
        forward_noise, noises = self._draws(x)
        t0 = self.timesteps[0]
        h = self._abar(t0).sqrt() * (2 * x - 1) + (1 - self._abar(t0)).sqrt() * forward_noise  # Eq. 2
        first_kept = len(self.timesteps) - keep_last
        for k, (t, noise) in enumerate(zip(self.timesteps, noises, strict=True)):
            t_prev = self.timesteps[k + 1] if k + 1 < len(self.timesteps) else -1
            if k < first_kept:  # not unrolled: the forward value, bridged straight-through when grad is on
                with torch.no_grad():
                    out = self.step(h, t, t_prev, noise)
                h = h + (out - h).detach() if h.requires_grad else out
            elif self.grad_checkpoint and torch.is_grad_enabled():
                h = checkpoint(self.step, h, t, t_prev, noise, use_reentrant=False)
            else:
                h = self.step(h, t, t_prev, noise)
        return ((h + 1) / 2).clamp(0, 1)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._run(x, keep_last=0)

    def adaptive_purify(self, x: torch.Tensor, backprop_steps: int | None = None) -> torch.Tensor:
        keep = len(self.timesteps) if backprop_steps is None else min(backprop_steps, len(self.timesteps))
        return self._run(x, keep_last=keep)


@DEFENSES.register("diffpure")
def diffpure(name: str, classifier: Classifier, model: str, **params: Any) -> Defense:
    """DiffPure with a diffusers score network (local folder or hub id)."""
    unet, alphas_cumprod = load_diffusion(str(model))
    return DiffPure(unet.requires_grad_(False), alphas_cumprod, **{k: v for k, v in params.items() if k != "unet"})
