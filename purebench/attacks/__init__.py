"""Attacks: registry, budget checks, AutoAttack and torchattacks adapters (importing registers them)."""

from purebench.attacks import autoattack, torchattacks_adapter  # noqa: F401
from purebench.attacks.base import ATTACKS, Attack, check_budget

__all__ = ["ATTACKS", "Attack", "check_budget"]
