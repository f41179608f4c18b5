"""AToP's random transforms RT1-RT3 (Lin et al., Sec. 3.1, Eq. 2-4).

A mask hides p x p patches of the image (p = P / grid, grid 8 in the paper, so an 8 x 8 grid of
patches) at missing rate r; m = 1 keeps a pixel, m = 0 marks a patch the purifier must generate.
Exactly round(r * grid^2) patches are missing in every image, drawn per image from its own
seeded generator (the authors' notebooks draw one mask per batch; per image keeps every image's
purification independent of the batch it is in). All draws go through purebench.seeding, so a
transform is reproducible per example and fresh on every call outside a seeded context.
"""

from __future__ import annotations

import torch

from purebench.errors import PurebenchError
from purebench.seeding import rand_like, randn_like

TRANSFORMS = ("rt1", "rt2", "rt3")


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
    """RT1 (Eq. 2), RT2 (Eq. 3) or RT3 (Eq. 4) with the paper's parameters sigma, p = P/grid, r, N."""

    def __init__(self, kind: str, sigma: float, grid: int, missing_rate: float, n_masks: int) -> None:
        if kind not in TRANSFORMS:
            raise PurebenchError(f"defense.transform must be one of {', '.join(TRANSFORMS)}, got '{kind}'.")
        if not 0 < missing_rate < 1:
            raise PurebenchError(f"defense.missing_rate must be in (0, 1), got {missing_rate}.")
        if kind == "rt3" and (abs(n_masks * missing_rate - 1) > 1e-9 or grid**2 % n_masks):
            raise PurebenchError(
                f"RT3 needs N equal non-overlapping masks that cover the image: n_masks * missing_rate must be 1 "
                f"and n_masks must divide the {grid * grid} patches, got {n_masks} * {missing_rate}."
            )
        self.kind, self.sigma, self.grid, self.missing_rate, self.n_masks = kind, sigma, grid, missing_rate, n_masks

    def check_size(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if h % self.grid or w % self.grid:
            raise PurebenchError(f"images of {h}x{w} do not split into a {self.grid}x{self.grid} grid of patches.")

    def views(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The purifier inputs (x_t, m): one view for RT1/RT2, N views for RT3 (Eq. 4)."""
        self.check_size(x)
        order = _patch_order(x, self.grid)
        n_missing = round(self.missing_rate * self.grid**2)
        # group_of_patch[b, k] = which mask hides patch k of image b (-1: none of them)
        rank = order.argsort(dim=1)
        if self.kind == "rt3":
            group_of_patch = rank * self.n_masks // self.grid**2  # N disjoint equal groups covering every patch
            groups = range(self.n_masks)
        else:
            group_of_patch = torch.where(rank < n_missing, 0, -1)
            groups = range(1)
        # eta ~ N(0, sigma^2), one draw shared by the RT3 views (Eq. 3-4); clipped to the image range,
        # which the paper leaves open, so every purifier input is a valid image.
        noisy = x if self.kind == "rt1" else (x + self.sigma * randn_like(x)).clamp(0, 1)
        masks = [_masks_from_groups(x, self.grid, group_of_patch, g) for g in groups]
        return [(m * noisy, m) for m in masks]

    @staticmethod
    def combine(views: list[tuple[torch.Tensor, torch.Tensor]], generated: list[torch.Tensor]) -> torch.Tensor:
        """x_hat: g(x_t) for one view (Eq. 2-3); sum_i (1 - m_i) * g(x_t^i) for RT3 (Eq. 4)."""
        if len(views) == 1:
            return generated[0]
        return sum((1 - m) * g for (_, m), g in zip(views, generated, strict=True))
