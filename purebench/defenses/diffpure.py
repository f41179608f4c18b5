"""DiffPure (Nie et al. 2022): diffuse the input to t*, then run the reverse process back to 0.

x_{t*} = sqrt(abar_{t*}) x + sqrt(1 - abar_{t*}) eps (Eq. 2, images in [-1, 1]), with a noise-predicting
score network (diffusers ``UNet2DModel``, discrete timesteps 0..T-1) and the noise schedule of a diffusers
DDPM scheduler config. DiffPure's CIFAR-10 setting is t* = 0.1, i.e. the last 100 of T = 1000 steps: the
input is noised to the discrete step t*T - 1 (abar at index 99), as in both of the authors' paths.

``sde`` (default) is the authors' CIFAR-10 path (``--diffusion_type sde``, runners/diffpure_sde.py):
Euler-Maruyama through ``torchsde`` on the reverse-time VP SDE (Song et al. 2021, Eq. 6 with the VP SDE of
Eq. 11, beta(t) = 0.1 + 19.9 t) from t = t* to t = 1e-5 in steps of dt = 1e-3 (100 steps, the last one
1e-5 short), every step adding noise of variance beta(t) dt, nothing clipped. A discrete noise-predicting
network enters it through the authors' adapter for such networks (their ``guided_diffusion`` score type):
score = -eps(x, floor(t T)) / sqrt(1 - abar(t)) with the continuous abar(t) = exp(-9.95 t^2 - 0.1 t); on
torchsde's float32 time grid the labels are 100, 99, ..., 1, about 0.6 above the (fractional) discrete step
of the same noise level (99.4 at t = 0.1). ``steps=k`` takes dt = t*/k instead (a CPU-scale shortcut).

``ddpm`` (the authors' ImageNet/CelebA-HQ path, guided-diffusion) and ``ddim`` are the generalised DDIM
update (Song et al. 2021, Eq. 12) over the chosen discrete timesteps: ``ddpm`` is eta = 1 (the DDPM
posterior; with every step, exactly ancestral DDPM, Ho et al. 2020 Eq. 6-7, the predicted x0 clipped to
[-1, 1]; with fewer, the respaced chain of Nichol & Dhariwal), ``ddim`` is eta = ``defense.eta`` (0:
deterministic after the forward noise). The update is written out rather than taken from the schedulers'
``step`` because those draw their noise internally: here every draw is made up front (per-example seeded,
as every defense's; for ``sde`` the Brownian increments, replayed to torchsde by :class:`ReplayedBrownian`),
so the adaptive path and ``threat=known_draws`` replay exactly the noise of the forward pass. Tests check
the discrete update against diffusers' schedulers and ``sde`` against the authors' code.

Adaptive attacks (``adaptive_purify``) differentiate through every reverse step; with
``defense.grad_checkpoint`` each step's network evaluation is recomputed in the backward pass
(``torch.utils.checkpoint``, non-reentrant), so memory stays flat in the number of steps instead of
growing with it; ``backprop_steps=k`` unrolls only the last k steps and bridges the earlier ones
straight-through. ``sde`` also offers the authors' gradient, ``defense.adjoint``: torchsde's stochastic
adjoint (``sdeint_adjoint``), which solves the SDE backwards instead of storing or recomputing the forward
steps, and so is exact only up to the solver's discretisation error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchsde
from torch import nn
from torch.utils.checkpoint import checkpoint

from purebench.classifiers import Classifier
from purebench.defenses.base import DEFENSES, Defense
from purebench.errors import PurebenchError
from purebench.seeding import randn_like

SAMPLERS = ("sde", "ddpm", "ddim")
# The authors' VP SDE (runners/diffpure_sde.py): beta(t) = BETA_MIN + t (BETA_MAX - BETA_MIN), the continuous
# limit of DDPM's linear discrete betas BETA_MIN/T .. BETA_MAX/T; solved down to SDE_EPS, not 0, where the
# score's 1/sqrt(1 - abar(t)) diverges; torchsde's default step SDE_DT.
BETA_MIN, BETA_MAX, SDE_EPS, SDE_DT = 0.1, 20.0, 1e-5, 1e-3


def _load_part(cls: Any, source: str, subfolder: str, offline: bool, **options: Any) -> Any:
    """``cls.from_pretrained`` from the root of ``source`` or, as a saved pipeline keeps it, its ``subfolder``."""
    try:
        return cls.from_pretrained(source, local_files_only=offline, **options)
    except (OSError, ValueError):
        return cls.from_pretrained(source, subfolder=subfolder, local_files_only=offline, **options)


@dataclass(frozen=True)
class SchedulerSettings:
    """What a model's ``scheduler_config.json`` says about its reverse process, beyond abar_t (diffusers'
    names and defaults). Each is honoured or the model is refused: ignored, an x0- or v-predicting
    model would run silently wrong."""

    prediction_type: str = "epsilon"  # what the network outputs: epsilon | sample (x0) | v_prediction
    variance_type: str = "fixed_small"  # DDPM step noise: beta-tilde (fixed_small[_log]) or beta (fixed_large)
    clip_sample: bool = True  # clip the predicted x0 (defense.clip_denoised=null follows this)
    clip_sample_range: float = 1.0


PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large")  # learned variances need a 6-channel head


class NoisePredictor(nn.Module):
    """A diffusers UNet as the noise predictor eps(x_t, t) every sampler here is written for, whatever
    it was trained to predict (diffusers' conventions, DDPMScheduler.step): x0 gives
    eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar), v gives eps = sqrt(abar) v + sqrt(1 - abar) x_t.
    Called and answered as the UNet is (``net(x, t).sample``), so samplers take either."""

    def __init__(self, network: nn.Module, alphas_cumprod: torch.Tensor, settings: SchedulerSettings) -> None:
        super().__init__()
        self.network, self.settings = network, settings
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> Any:
        out = self.network(x, t)
        kind = self.settings.prediction_type
        if kind == "epsilon":
            return out
        labels = torch.as_tensor(t, device=x.device).long().expand(x.shape[0])
        abar = self.alphas_cumprod[labels].view(-1, *[1] * (x.dim() - 1))
        if kind == "sample":
            out.sample = (x - abar.sqrt() * out.sample) / (1 - abar).sqrt()
        else:
            out.sample = abar.sqrt() * out.sample + (1 - abar).sqrt() * x
        return out


def scheduler_settings(scheduler: Any, source: str) -> SchedulerSettings:
    """The settings of a diffusers scheduler config, refusing what the samplers here cannot honour."""
    config = scheduler.config
    settings = SchedulerSettings(
        config.prediction_type, config.variance_type, bool(config.clip_sample), float(config.clip_sample_range)
    )
    refused = []
    if settings.prediction_type not in PREDICTION_TYPES:
        refused.append(f"prediction_type={settings.prediction_type} (supported: {', '.join(PREDICTION_TYPES)})")
    if settings.variance_type not in VARIANCE_TYPES:
        refused.append(f"variance_type={settings.variance_type} (supported: {', '.join(VARIANCE_TYPES)})")
    if config.get("thresholding", False):
        refused.append("thresholding=true (dynamic thresholding of x0)")
    if refused:
        raise PurebenchError(
            f"defense.model='{source}': its scheduler_config.json has {'; '.join(refused)}, which DiffPure's "
            "samplers here do not implement, and ignoring it would purify with the wrong process. Use a model with "
            "a fixed-variance DDPM schedule, or convert the model's output head."
        )
    return settings


def _from_pretrained(source: str, offline: bool) -> tuple[nn.Module, torch.Tensor]:
    from diffusers import DDPMScheduler, UNet2DModel

    unet = _load_part(UNet2DModel, source, "unet", offline, low_cpu_mem_usage=False)  # no `accelerate` needed
    scheduler = _load_part(DDPMScheduler, source, "scheduler", offline)
    alphas_cumprod = scheduler.alphas_cumprod.float()
    return NoisePredictor(unet.eval(), alphas_cumprod, scheduler_settings(scheduler, source)), alphas_cumprod


def load_diffusion(model: str) -> tuple[NoisePredictor, torch.Tensor]:
    """The noise predictor (with its :class:`SchedulerSettings`) and the cumulative noise schedule abar_t
    of a diffusers model: a local
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
    """``steps`` (>= 1) timesteps from t_start down to 0, evenly spaced (all t_start + 1 of them for None)."""
    if steps is None or steps >= t_start + 1:
        return list(range(t_start, -1, -1))
    spaced = torch.linspace(t_start, 0, steps).round().long().tolist()
    return sorted(set(spaced), reverse=True)


def sde_time_grid(t_star: float, dt: float) -> torch.Tensor:
    """The times torchsde's fixed-step solver visits, in its variable s = 1 - t: from 1 - t* by dt, the last
    step cut at 1 - SDE_EPS, added up in float32 exactly as torchsde does (so they can be split and replayed)."""
    start, end = torch.tensor([1 - t_star, 1 - SDE_EPS])
    grid = [start]
    while grid[-1] < end:
        grid.append(torch.minimum(grid[-1] + dt, end))
    return torch.stack(grid)


class ReplayedBrownian(torchsde.BaseBrownian):
    """A Brownian path through pre-drawn increments, in torchsde's interface (in place of its
    ``BrownianInterval``, which draws its own): ``increments[k]`` is W(grid[k+1]) - W(grid[k]).

    A query over grid steps returns their increments exactly; between grid points the path is linear, which
    only the adjoint's backward solve asks for (its steps start 1e-5 off the forward grid, where the authors'
    ``BrownianInterval`` would sample a Brownian bridge instead).
    """

    def __init__(self, grid: torch.Tensor, increments: torch.Tensor) -> None:
        self.grid, self.increments = grid, increments

    def __call__(
        self, ta: torch.Tensor, tb: torch.Tensor | None = None, return_U: bool = False, return_A: bool = False
    ) -> torch.Tensor:
        if return_U or return_A:
            raise ValueError(
                "a replayed Brownian path carries no Levy area (levy_area_approximation='none'): solve with "
                "method='euler', as DiffPure does, not a solver that needs it"
            )
        if tb is None:  # W(ta) itself, from W(grid[0]) = 0
            ta, tb = self.grid[0], ta
        lo, hi = self.grid[:-1], self.grid[1:]
        share = ((torch.minimum(hi, tb) - torch.maximum(lo, ta)) / (hi - lo)).clamp(0, 1)  # of each grid step
        steps = share.nonzero().flatten()
        return (share[steps, None, None] * self.increments[steps]).sum(0)

    def __repr__(self) -> str:
        return f"ReplayedBrownian(steps={len(self.increments)}, shape={tuple(self.shape)})"

    @property
    def dtype(self) -> torch.dtype:
        return self.increments.dtype

    @property
    def device(self) -> torch.device:
        return self.increments.device

    @property
    def shape(self) -> torch.Size:
        return self.increments.shape[1:]

    @property
    def levy_area_approximation(self) -> str:
        return "none"


class ReverseVPSDE(nn.Module):
    """The reverse-time VP SDE in torchsde's form: its time s = 1 - t runs forwards, states are flat
    (batch, C*H*W), the noise diagonal (Ito), as the authors' ``RevVPSDE`` with their guided-diffusion
    score adapter (so a discrete noise-predicting network fits)."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, unet: nn.Module, image_shape: torch.Size, n_train: int, checkpointed: bool) -> None:
        super().__init__()
        self.unet, self.image_shape, self.n_train, self.checkpointed = unet, image_shape, n_train, checkpointed

    def _eps(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, labels).sample

    def f(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Drift: -(f(x, t) - g(t)^2 score) at t = 1 - s, with the forward VP drift f = -beta(t) x / 2."""
        t = (1 - s).expand(y.shape[0])
        labels = (t * self.n_train).long()  # floor(tT), the authors' adapter: 100..1 on their grid
        x = y.view(-1, *self.image_shape)
        if self.checkpointed and torch.is_grad_enabled():
            eps = checkpoint(self._eps, x, labels, use_reentrant=False)
        else:
            eps = self._eps(x, labels)
        abar = torch.exp(-0.5 * (BETA_MAX - BETA_MIN) * t**2 - BETA_MIN * t)  # continuous abar(t)
        score = -eps.flatten(1) / (1 - abar).sqrt()[:, None]  # Song et al. Eq. 11 score of a noise predictor
        beta = (BETA_MIN + t * (BETA_MAX - BETA_MIN))[:, None]
        return 0.5 * beta * y + beta * score

    def g(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Diffusion sqrt(beta(t)) at t = 1 - s, the same for every pixel: per-step noise variance beta(t) dt."""
        return (BETA_MIN + (1 - s) * (BETA_MAX - BETA_MIN)).sqrt().expand_as(y)


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
        clip_denoised: bool | None,
        grad_checkpoint: bool,
        adjoint: bool = False,
        settings: SchedulerSettings | None = None,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise PurebenchError(f"defense.sampler must be one of {', '.join(SAMPLERS)}, got '{sampler}'.")
        n_train = len(alphas_cumprod)
        t_start = round(t_star * n_train) - 1
        if not 0 <= t_start < n_train:
            raise PurebenchError(f"defense.t_star must be in (0, 1] (a fraction of the diffusion), got {t_star}.")
        if steps is not None and steps < 1:
            raise PurebenchError(f"defense.steps must be null (every step) or >= 1, got {steps}.")
        if adjoint and sampler != "sde":
            raise PurebenchError(
                f"defense.adjoint=true solves the adjoint of the reverse SDE, but defense.sampler={sampler} is a "
                "discrete chain. Set defense.sampler=sde, or defense.adjoint=false (the exact gradient)."
            )
        self.unet, self.sampler, self.t_start = unet, sampler, t_start
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.settings = settings or SchedulerSettings()
        self.clip_denoised = self.settings.clip_sample if clip_denoised is None else clip_denoised
        self.grad_checkpoint, self.adjoint = grad_checkpoint, adjoint
        if sampler == "sde":
            self._check_linear_schedule()
            self.dt = SDE_DT if steps is None else t_star / steps
            self.register_buffer("grid", sde_time_grid(t_star, self.dt), persistent=False)
            self.n_steps = len(self.grid) - 1
        else:
            self.timesteps = reverse_timesteps(t_start, steps)
            self.eta = 1.0 if sampler == "ddpm" else float(eta)
            self.n_steps = len(self.timesteps)

    def _check_linear_schedule(self) -> None:
        """The SDE's continuous beta(t) is the limit of DDPM's linear schedule: the network must be trained on it."""
        n_train = len(self.alphas_cumprod)
        linear = torch.cumprod(1 - torch.linspace(BETA_MIN / n_train, BETA_MAX / n_train, n_train), 0)
        if not torch.allclose(self.alphas_cumprod.cpu(), linear, rtol=0, atol=1e-6):
            raise PurebenchError(
                f"defense.sampler=sde integrates the VP SDE of beta(t) = {BETA_MIN} + {BETA_MAX - BETA_MIN:g} t, the "
                f"limit of DDPM's linear betas {BETA_MIN / n_train:g} to {BETA_MAX / n_train:g}, but this model's "
                "scheduler_config.json has another schedule. Use defense.sampler=ddpm (any DDPM schedule) or a model "
                "trained on the linear schedule."
            )

    def _abar(self, t: int) -> torch.Tensor:
        return self.alphas_cumprod[t] if t >= 0 else self.alphas_cumprod.new_tensor(1.0)

    def step(self, h: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> torch.Tensor:
        """One reverse step t -> t_prev (Song et al. 2021 Eq. 12; eta = 1 is the DDPM posterior, Ho et al. Eq. 6-7).
        A ``fixed_large`` model's DDPM step keeps the posterior mean and draws its noise with variance
        beta_t instead of beta-tilde (Ho et al. Sec. 3.2's two choices); the last step adds none."""
        abar, abar_prev = self._abar(t), self._abar(t_prev)
        eps = self.unet(h, torch.full((h.shape[0],), t, device=h.device)).sample
        x0 = (h - (1 - abar).sqrt() * eps) / abar.sqrt()
        if self.clip_denoised:
            bound = self.settings.clip_sample_range
            x0 = x0.clamp(-bound, bound)
            eps = (h - abar.sqrt() * x0) / (1 - abar).sqrt()  # the noise consistent with the clipped x0
        sigma = self.eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp_min(0).sqrt()
        mean = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp_min(0).sqrt() * eps
        if self.sampler == "ddpm" and self.settings.variance_type == "fixed_large":
            sigma = (1 - abar / abar_prev).sqrt() if t_prev >= 0 else sigma
        return mean + sigma * noise

    def _draws(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The forward noise and one standard normal tensor per reverse step, drawn up front (replayable)."""
        return randn_like(x), [randn_like(x) for _ in range(self.n_steps)]

    def _chain(self, h: torch.Tensor, noises: list[torch.Tensor], keep_last: int) -> torch.Tensor:
        """The discrete reverse chain (``ddpm``/``ddim``); the last ``keep_last`` steps stay in the graph."""
        first_kept = self.n_steps - keep_last
        for k, (t, noise) in enumerate(zip(self.timesteps, noises, strict=True)):
            t_prev = self.timesteps[k + 1] if k + 1 < self.n_steps else -1
            if k < first_kept:  # not unrolled: the forward value, bridged straight-through when grad is on
                with torch.no_grad():
                    out = self.step(h, t, t_prev, noise)
                h = h + (out - h).detach() if h.requires_grad else out
            elif self.grad_checkpoint and torch.is_grad_enabled():
                h = checkpoint(self.step, h, t, t_prev, noise, use_reentrant=False)
            else:
                h = self.step(h, t, t_prev, noise)
        return h

    def _solve(self, h: torch.Tensor, noises: list[torch.Tensor], keep_last: int) -> torch.Tensor:
        """Euler-Maruyama on the reverse VP SDE (``sde``) through torchsde with the replayed increments
        sqrt(ds) z_k; the last ``keep_last`` steps stay in the graph (or go to the adjoint solver). Each
        torchsde call first evaluates the drift once to check shapes: 101 network calls for 100 steps, as theirs."""
        grid, n = self.grid, self.n_steps
        sde = ReverseVPSDE(self.unet, h.shape[1:], len(self.alphas_cumprod), self.grad_checkpoint and not self.adjoint)
        bm = ReplayedBrownian(grid, torch.stack(noises).flatten(2) * (grid[1:] - grid[:-1]).sqrt()[:, None, None])
        y, split = h.flatten(1), n - keep_last
        if split:  # not unrolled: the forward value, bridged straight-through when grad is on
            with torch.no_grad():
                out = torchsde.sdeint(sde, y, grid[[0, split]], bm=bm, method="euler", dt=self.dt)[-1]
            y = y + (out - y).detach() if y.requires_grad else out
        if keep_last:
            ts = grid[[split, n]]
            if self.adjoint:  # the authors' gradient; its backward solve is torchsde's default (Milstein), as theirs
                y = torchsde.sdeint_adjoint(sde, y, ts, bm=bm, method="euler", dt=self.dt, adjoint_params=())[-1]
            else:
                y = torchsde.sdeint(sde, y, ts, bm=bm, method="euler", dt=self.dt)[-1]
        return y.view_as(h)

    def _run(self, x: torch.Tensor, keep_last: int) -> torch.Tensor:
        """The purification; the last ``keep_last`` reverse steps stay in the autograd graph."""
        forward_noise, noises = self._draws(x)
        abar = self._abar(self.t_start)
        h = abar.sqrt() * (2 * x - 1) + (1 - abar).sqrt() * forward_noise  # Eq. 2
        h = (self._solve if self.sampler == "sde" else self._chain)(h, noises, keep_last)
        return ((h + 1) / 2).clamp(0, 1)  # purebench's output range; the authors classify (h + 1) / 2 unclamped

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._run(x, keep_last=0)

    def adaptive_purify(self, x: torch.Tensor, backprop_steps: int | None = None) -> torch.Tensor:
        keep = self.n_steps if backprop_steps is None else min(backprop_steps, self.n_steps)
        return self._run(x, keep_last=keep)


@DEFENSES.register("diffpure")
def diffpure(name: str, classifier: Classifier, model: str, **params: Any) -> Defense:
    """DiffPure with a diffusers score network (local folder or hub id)."""
    network, alphas_cumprod = load_diffusion(str(model))
    kept = {k: v for k, v in params.items() if k != "unet"}
    return DiffPure(network.requires_grad_(False), alphas_cumprod, **kept, settings=network.settings)
