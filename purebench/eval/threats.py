"""Threat models: what function the attacker differentiates.

A threat model wraps (classifier, defense) into the module an attack sees; attacks stay
generic and never look at which defense they face. ``oblivious`` is the protocol of most
purification papers (ZeroPur and IMPure report it): the attacker knows only the classifier.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import nn

from purebench.classifiers import Classifier
from purebench.defenses import Defense
from purebench.registry import Registry


class ThreatModel(ABC):
    name: str

    @abstractmethod
    def attacked_model(self, classifier: Classifier, defense: Defense) -> nn.Module:
        """The function from images in [0, 1] to logits that the attack differentiates."""

    @abstractmethod
    def attacked_is_randomized(self, defense: Defense) -> bool:
        """Whether that function is random (decides EOT inside attacks that support it)."""

    def describe(self) -> dict[str, Any]:
        """Threat-model parameters recorded in the result row."""
        return {"threat_model": self.name}


class Oblivious(ThreatModel):
    """Adversarial examples are crafted on the classifier alone, then purified and classified."""

    name = "oblivious"

    def attacked_model(self, classifier: Classifier, defense: Defense) -> nn.Module:
        return classifier

    def attacked_is_randomized(self, defense: Defense) -> bool:
        return False


THREATS: Registry[ThreatModel] = Registry("threat model")


@THREATS.register("oblivious")
def oblivious(name: str) -> ThreatModel:
    return Oblivious()
