"""A small U-Net purifier for AToP at CPU scale (not in the AToP paper; see conf/defense/atop.yaml).

The paper shows the AToP method with a GAN (DeepFill v2) and an autoencoder (MAE) purifier. At
32 px and from scratch, DeepFill's hourglass (no skip connections, an 8 x 8 bottleneck) learns
too slowly on a CPU to purify at all; a U-Net with skip connections learns the same restoration
in minutes. It takes AToP's purifier input (the transformed image x_t and its mask m), predicts
a residual and returns x_t + delta in [0, 1]: levels of two 3x3 convolutions with GroupNorm and
SiLU, strided-convolution downsampling, nearest upsampling, skip connections by concatenation.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from purebench.defenses.vit import to_image


def _conv_block(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(groups, cout), cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(groups, cout), cout), nn.SiLU(),
    )  # fmt: skip


class UNetPurifier(nn.Module):
    """g(x_t, m) = clamp(x_t + delta(x_t, m)); ``widths`` are the channels per level (coarsest last)."""

    adversarial = False  # trained on the reconstruction loss alone, no discriminator

    def __init__(self, widths: list[int], groups: int) -> None:
        super().__init__()
        self.stem = _conv_block(4, widths[0], groups)  # input: RGB x_t and the mask m
        self.down = nn.ModuleList(nn.Conv2d(a, a, 3, stride=2, padding=1) for a in widths[:-1])
        self.encoders = nn.ModuleList(_conv_block(a, b, groups) for a, b in pairwise(widths))
        self.decoders = nn.ModuleList(_conv_block(b + a, a, groups) for a, b in pairwise(widths))
        self.head = nn.Conv2d(widths[0], 3, 1)

    def forward(self, x_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        levels = [self.stem(torch.cat([x_t, mask[:, :1]], 1))]
        for down, encoder in zip(self.down, self.encoders, strict=True):
            levels.append(encoder(down(levels[-1])))
        h = levels.pop()
        for decoder in reversed(self.decoders):
            skip = levels.pop()
            h = decoder(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return to_image(x_t + self.head(h), self.training)

    @staticmethod
    def reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean L1 in [-1, 1] units, the scale of the authors' code (its lambda_cls is relative to it)."""
        return 2 * (prediction - target).abs().mean()
