"""WideResNet-28-10 (Zagoruyko & Komodakis 2016), the second victim architecture of ZeroPur.

Layer names follow the RobustBench implementation so its CIFAR checkpoints load by path.
"""

from __future__ import annotations

import torch
from torch import nn

from purebench.classifiers.base import CLASSIFIERS, Classifier
from purebench.classifiers.checkpoints import load_trained_weights


class WideBlock(nn.Module):
    """Pre-activation basic block; a 1x1 projection when the width or stride changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.equal = in_planes == planes and stride == 1
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        return out + (x if self.convShortcut is None else self.convShortcut(act))


class _Group(nn.Module):
    def __init__(self, n: int, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[WideBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(n)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 10) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = _Group(n, widths[0], widths[1], 1)
        self.block2 = _Group(n, widths[1], widths[2], 2)
        self.block3 = _Group(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn1(out))).flatten(1))


@CLASSIFIERS.register("wrn28_10")
def wrn28_10(
    name: str,
    num_classes: int = 10,
    pretrained: bool = True,
    checkpoint: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Classifier:
    """WRN-28-10 (36.5M params); weights from ``checkpoint`` (random only with ``pretrained=False``)."""
    net = WideResNet(28, 10, num_classes)
    load_trained_weights(net, name, checkpoint, pretrained)
    return Classifier(net, mean, std, ["block1", "block2", "block3"], "fc", num_classes, name)
