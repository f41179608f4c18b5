"""Any timm or torchvision model as a classifier: ``timm:<name>`` / ``torchvision:<name>``.

Pretrained weights come from the libraries' own hubs where the network allows it; offline, a
local checkpoint is loaded by path. The decision layer is the library's declared classifier
(timm) or the last ``nn.Linear`` (torchvision); stages are the top-level feature blocks.
"""

from __future__ import annotations

from torch import nn

from purebench.classifiers.base import CLASSIFIERS, Classifier
from purebench.classifiers.checkpoints import load_weights
from purebench.errors import PurebenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _module_name(net: nn.Module, target: nn.Module) -> str:
    return next(n for n, m in net.named_modules() if m is target)


def _hub_error(name: str, exc: Exception) -> PurebenchError:
    return PurebenchError(
        f"Could not build '{name}' with pretrained weights ({type(exc).__name__}: {exc}). Without a network, "
        "set classifier.pretrained=false and classifier.checkpoint=/path/to/weights.pt."
    )


@CLASSIFIERS.register("timm:")
def timm_model(
    name: str, num_classes: int = 1000, pretrained: bool = True, checkpoint: str | None = None
) -> Classifier:
    """``timm:<model name>``, normalised with the model's own pretrained config."""
    import timm

    model_name = name.split(":", 1)[1]
    if model_name not in timm.list_models():
        raise PurebenchError(f"timm has no model '{model_name}'; see timm.list_models().")
    try:
        net = timm.create_model(model_name, pretrained=pretrained and not checkpoint, num_classes=num_classes)
    except Exception as exc:  # hub and network failures come in many types
        raise _hub_error(name, exc) from exc
    if checkpoint:
        load_weights(net, checkpoint)
    cfg = net.pretrained_cfg
    stages = [info["module"] for info in getattr(net, "feature_info", [])] or [n for n, _ in net.named_children()][:-1]
    head = _module_name(net, net.get_classifier())
    return Classifier(
        net, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD), stages, head, num_classes, name
    )


@CLASSIFIERS.register("torchvision:")
def torchvision_model(
    name: str, num_classes: int = 1000, pretrained: bool = True, checkpoint: str | None = None
) -> Classifier:
    """``torchvision:<model name>`` with ImageNet normalisation."""
    import torchvision

    model_name = name.split(":", 1)[1]
    if model_name not in torchvision.models.list_models():
        raise PurebenchError(f"torchvision has no model '{model_name}'; see torchvision.models.list_models().")
    try:
        weights = "DEFAULT" if pretrained and not checkpoint else None
        net = torchvision.models.get_model(model_name, weights=weights, num_classes=num_classes)
    except Exception as exc:  # hub and network failures come in many types
        raise _hub_error(name, exc) from exc
    if checkpoint:
        load_weights(net, checkpoint)
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    stages = [n for n, m in net.named_children() if any(isinstance(c, nn.Conv2d) for c in m.modules())]
    return Classifier(net, IMAGENET_MEAN, IMAGENET_STD, stages, linears[-1], num_classes, name)
