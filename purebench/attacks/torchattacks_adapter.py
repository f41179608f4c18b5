"""torchattacks attacks by name, with their own parameters passed through from the config.

``attack=pgd`` etc. are thin configs over this adapter: every key besides name/norm/eps/verbose
goes to the torchattacks constructor unchanged (alpha, steps, random_start, decay, c, ...).
Unbounded attacks (CW-L2, DeepFool) are projected onto the configured eps-ball so that every
row obeys the budget it reports; the row records that projection.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from purebench.attacks.base import ATTACKS, Attack, project
from purebench.errors import PurebenchError


@dataclass(frozen=True)
class _Spec:
    cls: str  # torchattacks class name
    norms: tuple[str, ...]  # norms the attack is defined for
    bounded: bool  # whether the attack itself respects eps


SPECS = {
    "fgsm": _Spec("FGSM", ("Linf",), True),
    "pgd": _Spec("PGD", ("Linf",), True),
    "pgdl2": _Spec("PGDL2", ("L2",), True),
    "cw": _Spec("CW", ("L2", "Linf"), False),
    "deepfool": _Spec("DeepFool", ("L2", "Linf"), False),
    "mifgsm": _Spec("MIFGSM", ("Linf",), True),
    "difgsm": _Spec("DIFGSM", ("Linf",), True),
    "apgd": _Spec("APGD", ("Linf", "L2"), True),
    "square": _Spec("Square", ("Linf", "L2"), True),
    "eotpgd": _Spec("EOTPGD", ("Linf",), True),
}


class TorchattacksAdapter(Attack):
    def __init__(self, name: str, norm: str, eps: float, seed: int, verbose: bool, params: dict[str, Any]) -> None:
        super().__init__(name, norm, eps, seed, verbose)
        self.spec = SPECS[name]
        if norm not in self.spec.norms:
            raise PurebenchError(f"attack '{name}' supports norm {', '.join(self.spec.norms)}, not {norm}.")
        import torchattacks

        self._cls = getattr(torchattacks, self.spec.cls)
        accepted = set(inspect.signature(self._cls).parameters) - {"model"}
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise PurebenchError(
                f"torchattacks.{self.spec.cls} has no parameter(s) {unknown}; it accepts: {', '.join(sorted(accepted))}."
            )
        check_values(self.spec.cls, inspect.signature(self._cls).parameters, params)
        self.params = dict(params)
        for key, value in (("eps", eps), ("norm", norm), ("seed", seed)):
            if key in accepted:
                self.params[key] = value

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        attack = self._cls(model, **self.params)
        x_adv = attack(x, y)
        return x_adv if self.spec.bounded else project(x_adv, x, self.norm, self.eps)

    def describe(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.params.items() if k not in ("eps", "norm", "seed")}
        return {
            **super().describe(),
            "attack_params": ",".join(f"{k}={v}" for k, v in sorted(shown.items())),
            "attack_steps": shown.get("steps", 1),
            "attack_eot_iter": shown.get("eot_iter", 1),
            "attack_projected": not self.spec.bounded,
        }


COUNTS = ("steps", "n_restarts", "eot_iter", "n_queries")  # loop counts of torchattacks: >= 1


def check_values(cls: str, signature: Mapping[str, inspect.Parameter], params: dict[str, Any]) -> None:
    """Refuse before any compute a value torchattacks would fail on mid-attack, or run without
    attacking: a non-number where the constructor's default is a number (``alpha=abc``), and a loop
    count below 1 (``steps=0`` returns its input, and the row would name a PGD that took no step)."""
    for key, value in params.items():
        default = signature[key].default
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, int | float) and not isinstance(default, bool) and not number:
            raise PurebenchError(
                f"attack.{key}={value!r} is not a number (torchattacks.{cls} default: {default}). Give a number, "
                f"e.g. attack.{key}={default}."
            )
        if key in COUNTS and number and (value < 1 or value != int(value)):
            raise PurebenchError(
                f"attack.{key}={value} must be a whole number >= 1 (torchattacks.{cls} would take no step and the "
                f"row would report an attack that did not run); the config's default is in conf/attack/."
            )


def _register(attack_name: str) -> None:
    @ATTACKS.register(attack_name)
    def factory(name: str, norm: str, eps: float, seed: int, verbose: bool = True, **params: Any) -> Attack:
        return TorchattacksAdapter(name, norm, eps, seed, verbose, params)

    factory.__doc__ = f"torchattacks.{SPECS[attack_name].cls} ({', '.join(SPECS[attack_name].norms)})."


for _name in SPECS:
    _register(_name)
