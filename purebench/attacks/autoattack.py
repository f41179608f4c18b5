"""AutoAttack (Croce & Hein 2020) through the ``pyautoattack`` package.

pyautoattack differs from upstream: keyword-only arguments, ``run_standard_evaluation`` returns
``(x_adv, y_adv)``, and ``seed=None`` means a time-based seed, so a seed is always passed here.
The ``rand`` version (APGD-CE + APGD-DLR) is what purification papers report.

Each version's own settings are AutoAttack's (``plus``: 5 APGD and FAB restarts; ``rand``: APGD's
EOT over 20 calls, which averages gradients); a budget key overrides them only when it is set.
The threat model's EOT (``threat.eot_iter``, averaging logits inside the attacked model) is
separate and multiplies with ``rand``'s: set ``attack.eot_iter=1`` to keep only the threat's.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from purebench.attacks.base import ATTACKS, Attack
from purebench.errors import PurebenchError

DETERMINISM_SAMPLE = 4  # images forwarded twice to see whether the attacked model is deterministic
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
    """AutoAttack with the chosen version's own settings, overridden only by the budget keys that
    are set (not None): ``version=plus`` runs its 5 APGD restarts unless ``restarts`` says otherwise.
    The row records the settings that actually ran."""

    def __init__(
        self,
        name: str,
        norm: str,
        eps: float,
        seed: int,
        verbose: bool,
        version: str,
        attacks: list[str] | None,
        n_iter: int | None,
        restarts: int | None,
        eot_iter: int | None,
        n_queries: int | None,
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
        for key, value in (
            ("n_iter", n_iter),
            ("restarts", restarts),
            ("eot_iter", eot_iter),
            ("n_queries", n_queries),
        ):
            if value is not None and int(value) < 1:
                raise PurebenchError(f"attack.{key} must be null (the version's own setting) or >= 1, got {value}.")
        self.version, self.attacks = version, list(attacks or [])
        self.n_iter, self.restarts, self.eot_iter, self.n_queries = n_iter, restarts, eot_iter, n_queries
        self.eot_draws: set[int] = set()  # APGD EOT draws actually used per batch (see perturb)
        self.warnings = _WarningCollector()
        logging.getLogger("auto-attack").addHandler(self.warnings)

    def build(self, model: nn.Module, device: torch.device) -> Any:
        """The pyautoattack ``AutoAttack`` object for ``model``: the version's preset, then the set overrides."""
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
        if self.n_iter is not None:
            # APGD derives its step-size checkpoints from n_iter in its constructor (Croce & Hein 2020,
            # Sec. 3.2: first checkpoint at 0.22 N, period decreasing by 0.03 N down to 0.06 N), so
            # they are re-derived for the configured budget.
            for apgd in (aa.apgd, aa.apgd_targeted):
                apgd.n_iter = self.n_iter
                apgd.n_iter_2 = max(int(0.22 * self.n_iter), 1)
                apgd.n_iter_min = max(int(0.06 * self.n_iter), 1)
                apgd.size_decr = max(int(0.03 * self.n_iter), 1)
            aa.fab.n_iter = self.n_iter
        if self.eot_iter is not None:
            aa.apgd.eot_iter = aa.apgd_targeted.eot_iter = self.eot_iter
        if self.restarts is not None:
            aa.apgd.n_restarts = self.restarts
        if self.n_queries is not None:
            aa.square.n_queries = self.n_queries
        return aa

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        aa = self.build(model, x.device)
        if aa.apgd.eot_iter > 1 and _deterministic(model, x):
            # EOT over a deterministic function averages identical gradients: one draw is the same
            # attack (up to float rounding) at 1/eot_iter of the cost. A random model keeps every draw.
            aa.apgd.eot_iter = aa.apgd_targeted.eot_iter = 1
        self.eot_draws.add(aa.apgd.eot_iter)
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
        return x_adv

    def describe(self) -> dict[str, Any]:
        aa = self.build(nn.Identity(), torch.device("cpu"))  # the effective settings, without running
        attacks = list(aa.attacks_to_run)
        eot = aa.apgd.eot_iter
        draws = max(self.eot_draws) if self.eot_draws else eot
        eot_text = f"{eot}" if draws == eot else f"{eot}({draws} used: deterministic model)"
        params = [f"version={self.version}", f"attacks={'+'.join(attacks)}", f"restarts={aa.apgd.n_restarts}"]
        if {"fab", "fab-t"} & set(attacks):
            params.append(f"fab_restarts={aa.fab.n_restarts}")
        if {"apgd-t", "fab-t"} & set(attacks):
            params.append(f"targets={aa.apgd_targeted.n_target_classes}")
        params += [f"eot_iter={eot_text}", f"n_queries={aa.square.n_queries}"]
        return {
            **super().describe(),
            "attack_version": self.version,
            "attack_components": "+".join(attacks),
            "attack_steps": aa.apgd.n_iter,
            "attack_restarts": aa.apgd.n_restarts,
            "attack_eot_iter": draws,
            "attack_params": ",".join(params),
            "attack_warnings": " | ".join(self.warnings.messages),
        }


@torch.no_grad()
def _deterministic(model: nn.Module, x: torch.Tensor) -> bool:
    """Do two forward passes on the same images give bit-identical logits?"""
    sample = x[:DETERMINISM_SAMPLE]
    return torch.equal(model(sample), model(sample))


@ATTACKS.register("autoattack")
def autoattack(
    name: str,
    norm: str,
    eps: float,
    seed: int,
    verbose: bool = True,
    version: str = "rand",
    attacks: list[str] | None = None,
    n_iter: int | None = None,
    restarts: int | None = None,
    eot_iter: int | None = None,
    n_queries: int | None = None,
) -> Attack:
    """AutoAttack; ``version=rand`` (APGD-CE + APGD-DLR) is the purification papers' protocol."""
    return AutoAttackAdapter(name, norm, eps, seed, verbose, version, attacks, n_iter, restarts, eot_iter, n_queries)
