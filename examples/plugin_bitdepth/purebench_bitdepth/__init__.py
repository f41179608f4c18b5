"""Bit-depth reduction (Xu, Evans and Qi, "Feature Squeezing", NDSS 2018) as a purebench plugin.

Each pixel is quantised to ``bits`` bits: x -> round(x * (2^bits - 1)) / (2^bits - 1). The
operation is deterministic and its gradient is zero almost everywhere, so it is declared
non-differentiable: an attacker who differentiates it exactly is blind (purebench records the
zero-gradient warning), while BPDA's identity surrogate breaks it.
"""

from __future__ import annotations

import torch

from purebench.defenses import DEFENSES, Defense


class BitDepthReduction(Defense):
    randomized = False
    differentiable = False  # round() has zero gradient almost everywhere
    trainable = False

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.levels = 2**bits - 1

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels


@DEFENSES.register("bit_depth")
def bit_depth(name: str, classifier: torch.nn.Module, bits: int = 5) -> Defense:
    return BitDepthReduction(bits)
