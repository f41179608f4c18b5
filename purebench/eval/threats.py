"""Threat models: the ladder of attackers, from oblivious to fully adaptive.

A threat model wraps (classifier, defense) into the one function the attack differentiates;
attacks stay generic and never look at which defense they face. Each rung is fixed by two
choices, read from the defense's declared properties only:

- the gradient path: ``classifier`` (oblivious: the attacker ignores the purifier), ``bpda``
  (forward through the real purifier, backward through ``defense.bpda_approximation``, Athalye
  et al. 2018), ``exact`` (backward through ``defense.adaptive_purify``: with ``backprop_steps=0``
  an inner optimisation is bridged straight-through and only the ordinary differentiable parts
  count, with ``null`` it is exact through every step: unrolled, or tracked in the forward pass where
  the defense knows its Jacobian, as ZeroPur's clipped sign steps);
- EOT: when the defense is randomized, every forward averages the logits of ``eot_iter``
  independent draws of its randomness, so the attack follows the gradient of the expected
  prediction instead of one draw's (the threat owns EOT, attacks do not add their own).

============  ===========  ======================  ==========================================
threat        gradient     EOT when randomized     what it models
============  ===========  ======================  ==========================================
oblivious     classifier   no                      the papers' default (ZeroPur, IMPure)
bpda          bpda         no                      ZeroPur Table 4; AToP's pipeline attack
eot           exact (k=0)  yes                     EOT on random transforms (Athalye et al.)
bpda_eot      bpda         yes                     BPDA+EOT (Athalye et al. 2018, Sec. 4.3)
adaptive      exact (all)  yes                     full white box, through every inner step
known_draws   exact (all)  no: the draws are known deterministic white box (the evaluation's own draws)
============  ===========  ======================  ==========================================

``known_draws`` gives the attacker the defense's random draws: every forward of the attack replays
the per-example draws that the evaluation then makes (one evaluation), so the defense is a fixed
function. What a randomized defense keeps here is not owed to its randomness; the gap to
``adaptive`` is.

``threat.surrogate`` (a mapping of defense settings, e.g. ``{steps: 10}``) is the surrogate process of
Lee & Kim (2023): the attacker differentiates a copy of the defense built with those settings (a
diffusion purifier's shorter respaced chain) and the evaluation purifies with the real one. The row's
rung is then ``<threat>_surrogate`` with the settings in ``threat_surrogate``: a cheaper attack, said so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from purebench.classifiers import Classifier
from purebench.defenses import Defense
from purebench.errors import PurebenchError
from purebench.registry import Registry
from purebench.seeding import UnknownDraws, draw_generators, replay_attack_draws, stacked_draws

GRADIENTS = ("classifier", "bpda", "exact")
SURROGATE_SUFFIX = "_surrogate"  # a rung whose attack followed a surrogate's gradient (Lee & Kim 2023)


def base_rung(threat: str) -> str:
    """The rung a recorded threat model belongs to: ``adaptive_surrogate`` -> ``adaptive``."""
    return threat.removesuffix(SURROGATE_SUFFIX)


# Pixels (batch x H x W) per stacked call when threat.eot_batch is null. CPU: 256 CIFAR images (larger
# batches gain nothing per image on the 2-core development machine and cost memory, benchmarks/README);
# CUDA: 16x that, for devices that need large batches to fill up.
AUTO_PIXELS_PER_CALL = {"cpu": 256 * 32 * 32, "cuda": 4096 * 32 * 32}


def draws_per_call(eot_batch: int | None, n_draws: int, x: torch.Tensor) -> int:
    """How many draws of ``x`` one stacked call takes: ``eot_batch``, or with None as many as fit in the
    device's pixel budget (at least one)."""
    if eot_batch is None:
        pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
        eot_batch = AUTO_PIXELS_PER_CALL.get(x.device.type, AUTO_PIXELS_PER_CALL["cuda"]) // pixels
    return max(1, min(eot_batch, n_draws))


class DefendedClassifier(nn.Module):
    """classifier(purify(x)) as one module; with ``eot_iter > 1`` the logits of that many draws are averaged.

    The draws are stacked into batches of ``eot_batch`` draws (None: :func:`draws_per_call`), so the purifier and
    the classifier see one large batch instead of a Python loop of small ones. Each draw of each row
    has its own seeded generator (:func:`purebench.seeding.draw_generators`), which makes the logits
    the same for every ``eot_batch``: ``eot_batch=1`` is the loop.
    """

    def __init__(
        self,
        classifier: Classifier,
        purify: Callable[[torch.Tensor], torch.Tensor],
        eot_iter: int,
        eot_batch: int | None = None,
    ) -> None:
        super().__init__()
        self.classifier, self.purify, self.eot_iter, self.eot_batch = classifier, purify, eot_iter, eot_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.eot_iter == 1:
            return self.classifier(self.purify(x))
        per_call = draws_per_call(self.eot_batch, self.eot_iter, x)
        total = None
        for stacked in stacked_draws(x, draw_generators(self.eot_iter, x.shape[0]), per_call):
            logits = self.classifier(self.purify(stacked))
            for part in logits.split(x.shape[0]):  # summed draw by draw, in the loop's order
                total = part if total is None else total + part
        return total / self.eot_iter


def bpda(defense: Defense) -> Callable[[torch.Tensor], torch.Tensor]:
    """Forward: the real purifier. Backward: the gradient of ``defense.bpda_approximation``."""

    def purify(x: torch.Tensor) -> torch.Tensor:
        approximation = defense.bpda_approximation(x)
        with torch.no_grad():
            purified = defense.purify(x)
        return approximation + (purified - approximation).detach()

    return purify


class ThreatModel:
    """One rung of the ladder; see the module docstring for the table of rungs."""

    def __init__(
        self,
        name: str,
        gradient: str,
        eot: bool,
        eot_iter: int,
        n_eval: int,
        backprop_steps: int | None,
        known_draws: bool = False,
        eot_batch: int | None = None,
        surrogate: dict[str, Any] | None = None,
    ) -> None:
        if gradient not in GRADIENTS:
            raise PurebenchError(f"threat.gradient must be one of {', '.join(GRADIENTS)}, got '{gradient}'.")
        if eot_iter < 1 or n_eval < 1:
            raise PurebenchError(f"threat.eot_iter and threat.n_eval must be >= 1, got {eot_iter} and {n_eval}.")
        if backprop_steps is not None and backprop_steps < 0:
            raise PurebenchError(f"threat.backprop_steps must be null (all) or >= 0, got {backprop_steps}.")
        if eot_batch is not None and eot_batch < 1:
            raise PurebenchError(
                f"threat.eot_batch must be null (a per-device pixel budget) or >= 1 (draws per batch), got {eot_batch}."
            )
        self.name, self.gradient, self.eot = name, gradient, eot
        self.eot_iter, self.n_eval, self.backprop_steps = eot_iter, n_eval, backprop_steps
        if surrogate is not None and (gradient == "classifier" or known_draws or not isinstance(surrogate, dict)):
            raise PurebenchError(
                f"threat.surrogate={surrogate} is not valid for threat={name}: it is a mapping of defense settings "
                "(e.g. {steps: 10}) for the copy of the defense the attacker differentiates, and only threats that "
                "differentiate the defense without replaying its draws take it (bpda_eot, eot, adaptive)."
            )
        self.known_draws, self.eot_batch = known_draws, eot_batch
        self.surrogate = dict(surrogate) if surrogate else None

    def effective_eot_iter(self, randomized: bool) -> int:
        """EOT draws per forward: 1 when EOT is off or cannot help (a deterministic defense)."""
        return self.eot_iter if self.eot and randomized and self.gradient != "classifier" else 1

    def attacked_model(self, classifier: Classifier, defense: Defense, randomized: bool) -> nn.Module:
        """The function from images in [0, 1] to logits that the attack differentiates."""
        if self.gradient == "classifier":
            return classifier
        if self.gradient == "exact" and not defense.differentiable:
            raise PurebenchError(
                f"threat={self.name} differentiates through the purifier, but this defense declares "
                "differentiable=False. Use threat=bpda or threat=bpda_eot (or give it a bpda_approximation)."
            )
        purify = (
            bpda(defense)
            if self.gradient == "bpda"
            else lambda x: defense.adaptive_purify(x, backprop_steps=self.backprop_steps)
        )
        if self.known_draws and randomized:
            purify = self._with_known_draws(purify)
        return DefendedClassifier(classifier, purify, self.effective_eot_iter(randomized), self.eot_batch).eval()

    def _with_known_draws(
        self, purify: Callable[[torch.Tensor], torch.Tensor]
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``purify`` replaying, on every call, the per-example draws the evaluation will make."""

        def replayed(x: torch.Tensor) -> torch.Tensor:
            try:
                with replay_attack_draws(x.shape[0]):
                    return purify(x)
            except UnknownDraws as exc:
                raise PurebenchError(
                    f"threat={self.name} replays each example's own draws, so the attack must query the whole batch "
                    f"at once ({exc}). PGD-style attacks do; AutoAttack and others that attack only the examples "
                    "still standing do not: use attack=pgd, fgsm, eotpgd, mifgsm or apgd."
                ) from exc

        return replayed

    def describe(self, randomized: bool) -> dict[str, Any]:
        """Threat-model parameters recorded in the result row."""
        info: dict[str, Any] = {
            "threat_model": f"{self.name}{SURROGATE_SUFFIX}" if self.surrogate else self.name,
            "threat_gradient": self.gradient,
            "threat_eot_iter": self.effective_eot_iter(randomized),
            "threat_n_eval": self.n_eval if randomized and not self.known_draws else 1,
        }
        if self.surrogate:  # Lee & Kim (2023): gradients of a cheaper process, evaluation with the real one
            info["threat_surrogate"] = ",".join(f"{key}={value}" for key, value in sorted(self.surrogate.items()))
        if self.known_draws:
            info["threat_draws"] = "known to the attacker (the evaluation's own)"
        if self.gradient == "exact":
            info["threat_backprop_steps"] = "all" if self.backprop_steps is None else self.backprop_steps
        return info


THREATS: Registry[ThreatModel] = Registry("threat model")


def _register(name: str, gradient: str, eot: bool, backprop_steps: int | None, known_draws: bool, doc: str) -> None:
    @THREATS.register(name)
    def factory(
        name: str,
        eot_iter: int = 20,
        n_eval: int = 10,
        backprop_steps: int | None = backprop_steps,
        eot_batch: int | None = None,
        surrogate: dict[str, Any] | None = None,
    ) -> ThreatModel:
        return ThreatModel(name, gradient, eot, eot_iter, n_eval, backprop_steps, known_draws, eot_batch, surrogate)

    factory.__doc__ = doc


# The ladder, weakest attacker first: name -> (gradient path, EOT, default backprop_steps, known draws, doc).
LADDER = {
    "oblivious": ("classifier", False, 0, False, "Attack the classifier alone, then purify (the papers' protocol)."),
    "bpda": ("bpda", False, 0, False, "BPDA: the purifier's backward pass replaced by its approximation (identity)."),
    "eot": ("exact", True, 0, False, "EOT over the defense's randomness, gradients through its differentiable parts."),
    "bpda_eot": ("bpda", True, 0, False, "BPDA with EOT over the defense's randomness."),
    "adaptive": ("exact", True, None, False, "Full white box: inner optimisation unrolled, EOT when randomized."),
    "known_draws": (
        "exact",
        False,
        None,
        True,
        "Deterministic white box: full gradients through the very draws the "
        "evaluation makes; what the defense keeps here is not owed to its randomness.",
    ),
}
for _name, _spec in LADDER.items():
    _register(_name, *_spec)
