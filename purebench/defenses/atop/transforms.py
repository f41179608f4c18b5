"""AToP's random transforms RT1-RT3 (Lin et al., Sec. 3.1, Eq. 2-4) at the authors' working size.

The authors' code resizes CIFAR images to 256 px (``transforms.Resize(256)``) and does
everything there: Gaussian noise of sigma 0.25 in [0, 1] units per 256-px pixel, clipped, and an
8 x 8 grid of 32-px blocks at missing rate 0.25. ``work_size`` reproduces that: the image is
resized (bilinear) to ``work_size`` and the noise and masks are drawn there. The purifier runs at
``purifier_size`` (default: the work size); a smaller one receives the transformed image
area-downsampled (a CPU approximation: at 32 px it averages 8 x 8 work pixels, so the noise per
CIFAR pixel is the code's, about sigma / 8, not 8x stronger as noise added at 32 px would be).

A mask hides whole patches; m = 1 keeps a pixel, m = 0 marks a patch the purifier must generate.
Exactly round(r * grid^2) patches are missing in every image, drawn per image from its own
seeded generator (the authors' notebooks draw one mask per batch; per image keeps every image's
purification independent of the batch it is in). All draws go through purebench.seeding, so a
transform is reproducible per example and fresh on every call outside a seeded context.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from purebench.errors import PurebenchError
from purebench.seeding import rand_like, randn_like

TRANSFORMS = ("rt1", "rt2", "rt3")


class TransformDraws(NamedTuple):
    """One draw of a transform: ``group_of_patch[b, k]`` = the mask that hides patch k of image b (-1: none),
    ``noise`` = standard normal at the work size (None for RT1)."""

    group_of_patch: torch.Tensor
    noise: torch.Tensor | None


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize: bilinear up (as torchvision's Resize), area down (exact block means); identity at equal size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if size > x.shape[-1]:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return F.interpolate(x, size=(size, size), mode="area")


def _patch_order(x: torch.Tensor, grid: int) -> torch.Tensor:
    """A random permutation of the grid x grid patches for every image: (B, grid*grid)."""
    noise = rand_like(torch.empty(x.shape[0], grid * grid, device=x.device, dtype=x.dtype))
    return noise.argsort(dim=1)


def _masks_from_groups(x: torch.Tensor, grid: int, group_of_patch: torch.Tensor, group: int) -> torch.Tensor:
    """Pixel mask (B, 1, H, W): 0 on the patches assigned to ``group``, 1 elsewhere."""
    h, w = x.shape[-2:]
    keep = (group_of_patch != group).to(x.dtype).view(-1, 1, grid, grid)
    return keep.repeat_interleave(h // grid, dim=2).repeat_interleave(w // grid, dim=3)


class RandomTransform:
    """RT1 (Eq. 2), RT2 (Eq. 3) or RT3 (Eq. 4) with the paper's sigma, p = P/grid, r, N, at ``work_size``."""

    def __init__(
        self, kind: str, sigma: float, grid: int, missing_rate: float, n_masks: int,
        work_size: int, purifier_size: int | None = None,
    ) -> None:  # fmt: skip
        if kind not in TRANSFORMS:
            raise PurebenchError(f"defense.transform must be one of {', '.join(TRANSFORMS)}, got '{kind}'.")
        if not 0 < missing_rate < 1:
            raise PurebenchError(f"defense.missing_rate must be in (0, 1), got {missing_rate}.")
        if kind == "rt3" and (abs(n_masks * missing_rate - 1) > 1e-9 or grid**2 % n_masks):
            raise PurebenchError(
                f"RT3 needs N equal non-overlapping masks that cover the image: n_masks * missing_rate must be 1 "
                f"and n_masks must divide the {grid * grid} patches, got {n_masks} * {missing_rate}."
            )
        purifier_size = purifier_size or work_size
        for key, size in (("work_size", work_size), ("purifier_size", purifier_size)):
            if size % grid:
                raise PurebenchError(f"defense.{key}={size} does not split into a {grid}x{grid} grid of patches.")
        if purifier_size > work_size:
            raise PurebenchError(f"defense.purifier_size={purifier_size} exceeds defense.work_size={work_size}.")
        self.kind, self.sigma, self.grid, self.missing_rate, self.n_masks = kind, sigma, grid, missing_rate, n_masks
        self.work_size, self.purifier_size = work_size, purifier_size

    def draw(self, x: torch.Tensor) -> TransformDraws:
        """The random part of the transform for a batch shaped like ``x``: which patches each mask hides and
        the Gaussian noise at the work size (per example inside a seeded context)."""
        if x.shape[-1] != x.shape[-2]:
            raise PurebenchError(f"AToP's transforms need square images, got {tuple(x.shape[-2:])}.")
        rank = _patch_order(x, self.grid).argsort(dim=1)  # rank[b, k]: position of patch k in a random order
        if self.kind == "rt3":
            group_of_patch = rank * self.n_masks // self.grid**2  # N disjoint equal groups covering every patch
        else:
            group_of_patch = torch.where(rank < round(self.missing_rate * self.grid**2), 0, -1)
        shape = (x.shape[0], x.shape[1], self.work_size, self.work_size)
        noise = None if self.kind == "rt1" else randn_like(torch.empty(shape, device=x.device, dtype=x.dtype))
        return TransformDraws(group_of_patch, noise)

    def apply(self, x: torch.Tensor, draws: TransformDraws) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The purifier inputs (x_t, m) at ``purifier_size`` for given draws: one view for RT1/RT2, N views for
        RT3 (Eq. 4). The same draws applied to x and x' give the two passes of the logged notebook."""
        work = resize(x, self.work_size)
        # eta ~ N(0, sigma^2) per work-size pixel, one draw shared by the RT3 views (Eq. 3-4), clipped to
        # the image range as the authors' code does (`torch.clip(batch_real + gau_noise, 0, 1)`)
        noisy = work if draws.noise is None else (work + self.sigma * draws.noise).clamp(0, 1)
        noisy = resize(noisy, self.purifier_size)
        groups = range(self.n_masks) if self.kind == "rt3" else range(1)
        masks = [_masks_from_groups(noisy, self.grid, draws.group_of_patch, g) for g in groups]
        return [(m * noisy, m) for m in masks]

    def views(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fresh draws applied to ``x``: what purification does."""
        return self.apply(x, self.draw(x))

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The clean image at the purifier's size: what reconstruction is measured against."""
        return resize(resize(x, self.work_size), self.purifier_size)

    @staticmethod
    def combine(views: list[tuple[torch.Tensor, torch.Tensor]], generated: list[torch.Tensor]) -> torch.Tensor:
        """x_hat: g(x_t) for one view (Eq. 2-3); sum_i (1 - m_i) * g(x_t^i) for RT3 (Eq. 4)."""
        if len(views) == 1:
            return generated[0]
        return sum((1 - m) * g for (_, m), g in zip(views, generated, strict=True))
