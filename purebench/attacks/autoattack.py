"""AutoAttack (Croce & Hein 2020) through the ``pyautoattack`` package.

pyautoattack differs from upstream: keyword-only arguments, ``run_standard_evaluation`` returns
``(x_adv, y_adv)``, and ``seed=None`` means a time-based seed, so a seed is always passed here.
The ``rand`` version (APGD-CE + APGD-DLR) is what purification papers report. EOT is normally the
threat model's job (``threat=eot|bpda_eot|adaptive``, ``threat.eot_iter``, averaging logits inside
the attacked model); ``attack.eot_iter`` additionally runs APGD's own EOT, which averages
gradients over that many calls of the attacked model (AutoAttack's rand protocol), for whoever
wants that form.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from purebench.attacks.base import ATTACKS, Attack
from purebench.errors import PurebenchError

VERSIONS = ("standard", "rand", "plus", "custom")
ATTACK_NAMES = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


class _WarningCollector(logging.Handler):
    """Keeps AutoAttack's own warnings (randomness, zero gradients, Square beating APGD) for the row."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip()
        if message not in self.messages:
            self.messages.append(message)


class AutoAttackAdapter(Attack):
    def __init__(
        self,
        name: str,
        norm: str,
        eps: float,
        seed: int,
        verbose: bool,
        version: str,
        attacks: list[str] | None,
        n_iter: int,
        restarts: int,
        eot_iter: int,
        n_queries: int,
    ) -> None:
        super().__init__(name, norm, eps, seed, verbose)
        if version not in VERSIONS:
            raise PurebenchError(f"attack.version must be one of {', '.join(VERSIONS)}, got '{version}'.")
        if version == "custom":
            unknown = sorted(set(attacks or []) - set(ATTACK_NAMES))
            if not attacks or unknown:
                raise PurebenchError(
                    f"attack.version=custom needs attack.attacks drawn from {', '.join(ATTACK_NAMES)} (got {attacks})."
                )
        self.version, self.attacks = version, list(attacks or [])
        self.n_iter, self.restarts, self.eot_iter, self.n_queries = n_iter, restarts, eot_iter, n_queries
        self.warnings = _WarningCollector()
        logging.getLogger("auto-attack").addHandler(self.warnings)

    def build(self, model: nn.Module, device: torch.device) -> Any:
        """The pyautoattack ``AutoAttack`` object for ``model`` with this config's budget."""
        from pyautoattack import AutoAttack

        logging.getLogger("auto-attack").setLevel(logging.DEBUG if self.verbose else logging.WARNING)
        aa = AutoAttack(
            model,
            attacks=self.attacks if self.version == "custom" else None,
            device=device,
            eps=self.eps,
            norm=self.norm,
            seed=self.seed,
            version=self.version,
        )
        # Override the version's defaults with the configured budget of iterations. APGD derives its
        # step-size checkpoints from n_iter in its constructor (Croce & Hein 2020, Sec. 3.2: first
        # checkpoint at 0.22 N, period decreasing by 0.03 N down to 0.06 N), so they are re-derived.
        for apgd in (aa.apgd, aa.apgd_targeted):
            apgd.n_iter = self.n_iter
            apgd.n_iter_2 = max(int(0.22 * self.n_iter), 1)
            apgd.n_iter_min = max(int(0.06 * self.n_iter), 1)
            apgd.size_decr = max(int(0.03 * self.n_iter), 1)
            apgd.eot_iter = self.eot_iter
        aa.apgd.n_restarts = self.restarts
        aa.fab.n_iter = self.n_iter
        aa.square.n_queries = self.n_queries
        return aa

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        aa = self.build(model, x.device)
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
        return x_adv

    def describe(self) -> dict[str, Any]:
        attacks = (
            self.attacks
            if self.version == "custom"
            else {
                "standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
                "rand": ["apgd-ce", "apgd-dlr"],
                "plus": ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"],
            }[self.version]
        )
        return {
            **super().describe(),
            "attack_version": self.version,
            "attack_components": "+".join(attacks),
            "attack_steps": self.n_iter,
            "attack_restarts": self.restarts,
            "attack_eot_iter": self.eot_iter,
            "attack_params": f"version={self.version},attacks={'+'.join(attacks)},restarts={self.restarts},"
            f"eot_iter={self.eot_iter},n_queries={self.n_queries}",
            "attack_warnings": " | ".join(self.warnings.messages),
        }


@ATTACKS.register("autoattack")
def autoattack(
    name: str,
    norm: str,
    eps: float,
    seed: int,
    verbose: bool = True,
    version: str = "rand",
    attacks: list[str] | None = None,
    n_iter: int = 100,
    restarts: int = 1,
    eot_iter: int = 1,
    n_queries: int = 5000,
) -> Attack:
    """AutoAttack; ``version=rand`` (APGD-CE + APGD-DLR) is the purification papers' protocol."""
    return AutoAttackAdapter(name, norm, eps, seed, verbose, version, attacks, n_iter, restarts, eot_iter, n_queries)
