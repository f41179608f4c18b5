"""Classical image operators: Gaussian, median, total-variation minimisation, hole filling (differentiable),
and PIL's Gaussian blur on 8-bit images (ZeroPur's code; no gradient).

They are the baseline defenses, the ``blur(.)`` of ZeroPur's Guided Shift (Alg. 1 line 3; levels
of Table 6: median 3x3/5x5/7x7, Gaussian sigma 0.6/1.2/1.8; TVM of Fig. 5d) and the fill of the
non-learned floors. The Gaussian and median filters are kornia's (reflect padding; a test checks
they equal the hand-written versions purebench used before, values and gradients). All work per
image and per channel, so a batch never mixes images.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import kornia.filters
import numpy as np
import torch
from PIL import Image, ImageFilter

from purebench.errors import PurebenchError


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; the kernel covers +-3 sigma."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    k = 2 * math.ceil(3 * sigma) + 1
    if k > min(x.shape[-2:]):  # reflect padding needs the kernel radius inside the image
        k = min(x.shape[-2:]) - (1 - min(x.shape[-2:]) % 2)
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def median_blur(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """k x k median filter with reflect padding (gradient flows to the selected median pixel)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"median kernel size must be odd and positive, got {kernel_size}")
    return kornia.filters.median_blur(x, (kernel_size, kernel_size), border_type="reflect")


def normalized_fill(x: torch.Tensor, keep: torch.Tensor, sigma: float) -> torch.Tensor:
    """Fill the pixels where ``keep`` is 0 from the kept ones by normalised convolution (Knutsson & Westin
    1993): G * (keep x) / G * keep, with the Gaussian widened (x2 per round) until every hole has support.
    Kept pixels are returned unchanged."""
    filled, support = x * keep, keep
    scale = sigma
    while True:
        numerator, weight = gaussian_blur(x * keep, scale), gaussian_blur(keep, scale)
        covered = weight > 1e-3
        filled = torch.where((support == 0) & covered, numerator / weight.clamp_min(1e-3), filled)
        support = torch.maximum(support, covered.to(x.dtype))
        if bool((support > 0).all()) or scale >= max(x.shape[-2:]):
            return keep * x + (1 - keep) * filled
        scale *= 2


def fill_each_from_others(x: torch.Tensor, region: torch.Tensor, regions: int, sigma: float) -> torch.Tensor:
    """Every pixel rebuilt from the pixels of the *other* regions only: region ``i`` (``region == i``,
    a (B or 1, 1, H, W) map of region ids in 0..regions-1) filled by :func:`normalized_fill` with the
    pixels of regions != i. IMPure's regional intersection without an autoencoder (the impure_floor
    defense and the CPU-scale base of the RIAE)."""
    out = torch.zeros_like(x)
    for i in range(regions):
        hidden = (region == i).to(x.dtype).expand(x.shape[0], 1, *x.shape[-2:])
        out = out + hidden * normalized_fill(x, 1 - hidden, sigma)
    return out


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


def pil_gaussian_blur(x: torch.Tensor, radius: float) -> torch.Tensor:
    """PIL ``GaussianBlur(radius)`` of the image truncated to 8 bits: ZeroPur's code blurs this way
    (torchvision ``ToPILImage`` truncates x * 255 to uint8, ``ToTensor`` divides by 255). PIL works on
    integers, so the result carries no gradient (ZeroPur detaches its blurred branch anyway)."""
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    pixels = (x.detach() * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # ToPILImage's truncation
    squeeze = pixels.shape[-1] == 1
    images = [Image.fromarray(p[..., 0] if squeeze else p) for p in pixels]
    blurred = np.stack([np.asarray(im.filter(ImageFilter.GaussianBlur(radius))) for im in images])
    out = torch.from_numpy(blurred.reshape(pixels.shape)).permute(0, 3, 1, 2)
    return (out.float() / 255).to(device=x.device, dtype=x.dtype)  # ToTensor


# Operators of make_blur that have no gradient.
NON_DIFFERENTIABLE_BLURS = ("pil_gaussian",)


def make_blur(
    operator: str, level: float, tv_weight: float = 0.03, tv_steps: int = 30
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``blur(.)`` by name: ``gaussian`` (level = sigma), ``median`` (level = kernel size), ``tvm`` or
    ``pil_gaussian`` (level = PIL radius; no gradient)."""
    if operator == "gaussian":
        return lambda x: gaussian_blur(x, float(level))
    if operator == "median":
        return lambda x: median_blur(x, int(level))
    if operator == "tvm":
        return lambda x: tv_minimise(x, tv_weight, tv_steps)
    if operator == "pil_gaussian":
        return lambda x: pil_gaussian_blur(x, float(level))
    raise PurebenchError(f"Unknown blur operator '{operator}'. Available: gaussian, median, tvm, pil_gaussian.")
