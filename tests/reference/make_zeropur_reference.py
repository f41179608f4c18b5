"""Reference outputs of the authors' ZeroPur code (erhul/ZeroPur) for tests/test_zeropur_reference.py.

Runs their ``ZeroPur`` class (``zeropur.py`` at the repository's HEAD, with ``zero_pur/helper.py`` and
``peceptual/`` from commit 0fd2509, the only tree that still has them) on purebench's pretrained
resnet20 and the first real CIFAR-10 test images attacked by PGD-10 8/255 (oblivious), with the code's
own settings: eps 10/255, no random start, PIL ``GaussianBlur(radius=1.8)`` on 8-bit images (their
``WeakTransform``), momentum 1.0, T_g 10, T_p 50, lambda1 1e-4 on the sum over the two stages, lambda2 1.

Their code addresses a PreAct ResNet-18 by position (``children()[:5]``, ``AvgPool2d(4)`` on its 4x4 map,
features ``conv1, layer1..layer4``). ResNet-20 is fed to it through a module whose children are
``[identity, stem, layer1, layer2, layer3]`` (so stages 3 and 4 of their loop are layer2 and layer3, the
last two stages, as purebench's default S), their ``AvgPool2d(4)`` is given ResNet-20's global average
pool (``AvgPool2d(8)`` on its 8x8 map), and their ``LPIPSDistance`` gets a feature model returning
layer1..layer3. The normalisation is purebench's classifier's. Nothing else is adapted: the Guided
Shift, the ILA projection, the LPIPS distance and the steps are their code, run as it is.

    python tests/reference/make_zeropur_reference.py --source DIR --head-commit SHA --helpers-commit SHA

DIR holds ``zeropur.py``, ``zero_pur/helper.py`` and ``peceptual/{misc,distances,models}.py`` as in the
repository. Their code is imported from DIR and never copied; the npz holds numbers only, with the
commits and the SHA-256 of every source file used.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from purebench.attacks import ATTACKS
from purebench.classifiers import CLASSIFIERS, Classifier
from purebench.data import DATASETS

SOURCES = ("zeropur.py", "zero_pur/helper.py", "peceptual/misc.py", "peceptual/distances.py", "peceptual/models.py")
N_IMAGES = 8


def stub_unused_imports() -> None:
    """Modules their files import at the top but these functions never use (TVM, robustness, their model zoo)."""
    for name, attributes in {
        "tvm_transform": {"Defense": lambda *a, **k: None, "defense": None},
        "robustness": {},
        "robustness.cifar_models": {},
        "robustness.cifar_models.resnet": {"ResNet": nn.Module},
        "zero_pur.models": {"PreActResNet18": nn.Module, "WideResNet": nn.Module, "wideresnet": nn.Module},
    }.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module


class Normalise(nn.Module):
    """purebench's input normalisation of the classifier, as their ``normalizer`` argument."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier._normalise(x)


class ResNet20ByPosition(nn.Module):
    """ResNet-20 laid out as their code indexes a PreAct ResNet-18: children()[:4] ends at layer2, [:5] at layer3."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        net = classifier.net
        self.pad = nn.Identity()
        self.conv1 = nn.Sequential(net.conv1, net.bn1, nn.ReLU())
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3


def feature_model(module: types.ModuleType, classifier: Classifier, layout: ResNet20ByPosition) -> nn.Module:
    """Their ``FeatureModel`` returning ResNet-20's three stage outputs (their PreAct model returns four)."""

    class ResNet20Features(module.FeatureModel):
        def __init__(self) -> None:
            super().__init__()
            self.normalizer, self.model = Normalise(classifier), layout

        def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = self.model.conv1(self.normalizer(x))
            x1 = self.model.layer1(x)
            x2 = self.model.layer2(x1)
            return x1, x2, self.model.layer3(x2)

    return ResNet20Features()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="folder with their files (see above)")
    parser.add_argument("--head-commit", required=True, help="commit of zeropur.py")
    parser.add_argument("--helpers-commit", required=True, help="commit of zero_pur/helper.py and peceptual/")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("zeropur_reference.npz"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    stub_unused_imports()
    sys.path[:0] = [str(args.source), str(args.source / "zero_pur")]
    theirs = importlib.import_module("zeropur")
    helper = importlib.import_module("helper")
    distances = importlib.import_module("peceptual.distances")
    models = importlib.import_module("peceptual.models")

    classifier = CLASSIFIERS.build("resnet20")
    x, y = DATASETS.build("cifar10", root=os.environ["PUREBENCH_DATA"]).load(range(N_IMAGES))
    attack = ATTACKS.build("pgd", norm="Linf", eps=8 / 255, seed=0, alpha=2 / 255, steps=10, random_start=True)
    torch.manual_seed(0)
    x_adv = attack(classifier, x, y).detach()

    layout = ResNet20ByPosition(classifier)
    purifier = theirs.ZeroPur(layout, transform=helper.WeakTransform("gaussian"), normalizer=Normalise(classifier))
    purifier.lpips_dist = distances.LPIPSDistance(feature_model(models, classifier, layout))
    global_pool = types.SimpleNamespace(**vars(nn))  # their AvgPool2d(4) = the global pool of a 4x4 map
    global_pool.AvgPool2d = lambda _kernel: nn.AvgPool2d(8)
    theirs.nn = global_pool

    blurred = helper.WeakTransform("gaussian")(x_adv)
    gs = purifier.coarse_shifting(x_adv, rand=False, eps=10 / 255)
    gsap, gs_again = purifier(x_adv, eps=10 / 255, lam1=1e-4, lam2=1)
    assert torch.equal(gs, gs_again), "their Guided Shift is deterministic without a random start"
    np.savez_compressed(
        args.out,
        x_adv=x_adv.numpy(),
        labels=y.numpy(),
        blurred=blurred.numpy(),
        gs=gs.detach().numpy(),
        gsap=gsap.detach().numpy(),
        head_commit=args.head_commit,
        helpers_commit=args.helpers_commit,
        sources=np.array([f"{s} sha256={hashlib.sha256((args.source / s).read_bytes()).hexdigest()}" for s in SOURCES]),
        torch_version=torch.__version__,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
