"""RobustBench model-zoo classifiers by name: ``classifier.name=robustbench:<model name>``.

Diffusion-purification papers attack RobustBench's ``Standard`` WRN-28-10 (CIFAR-10, Linf), and
the adversarially trained classifiers they compare with come from the same zoo. The model is built
and loaded by robustbench's own ``load_model``, so every zoo entry gets the architecture, the
checkpoint-key fixes and the input normalisation RobustBench evaluates it with: zoo models take
images in [0, 1] and normalise inside themselves where they need it, so the wrapper adds none.
``load_model`` reads ``<model_dir>/<dataset>/<threat_model>/<name>.pt`` and downloads the file
there when it is missing (a network is needed once; offline, put the file there yourself).

robustbench is an optional extra: robustbench 1.1.1 pins timm 1.0.9, which purebench's pin
excludes, so it is installed without its dependencies (``pip install --no-deps robustbench==1.1.1``
beside the extra's gdown, geotorch and torchdiffeq). Importing it needs two names it does not
find in such an environment, provided for the import only (:func:`_importable`).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from torch import nn

from purebench.classifiers.base import CLASSIFIERS, Classifier
from purebench.errors import PurebenchError

INSTALL = "pip install --no-deps robustbench==1.1.1 && pip install gdown==5.1.0 geotorch==0.4.0 torchdiffeq==0.2.5"
# robustbench's WideResNet (the TRADES layout of Standard and many zoo entries) declared as wrn28_10 declares
# the same network, so a defense that reads stages (ZeroPur's candidate layers) sees the same layers in both.
WIDE_RESNET = (["block1", "block2", "block3"], "fc")


def _resource_filename(package: str, resource: str) -> str:
    """``pkg_resources.resource_filename``: ``resource`` beside the module ``package``."""
    return str(Path(sys.modules[package].__file__).parent / resource)


@contextlib.contextmanager
def _importable() -> Iterator[None]:
    """Make ``import robustbench`` (1.1.1) work, for the import only.

    Its ``__init__`` imports ``autoattack`` (AutoAttack's module name in its git repository, which
    is not reachable here; PyPI's pyautoattack, a purebench dependency, installs the same code as
    ``pyautoattack``) and ``pkg_resources`` (gone from setuptools 81, used only to find ImageNet
    file lists). While importing, ``autoattack`` and its submodules are aliases of pyautoattack's,
    and ``pkg_resources`` a module with the one function robustbench calls; each is added only
    when the real module is absent and removed afterwards, so no other code in the process sees
    them (robustbench keeps its references). timm's warnings about the old import paths
    robustbench uses (it was written for timm 1.0.9) are silenced for the import.
    """
    added: dict[str, ModuleType] = {}
    if importlib.util.find_spec("autoattack") is None:
        import pyautoattack.state  # noqa: F401  (robustbench imports autoattack.state too)

        added |= {
            "autoattack" + name.removeprefix("pyautoattack"): module
            for name, module in list(sys.modules.items())
            if name == "pyautoattack" or name.startswith("pyautoattack.")
        }
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename  # type: ignore[attr-defined]
        added["pkg_resources"] = shim
    sys.modules.update(added)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _load_model(model: str, model_dir: str, dataset: str, threat_model: str) -> tuple[nn.Module, int]:
    """robustbench's ``load_model`` of a zoo entry and the number of classes of its dataset."""
    if importlib.util.find_spec("robustbench") is None:
        raise PurebenchError(
            f"classifier 'robustbench:{model}' needs the optional robustbench package, which is not installed: "
            f"{INSTALL}."
        )
    with _importable():
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
        from robustbench.utils import DATASET_CLASSES, load_model
    try:
        zoo_dataset, zoo_threat = BenchmarkDataset(dataset), ThreatModel(threat_model)
        zoo = model_dicts[zoo_dataset][zoo_threat]
    except (ValueError, KeyError):
        raise PurebenchError(
            f"RobustBench has no zoo for classifier.dataset='{dataset}' and classifier.threat_model='{threat_model}'; "
            f"datasets: {', '.join(d.value for d in model_dicts)}; threat models: {', '.join(t.value for t in ThreatModel)}."
        ) from None
    if model not in zoo:
        close = difflib.get_close_matches(model, list(zoo), n=3)
        raise PurebenchError(
            f"RobustBench's {dataset} {threat_model} zoo has no model '{model}'"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + f". It has {len(zoo)} models, e.g. {', '.join(list(zoo)[:5])} (robustbench.model_zoo.model_dicts lists them)."
        )
    path = Path(model_dir).expanduser() / zoo_dataset.value / zoo_threat.value / f"{model}.pt"
    try:
        net = load_model(model, model_dir=str(Path(model_dir).expanduser()), dataset=dataset, threat_model=threat_model)
    except Exception as exc:  # downloads, foreign checkpoints and version mismatches fail in many types
        raise PurebenchError(
            f"robustbench could not load '{model}' ({type(exc).__name__}: {exc}). It reads {path} and downloads it "
            "there when missing, which needs a network: without one, copy the file there (classifier.model_dir "
            "sets the folder above <dataset>/<threat_model>/)."
        ) from exc
    return net, DATASET_CLASSES[zoo_dataset]


def _layout(net: nn.Module) -> tuple[list[str], str]:
    """The stages and the decision layer: robustbench's WideResNet by name, otherwise the top-level
    blocks that hold a convolution and the last linear layer (as for torchvision models)."""
    modules = dict(net.named_modules())
    if all(name in modules for name in [*WIDE_RESNET[0], WIDE_RESNET[1]]):
        return WIDE_RESNET
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PurebenchError(f"{type(net).__name__} has no linear decision layer purebench can read features from.")
    stages = [n for n, m in net.named_children() if any(isinstance(c, nn.Conv2d) for c in m.modules())]
    return stages, linears[-1]


@CLASSIFIERS.register("robustbench:")
def robustbench_model(
    name: str, dataset: str = "cifar10", threat_model: str = "Linf", model_dir: str = "data/weights/robustbench"
) -> Classifier:
    """``robustbench:<model name>`` from RobustBench's ``dataset`` / ``threat_model`` zoo, loaded by
    robustbench from ``model_dir``; its inputs are images in [0, 1]."""
    net, num_classes = _load_model(name.split(":", 1)[1], model_dir, dataset, threat_model)
    stages, head = _layout(net)
    return Classifier(net, None, None, stages, head, num_classes, name)
