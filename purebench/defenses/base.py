"""The ``Defense`` interface that the runner and every threat model read.

A defense is a module with ``purify(x) -> x`` on batches in [0, 1] and four declared
properties. Threat models decide how to attack from these properties alone (never from the
defense's name): ``randomized`` switches on EOT and repeated evaluation, ``differentiable``
says whether gradients through ``purify`` are meaningful, ``shattered_gradient`` that the exact
gradient exists but ignores how the purification responds to its input (a sign or rounding step:
Athalye et al. 2018's shattered gradients), so the leaderboard marks what the gradient rungs leave
as an upper bound, and ``bpda_approximation`` is the
surrogate that BPDA differentiates instead of ``purify`` (identity unless a defense knows better).
``adaptive_purify`` is what a fully adaptive attacker differentiates: the real purifier, with any
inner optimisation unrolled into the graph.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from purebench.registry import Registry


class Defense(nn.Module, ABC):
    """Base class: override :meth:`purify` and set the class attributes that describe it."""

    randomized: bool = False
    differentiable: bool = True
    shattered_gradient: bool = False
    trainable: bool = False

    @abstractmethod
    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """Purified images, same shape as ``x``, in [0, 1]; ``x`` itself is never modified (the
        runner reuses it, and refuses a purifier that writes into it)."""

    def bpda_approximation(self, x: torch.Tensor) -> torch.Tensor:
        """A differentiable stand-in for ``purify`` used by BPDA's backward pass (Athalye et al. 2018)."""
        return x

    def adaptive_purify(self, x: torch.Tensor, backprop_steps: int | None = None) -> torch.Tensor:
        """``purify`` keeping the autograd graph back to ``x``.

        Defenses built from ordinary differentiable operations need nothing more. A defense that
        runs an inner optimisation overrides this to unroll its steps (``create_graph``), or to carry its
        exact Jacobian through the forward pass where it is known (ZeroPur's sign steps); with
        ``backprop_steps=k`` only the last k steps are unrolled and earlier ones are bridged by a
        straight-through estimator, trading gradient fidelity for memory (0 = nothing unrolled).
        """
        return self.purify(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.purify(x)

    def describe(self) -> dict[str, bool]:
        """The declared properties, recorded in every result row."""
        return {
            "randomized": self.randomized,
            "differentiable": self.differentiable,
            "shattered_gradient": self.shattered_gradient,
            "trainable": self.trainable,
        }


DEFENSES: Registry[Defense] = Registry("defense")
