"""CIFAR ResNets of He et al. 2016 (Sec. 4.2) with option-A (parameter-free) shortcuts.

Layer names match akamaster/pytorch_resnet_cifar10 so its published checkpoints load strictly;
those weights were trained on inputs normalised with ImageNet statistics.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from purebench.classifiers.base import CLASSIFIERS, Classifier
from purebench.classifiers.checkpoints import load_weights
from purebench.errors import PurebenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Published checkpoints: file name in PUREBENCH_DATA/weights, SHA-256 prefix, public origin.
_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
PRETRAINED = {
    "resnet20": ("resnet20-12fca82f.th", "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"),
    "resnet56": ("resnet56-4bfd9763.th", "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367"),
}


class _ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad channels (planes/4 each side); no parameters."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlockA(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _ShortcutA(planes) if stride != 1 or in_planes != planes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3 stages of n blocks (16/32/64 channels), global average pool, linear head."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes, layers = 16, []
        for stage, width in enumerate((16, 32, 64)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlockA(planes, width, 2 if stage > 0 and i == 0 else 1))
                planes = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.pool(out).flatten(1))


def default_weights(file_name: str) -> Path:
    """Where a published checkpoint is expected: ``$PUREBENCH_DATA/weights/<file>``."""
    return Path(os.environ.get("PUREBENCH_DATA", "data")) / "weights" / file_name


def _download(url: str, dest: Path, sha256: str) -> None:
    """Fetch a published checkpoint once; the hash is checked when it is loaded."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=sha256[:8], progress=True)


def _build(
    name: str, depth: int, num_classes: int, pretrained: bool, checkpoint: str | None, download: bool
) -> Classifier:
    net = CifarResNet(depth, num_classes)
    if checkpoint:
        load_weights(net, checkpoint)
    elif pretrained:
        if num_classes != 10:
            raise PurebenchError(
                f"The pretrained {name} is a CIFAR-10 model (10 classes), not {num_classes}: "
                "set classifier.pretrained=false or pass classifier.checkpoint=PATH."
            )
        file_name, sha = PRETRAINED[name]
        path = default_weights(file_name)
        if download and not path.is_file():
            _download(_AKAMASTER + file_name, path, sha)
        load_weights(net, path, expected_sha256=sha)
    return Classifier(net, IMAGENET_MEAN, IMAGENET_STD, ["layer1", "layer2", "layer3"], "linear", num_classes, name)


@CLASSIFIERS.register("resnet20")
def resnet20(
    name: str, num_classes: int = 10, pretrained: bool = True, checkpoint: str | None = None, download: bool = False
) -> Classifier:
    """ResNet-20 (0.27M params); pretrained: 91.73% on the CIFAR-10 test set (akamaster)."""
    return _build(name, 20, num_classes, pretrained, checkpoint, download)


@CLASSIFIERS.register("resnet56")
def resnet56(
    name: str, num_classes: int = 10, pretrained: bool = True, checkpoint: str | None = None, download: bool = False
) -> Classifier:
    """ResNet-56 (0.85M params); pretrained: 93.39% on the CIFAR-10 test set (akamaster)."""
    return _build(name, 56, num_classes, pretrained, checkpoint, download)
