"""Attack interface and the budget check applied to every attack's output.

An attack sees only a differentiable function from images in [0, 1] to logits (the threat
model builds that function, EOT included). Its output is checked:
same shape, inside [0, 1] and within eps in the declared norm. A violation is an error, because
a number computed from an over-budget example is not a robust accuracy.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from purebench.errors import PurebenchError
from purebench.registry import Registry

NORMS = ("Linf", "L2")
_TOLERANCE = 1e-5  # float32 rounding of x + delta


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``delta``."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def project(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x`` intersected with [0, 1]."""
    delta = x_adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        scale = (eps / perturbation_norm(delta, norm).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * scale.view(-1, *[1] * (delta.dim() - 1))
    return (x + delta).clamp(0, 1)


class Attack(ABC):
    """An attack with a norm-ball budget; subclasses implement :meth:`perturb`."""

    def __init__(self, name: str, norm: str, eps: float, seed: int, verbose: bool) -> None:
        if norm not in NORMS:
            raise PurebenchError(f"attack.norm must be one of {', '.join(NORMS)}, got '{norm}'.")
        if not 0 < eps <= 1:
            raise PurebenchError(
                f"attack.eps={eps} is outside (0, 1]: eps is in [0,1] pixel units, e.g. 0.03137 for 8/255 (Linf) or 0.5 (L2)."
            )
        self.name, self.norm, self.eps, self.seed, self.verbose = name, norm, float(eps), seed, verbose
        self.log = logging.getLogger(f"purebench.attack.{name}")

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for ``model`` (a function of [0,1] images to logits)."""

    def describe(self) -> dict[str, Any]:
        """The effective attack parameters recorded in the result row."""
        return {"attack_norm": self.norm, "attack_eps": self.eps}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = self.perturb(model, x, y).detach()
        check_budget(x_adv, x, self.norm, self.eps, self.name)
        return x_adv


def check_budget(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float, who: str) -> None:
    """Raise if ``x_adv`` is not a valid adversarial example for the eps-ball around ``x``.

    The breach is the attack's fault, not the user's config, but it is reported as a
    :class:`PurebenchError` all the same: one paragraph saying that nothing was recorded and what to
    look at, instead of a traceback that hides that the leaderboard is untouched."""
    if x_adv.shape != x.shape:
        problem = f"returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(x.shape)}"
    elif not torch.isfinite(x_adv).all() or x_adv.min() < -_TOLERANCE or x_adv.max() > 1 + _TOLERANCE:
        problem = f"returned values outside [0, 1] (min {x_adv.min():.4g}, max {x_adv.max():.4g})"
    elif (worst := perturbation_norm(x_adv - x, norm).max().item()) > eps + _TOLERANCE:
        problem = f"exceeded its budget: {norm} perturbation {worst:.6f} > eps {eps:.6f}"
    else:
        return
    raise PurebenchError(
        f"attack '{who}' {problem}. A number computed from such examples is not a robust accuracy, so nothing was "
        "recorded for this run (finished batches are kept and resume). The attack's implementation or its "
        "settings are at fault: check its step size and projection, or report it with the command you ran."
    )


ATTACKS: Registry[Attack] = Registry("attack")
