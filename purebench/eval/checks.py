"""Sanity checks on what an attack is about to face (in the spirit of AutoAttack's flags).

A number is only as good as the gradient the attack followed. These checks run on a few images
of the first batch and turn silent failure modes into recorded warnings: a defense that is
random without declaring it (EOT and repeated evaluation would be skipped), and gradients that
are exactly zero (the attack is blind, its RA is an upper bound at best).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purebench.defenses import Defense
from purebench.errors import PurebenchError

N_CHECK = 4  # images used by the checks: enough to see randomness, cheap for slow purifiers
RANDOMNESS_TOLERANCE = 1e-6  # max |difference| of two purifications below which they count as equal


RANGE_TOLERANCE = 1e-6  # float rounding allowed outside [0, 1] in a purified image


def checked_purify(defense: Defense, x: torch.Tensor, name: str) -> torch.Tensor:
    """``defense.purify(x)``, refusing a purifier that breaks its contract, because each breach
    would silently corrupt SA and RA: writing into ``x`` (the runner reuses it for the attack and
    for the input's predictions), a different shape, NaN/inf, or values outside [0, 1] (the
    classifier's input domain; clamping them here would hide a broken purifier behind a number)."""
    version = None if x.is_inference() else x._version  # inference tensors keep no version counter
    purified = defense.purify(x)
    if version is not None and x._version != version:
        raise PurebenchError(
            f"defense '{name}' ({type(defense).__name__}.purify) modified its input in place; return a new tensor "
            "(e.g. x.clamp(0, 1) instead of x.clamp_(0, 1))."
        )
    if purified.shape != x.shape:
        raise PurebenchError(
            f"defense '{name}' returned shape {tuple(purified.shape)} for images of shape {tuple(x.shape)}; "
            "purify must return images of the input's shape."
        )
    finite = torch.isfinite(purified)
    if not finite.all():
        raise PurebenchError(
            f"defense '{name}' returned {int((~finite).sum())} NaN or infinite values (of {purified.numel()}); "
            "its output cannot be classified. Check its checkpoint and settings (a diverged or wrongly loaded "
            "purifier is the usual cause)."
        )
    outside = (purified < -RANGE_TOLERANCE) | (purified > 1 + RANGE_TOLERANCE)
    if outside.any():
        raise PurebenchError(
            f"defense '{name}' returned {int(outside.sum())} values outside [0, 1] (min {purified.min():.4g}, max "
            f"{purified.max():.4g}); purify must return images in [0, 1]. Clamp its output (x.clamp(0, 1)) if "
            "that is what the method does, or check that its checkpoint was trained on [0, 1] images."
        )
    return purified


@torch.no_grad()
def purification_is_random(defense: Defense, x: torch.Tensor, name: str) -> bool:
    """Purify the same images twice (global RNG, no per-example seeding): do the outputs differ?"""
    sample = x[:N_CHECK]
    first, second = checked_purify(defense, sample, name), checked_purify(defense, sample, name)
    return bool((first - second).abs().max() > RANDOMNESS_TOLERANCE)


def zero_gradient_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """How many of the first images get an all-zero input gradient of the cross-entropy."""
    sample = x[:N_CHECK].clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(sample), y[:N_CHECK], reduction="sum")
        (grad,) = torch.autograd.grad(loss, sample, allow_unused=True)
    if grad is None:
        return sample.shape[0]
    return int((grad.flatten(1).abs().amax(1) == 0).sum())
