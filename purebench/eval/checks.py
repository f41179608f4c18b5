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


def purify_unmodified(defense: Defense, x: torch.Tensor) -> torch.Tensor:
    """``defense.purify(x)``, refusing a purifier that writes into ``x``: the runner reuses ``x``
    (the attack's input, the predictions of a purifier that returns ``x`` itself), so an in-place
    edit would silently corrupt SA and RA."""
    if x.is_inference():  # inference tensors keep no version counter to compare
        return defense.purify(x)
    version = x._version
    purified = defense.purify(x)
    if x._version != version:
        raise PurebenchError(
            f"{type(defense).__name__}.purify modified its input in place; return a new tensor "
            "(e.g. x.clamp(0, 1) instead of x.clamp_(0, 1))."
        )
    return purified


@torch.no_grad()
def purification_is_random(defense: Defense, x: torch.Tensor) -> bool:
    """Purify the same images twice (global RNG, no per-example seeding): do the outputs differ?"""
    sample = x[:N_CHECK]
    first, second = purify_unmodified(defense, sample), purify_unmodified(defense, sample)
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
