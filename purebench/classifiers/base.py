"""The classifier wrapper every defense and attack sees.

Inputs are always images in [0, 1]; normalisation lives inside the wrapper so attack budgets
are in pixel units. Defenses such as ZeroPur need intermediate features, so the wrapper gives
named access to any submodule's output (one forward pass, via hooks), the embedding f(x) that
feeds the decision layer g (ZeroPur Eq. 1, 3), and the declared ``stages`` (the natural
candidate layer set S of Adaptive Projection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
        self.compile_backend: str | None = None
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def accelerate(self, amp: bool, channels_last: bool, compile_backend: str | None = None) -> Classifier:
        """GPU speed switches: autocast (float16 on CUDA, bfloat16 on CPU; logits returned in float32),
        channels-last memory layout for the convolutions, and ``torch.compile`` of the logits path.

        Only :meth:`forward` is compiled (the attack's and the runner's logits). :meth:`features`
        stays eager: its forward hooks must see the original submodules, and defenses that unroll
        an inner optimisation need double backward, which compiled graphs do not support. The
        compiled module is kept off the module tree, so ``state_dict`` keys are unchanged.
        """
        self.amp, self.channels_last = amp, channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if compile_backend is not None and compile_backend not in compile_backends():
            raise PurebenchError(
                f"Unknown torch.compile backend '{compile_backend}'. Use compile=true (inductor), compile=false, "
                f"or one of: {', '.join(compile_backends())}."
            )
        self.compile_backend = compile_backend
        self.__dict__.pop("_compiled", None)  # built again, with this backend, on the next forward
        return self

    def train(self, mode: bool = True) -> Classifier:
        """Stay in eval mode: BatchNorm statistics must never mix the images of a batch."""
        return super().train(False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mean is None else (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images in [0, 1] (compiled when :meth:`accelerate` asked for it)."""
        return self._logits(x, self._compiled_net())

    def _compiled_net(self) -> nn.Module:
        """``torch.compile(self.net)``, built on first use and kept out of the module tree (its
        ``_orig_mod.`` keys must not reach ``state_dict``); rebuilt if ``net`` was replaced, so a
        compiled graph never runs other weights than ``self.net``'s."""
        if self.compile_backend is None:
            return self.net
        compiled = self.__dict__.get("_compiled")
        if compiled is None or compiled._orig_mod is not self.net:
            compiled = torch.compile(self.net, backend=self.compile_backend)
            self.__dict__["_compiled"] = compiled
        return compiled

    def _logits(self, x: torch.Tensor, net: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        x = self._normalise(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.amp:
            return net(x)
        dtype = torch.float16 if x.device.type == "cuda" else torch.bfloat16
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            return net(x).float()

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
            logits = self._logits(x, self.net)  # eager: the hooks live on the original submodules
        finally:
            for h in handles:
                h.remove()
        return logits, captured

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding f(x) (penultimate features)."""
        return self.features(x, [], embedding=True)[1]["embedding"]


def compile_backends() -> list[str]:
    """torch.compile backends accepted by ``compile=`` (torch's test-only backends left out)."""
    return [b for b in torch._dynamo.list_backends(exclude_tags=()) if "TESTING" not in b]


CLASSIFIERS: Registry[Classifier] = Registry("classifier")
