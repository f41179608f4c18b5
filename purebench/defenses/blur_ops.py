"""Differentiable blurring operators: Gaussian, median and total-variation minimisation.

They are the baseline defenses and the ``blur(.)`` of ZeroPur's Guided Shift (Alg. 1 line 3;
levels of Table 6: median 3x3/5x5/7x7, Gaussian sigma 0.6/1.2/1.8; TVM of Fig. 5d). All work
per image and per channel, so a batch never mixes images.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from purebench.errors import PurebenchError


def gaussian_blur(x: torch.Tensor, sigma: float, kernel_size: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; kernel covers +-3 sigma by default."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    k = kernel_size or 2 * math.ceil(3 * sigma) + 1
    coords = torch.arange(k, dtype=x.dtype, device=x.device) - (k - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    pad = k // 2
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(out, kernel.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def median_blur(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """k x k median filter with reflect padding (gradient flows to the selected median pixel)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"median kernel size must be odd and positive, got {kernel_size}")
    pad = kernel_size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    patches = padded.unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)
    return patches.reshape(*patches.shape[:4], -1).median(dim=-1).values


def tv_minimise(x: torch.Tensor, weight: float = 0.03, steps: int = 30, lr: float = 0.01) -> torch.Tensor:
    """Total-variation minimisation (Guo et al. 2018; ZeroPur Fig. 5d).

    Minimises ||z - x||^2 / 2 + weight * TV(z) by gradient descent on z, started at x. The
    steps are differentiable with respect to x, so the operator can sit inside a gradient-based
    purifier; the loss is summed per image so images never interact.
    """
    with torch.enable_grad():
        z = x.clone()
        if not z.requires_grad:
            z.requires_grad_(True)
        for _ in range(steps):
            tv = (z[..., 1:, :] - z[..., :-1, :]).abs().sum() + (z[..., :, 1:] - z[..., :, :-1]).abs().sum()
            loss = 0.5 * ((z - x) ** 2).sum() + weight * tv
            (grad,) = torch.autograd.grad(loss, z, create_graph=x.requires_grad)
            z = z - lr * grad
    if not x.requires_grad:
        z = z.detach()
    return z.clamp(0, 1)


def make_blur(
    operator: str, level: float, tv_weight: float = 0.03, tv_steps: int = 30
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``blur(.)`` by name: ``gaussian`` (level = sigma), ``median`` (level = kernel size) or ``tvm``."""
    if operator == "gaussian":
        return lambda x: gaussian_blur(x, float(level))
    if operator == "median":
        return lambda x: median_blur(x, int(level))
    if operator == "tvm":
        return lambda x: tv_minimise(x, tv_weight, tv_steps)
    raise PurebenchError(f"Unknown blur operator '{operator}'. Available: gaussian, median, tvm.")
