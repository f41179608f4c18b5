"""Non-learned floors: each purifier's corruption followed by a classical fill, no learning.

A learned purifier is only worth its training if it beats what its corruption alone gives. These
defenses apply exactly the corruption of a learned one and restore with classical operators
(purebench.defenses.blur_ops), so every leaderboard can show what the learning adds:

- ``atop_floor``: AToP's random transform RT1-RT3 (the same RandomTransform, at the same work
  size), the hidden patches filled from the visible pixels by normalised convolution, the noise
  smoothed by a Gaussian blur, the result area-resized to the input (RT3 combines its views by Eq. 4).
- ``impure_floor``: IMPure's uniform division of the patches into S lattice subsets; each subset
  is rebuilt from the other S - 1 by the same interpolation, nothing of its own pixels kept
  (the RIAE's regional intersection without an autoencoder). Deterministic.
"""

from __future__ import annotations

import torch

from purebench.defenses.atop.transforms import RandomTransform, resize
from purebench.defenses.base import DEFENSES, Defense
from purebench.defenses.blur_ops import fill_each_from_others, gaussian_blur, normalized_fill
from purebench.errors import PurebenchError


class TransformFillFloor(Defense):
    randomized = True  # the transform's masks and noise are drawn on every call

    def __init__(self, transform: RandomTransform, fill_sigma: float, denoise_sigma: float) -> None:
        super().__init__()
        self.transform, self.fill_sigma, self.denoise_sigma = transform, fill_sigma, denoise_sigma

    def _restore(self, x_t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        if self.denoise_sigma > 0:  # smooth within the kept pixels (normalised), the hidden zeros never leak in
            x_t = gaussian_blur(x_t, self.denoise_sigma) / gaussian_blur(m, self.denoise_sigma).clamp_min(1e-3) * m
        return normalized_fill(x_t, m, self.fill_sigma)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        views = self.transform.views(x)
        restored = [self._restore(x_t, m) for x_t, m in views]
        return resize(self.transform.combine(views, restored), x.shape[-1]).clamp(0, 1)


class LatticeInterpolationFloor(Defense):
    """Every pixel predicted from the other lattice subsets only: S = k^2 subsets of p x p patches."""

    def __init__(self, patch_size: int, subsets: int, fill_sigma: float) -> None:
        super().__init__()
        k = round(subsets**0.5)
        if k * k != subsets:
            raise PurebenchError(f"defense.subsets must be a square number (uniform lattice), got {subsets}.")
        self.patch_size, self.k, self.fill_sigma = patch_size, k, fill_sigma

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % (self.patch_size * self.k) or w % (self.patch_size * self.k):
            raise PurebenchError(
                f"images of {h}x{w} do not split into a lattice of {self.k}x{self.k} groups of {self.patch_size}-px patches."
            )
        rows = torch.arange(h, device=x.device) // self.patch_size % self.k
        cols = torch.arange(w, device=x.device) // self.patch_size % self.k
        subset = rows[:, None] * self.k + cols[None, :]  # subset of every pixel (H, W)
        return fill_each_from_others(x, subset, self.k * self.k, self.fill_sigma).clamp(0, 1)


@DEFENSES.register("atop_floor")
def atop_floor(
    name: str, classifier: torch.nn.Module, transform: str, sigma: float, grid: int, missing_rate: float,
    n_masks: int, work_size: int, purifier_size: int | None, fill_sigma: float, denoise_sigma: float,
) -> Defense:  # fmt: skip
    """AToP's corruption + classical fill; see conf/defense/atop_floor.yaml."""
    random_transform = RandomTransform(transform, sigma, grid, missing_rate, n_masks, work_size, purifier_size)
    return TransformFillFloor(random_transform, fill_sigma, denoise_sigma)


@DEFENSES.register("impure_floor")
def impure_floor(name: str, classifier: torch.nn.Module, patch_size: int, subsets: int, fill_sigma: float) -> Defense:
    """IMPure's regional division + interpolation; see conf/defense/impure_floor.yaml."""
    return LatticeInterpolationFloor(patch_size, subsets, fill_sigma)
