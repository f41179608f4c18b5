"""Baseline defenses: no defense, Gaussian blur, median blur and Gaussian noise.

Blurs are the classic weak purifiers: they survive an oblivious attacker but fall to one that
differentiates through them, which makes them the reference point for the threat-model ladder.
Gaussian noise is the simplest randomized purifier: the reference point for EOT and for the
repeated-evaluation protocol.
"""

from __future__ import annotations

import torch

from purebench.defenses.base import DEFENSES, Defense
from purebench.defenses.blur_ops import gaussian_blur, median_blur
from purebench.seeding import randn_like


class NoDefense(Defense):
    """Identity: gives the undefended classifier's numbers through the same pipeline."""

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x


class GaussianBlur(Defense):
    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.sigma)


class MedianBlur(Defense):
    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return median_blur(x, self.kernel_size)


class GaussianNoise(Defense):
    """x + N(0, sigma^2), clipped to [0, 1]; a fresh draw on every call."""

    randomized = True

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.sigma * randn_like(x)).clamp(0, 1)


@DEFENSES.register("none")
def none(name: str, classifier: torch.nn.Module) -> Defense:
    return NoDefense()


@DEFENSES.register("gaussian_blur")
def gaussian(name: str, classifier: torch.nn.Module, sigma: float = 1.0) -> Defense:
    return GaussianBlur(sigma)


@DEFENSES.register("median_blur")
def median(name: str, classifier: torch.nn.Module, kernel_size: int = 3) -> Defense:
    return MedianBlur(kernel_size)


@DEFENSES.register("gaussian_noise")
def gaussian_noise(name: str, classifier: torch.nn.Module, sigma: float = 0.03) -> Defense:
    return GaussianNoise(sigma)
