"""The common CIFAR ResNet-18/50 (3x3 stem, no max-pool, projection shortcuts).

This is the layout of the ResNet-18 used by ZeroPur's experiments and of the standard-trained
checkpoint shipped inside the ``pyautoattack`` wheel (``examples/model_test.pt``, trained
without input normalisation).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from purebench.classifiers.base import CLASSIFIERS, Classifier
from purebench.classifiers.checkpoints import load_trained_weights, load_weights
from purebench.errors import PurebenchError


def _projection(in_planes: int, planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _projection(in_planes, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class CifarResNetB(nn.Module):
    """Four stages (64/128/256/512 planes) on 32x32 inputs."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            layers = []
            for j in range(n):
                layers.append(block(in_planes, planes, 2 if i > 0 and j == 0 else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.pool(out).flatten(1))


_STAGES = ["layer1", "layer2", "layer3", "layer4"]


def pyautoattack_checkpoint() -> Path:
    """The standard-trained CIFAR-10 ResNet-18 shipped in the pyautoattack wheel."""
    spec = find_spec("pyautoattack")
    if spec is None or spec.origin is None:
        raise PurebenchError("pyautoattack is not installed; run `make install` or pass classifier.checkpoint=PATH.")
    return Path(spec.origin).parent / "examples" / "model_test.pt"


@CLASSIFIERS.register("resnet18")
def resnet18(name: str, num_classes: int = 10, pretrained: bool = True, checkpoint: str | None = None) -> Classifier:
    """CIFAR ResNet-18; pretrained = pyautoattack's standard-trained checkpoint (no normalisation)."""
    net = CifarResNetB(BasicBlock, (2, 2, 2, 2), num_classes)
    if checkpoint or pretrained:
        load_weights(net, checkpoint or pyautoattack_checkpoint())
    return Classifier(net, None, None, _STAGES, "linear", num_classes, name)


@CLASSIFIERS.register("resnet50")
def resnet50(
    name: str,
    num_classes: int = 10,
    pretrained: bool = True,
    checkpoint: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Classifier:
    """CIFAR ResNet-50 (bottleneck blocks, CIFAR stem); weights from ``checkpoint`` (random only with ``pretrained=False``)."""
    net = CifarResNetB(Bottleneck, (3, 4, 6, 3), num_classes)
    load_trained_weights(net, name, checkpoint, pretrained)
    return Classifier(net, mean, std, _STAGES, "linear", num_classes, name)
