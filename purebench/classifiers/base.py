"""The classifier wrapper every defense and attack sees.

Inputs are always images in [0, 1]; normalisation lives inside the wrapper so attack budgets
are in pixel units. Defenses such as ZeroPur need intermediate features, so the wrapper gives
named access to any submodule's output (one forward pass, via hooks), the embedding f(x) that
feeds the decision layer g (ZeroPur Eq. 1, 3), and the declared ``stages`` (the natural
candidate layer set S of Adaptive Projection).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from purebench.errors import PurebenchError
from purebench.registry import Registry


class Classifier(nn.Module):
    """A network with built-in normalisation and named feature access; always in eval mode."""

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        stages: Sequence[str],
        head: str,
        num_classes: int,
        name: str,
    ) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.num_classes = num_classes
        self.stages = list(stages)
        self.head = head
        modules = dict(net.named_modules())
        for layer in [*self.stages, head]:
            if layer not in modules:
                raise ValueError(f"{name}: declared layer '{layer}' is not a submodule")
        normalise = mean is not None and std is not None
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) if normalise else None)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) if normalise else None)
        self.amp, self.channels_last = False, False
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def accelerate(self, amp: bool, channels_last: bool) -> Classifier:
        """GPU speed switches: autocast (float16 on CUDA, bfloat16 on CPU; logits returned in float32)
        and channels-last memory layout for the convolutions."""
        self.amp, self.channels_last = amp, channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        return self

    def train(self, mode: bool = True) -> Classifier:
        """Stay in eval mode: BatchNorm statistics must never mix the images of a batch."""
        return super().train(False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mean is None else (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images in [0, 1]."""
        x = self._normalise(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.amp:
            return self.net(x)
        dtype = torch.float16 if x.device.type == "cuda" else torch.bfloat16
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            return self.net(x).float()

    def layer_names(self) -> list[str]:
        """Names accepted by :meth:`features` (every named submodule of the network)."""
        return [n for n, _ in self.net.named_modules() if n]

    def features(
        self, x: torch.Tensor, layers: Sequence[str], embedding: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the outputs of ``layers`` from one forward pass.

        With ``embedding=True`` the dict also holds ``"embedding"``: the flattened input of the
        decision layer, i.e. f(x) with logits = g(f(x)).
        """
        modules = dict(self.net.named_modules())
        unknown = [n for n in layers if n not in modules]
        if unknown:
            raise PurebenchError(
                f"Unknown layer(s) {unknown} for classifier '{self.name}'. Stages: {self.stages}; "
                f"all layers: {', '.join(self.layer_names()[:40])}…"
            )
        captured: dict[str, torch.Tensor] = {}
        handles = [
            modules[n].register_forward_hook(lambda _m, _i, out, n=n: captured.__setitem__(n, out)) for n in layers
        ]
        if embedding:
            handles.append(
                modules[self.head].register_forward_pre_hook(
                    lambda _m, inputs: captured.__setitem__("embedding", inputs[0].flatten(1))
                )
            )
        try:
            logits = self(x)
        finally:
            for h in handles:
                h.remove()
        return logits, captured

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding f(x) (penultimate features)."""
        return self.features(x, [], embedding=True)[1]["embedding"]


CLASSIFIERS: Registry[Classifier] = Registry("classifier")
