"""``purebench.evaluate(...)``: one call from Python, as AutoAttack, torchattacks and RobustBench are.

It composes the same Hydra config as ``python -m purebench`` (so the same names, defaults and
checks apply and a run can be repeated from the command line) and runs the same runner. Each of
dataset, classifier, defense, attack and threat is either a registry name (its keys as a dict,
``defense={"name": "gaussian_blur", "sigma": 2.0}``, or as Hydra strings in ``overrides``) or an
object: a :class:`~purebench.defenses.Defense` or any callable purifier, a classifier
``nn.Module``, tensors ``x, y`` in [0, 1] instead of a dataset, an :class:`~purebench.attacks.Attack`,
a :class:`~purebench.eval.threats.ThreatModel`. An object's config group then only names it in the
row (``python:<class>``, with a digest of its weights where it has any).

Nothing is written unless ``results_dir`` is given: the run goes to a temporary folder that is
removed afterwards, and the result (the row's fields and the per-example records) is returned.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from purebench.attacks import Attack
from purebench.classifiers import Classifier
from purebench.data import EvalDataset
from purebench.defenses import Defense
from purebench.errors import PurebenchError
from purebench.eval.threats import ThreatModel
from purebench.provenance import weights_digest

GROUPS = ("dataset", "classifier", "defense", "attack", "threat")


class FunctionDefense(Defense):
    """A plain callable purifier ``f(x) -> x`` as a defense. It is assumed deterministic and
    differentiable; the runner still purifies twice to detect randomness (and then attacks with EOT)."""

    def __init__(self, purify: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.function = purify

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


class TensorDataset(EvalDataset):
    """Images ``x`` (N, C, H, W) in [0, 1] with labels ``y``, addressed by their position."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
        if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
            raise PurebenchError(
                f"x must be images (N, C, H, W) and y their N labels; got x {tuple(x.shape)}, y {tuple(y.shape)}."
            )
        self.x, self.y = x.detach().float().cpu(), y.detach().long().cpu()
        self.name, self.num_classes = "tensors", num_classes
        self.source = f"tensors x {tuple(x.shape)}, sha256 {tensor_digest(self.x, self.y)[:16]}"

    def __len__(self) -> int:
        return len(self.x)

    def load(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return self.x[index], self.y[index]


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' bytes: the row's identity for data handed over in memory."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def as_classifier(module: nn.Module, num_classes: int) -> Classifier:
    """Wrap a plain ``nn.Module`` mapping [0, 1] images to logits; its last ``nn.Linear`` is the head.
    Like every classifier here it is put in eval mode with its parameters frozen."""
    if isinstance(module, Classifier):
        return module
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PurebenchError(
            f"{type(module).__name__} has no nn.Linear decision layer to name as the head; wrap it in "
            "purebench.classifiers.Classifier(net, mean, std, stages, head, num_classes, name) yourself."
        )
    return Classifier(module, None, None, [], linears[-1], num_classes, f"python:{type(module).__name__}")


def _label(obj: object) -> dict[str, Any]:
    """The config group of an object: its class (or function) name and, for a module with state,
    its weights' digest."""
    name = (
        obj.__qualname__
        if callable(obj) and not isinstance(obj, nn.Module) and hasattr(obj, "__qualname__")
        else type(obj).__name__
    )
    group: dict[str, Any] = {"name": f"python:{name}"}
    if isinstance(obj, nn.Module) and obj.state_dict():
        group["weights_sha256"] = weights_digest(obj)
    return group


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """The CLI's config with ``overrides`` (Hydra strings), outside any running Hydra app."""
    from hydra import compose, initialize_config_dir

    from purebench.config_paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def evaluate(
    *,
    dataset: str | Mapping[str, Any] | None = None,
    classifier: str | Mapping[str, Any] | nn.Module | None = None,
    defense: str | Mapping[str, Any] | Defense | Callable[[torch.Tensor], torch.Tensor] | None = None,
    attack: str | Mapping[str, Any] | Attack | None = None,
    threat: str | Mapping[str, Any] | ThreatModel | None = None,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    results_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate one configuration; returns the row's fields plus ``per_example`` (the records SA
    and RA are computed from) and ``config`` (the composed config, as the run file keeps it).

    ``settings`` are top-level keys (``n_examples``, ``seed``, ``batch_size``, ``device``, ...);
    ``n_examples`` defaults to ``len(x)`` when tensors are given. Writes only under ``results_dir``.
    """
    from purebench.eval.runner import evaluate_run

    chosen = {"dataset": dataset, "classifier": classifier, "defense": defense, "attack": attack, "threat": threat}
    selections, keys, objects = [], {}, {}
    for group, value in chosen.items():
        if isinstance(value, str):
            selections.append(f"{group}={value}")
        elif isinstance(value, Mapping):
            params = dict(value)
            if "name" in params:
                selections.append(f"{group}={params.pop('name')}")
            keys.update({f"{group}.{k}": v for k, v in params.items()})
        elif value is not None:
            objects[group] = value
    if (x is None) != (y is None):
        raise PurebenchError("give both x and y (images in [0, 1] and their labels), or neither.")
    if x is not None and dataset is not None:
        raise PurebenchError("give either a dataset or tensors x, y, not both.")
    if x is not None and "n_examples" not in settings and not any(o.startswith("n_examples=") for o in overrides):
        settings["n_examples"] = len(x)  # every image handed over
    with tempfile.TemporaryDirectory(prefix="purebench-") as scratch:
        out = Path(results_dir) if results_dir is not None else Path(scratch)
        cfg = compose_config([*selections, *overrides, f"results_dir={out}"])
        with open_dict(cfg):
            for key, value in {**keys, **settings}.items():
                OmegaConf.update(cfg, key, value, force_add=True)
        supplied = _supplied(cfg, objects, x, y)
        run = evaluate_run(cfg, supplied)
    return {**run["row"], "per_example": run["run_file"]["per_example"], "config": run["run_file"]["config"]}


def _supplied(cfg: DictConfig, objects: dict[str, Any], x: torch.Tensor | None, y: torch.Tensor | None) -> Any:
    """The runner's :class:`Supplied` for the objects given, with their config groups set to their labels."""
    from purebench.data import DATASETS
    from purebench.eval.runner import Supplied, group_params

    given = Supplied()
    if x is not None and y is not None:
        given.dataset = TensorDataset(x, y, _classes(cfg, objects.get("classifier"), x))
        digest = tensor_digest(given.dataset.x, given.dataset.y)
        cfg.dataset = OmegaConf.create({"name": "tensors", "sample": "first", "sha256": digest})
    if "classifier" in objects:
        if not isinstance(objects["classifier"], nn.Module):
            raise PurebenchError("classifier must be a registry name, a dict of its keys, or an nn.Module.")
        # built once here and handed to the runner, which would otherwise load it a second time
        given.dataset = given.dataset or DATASETS.build(cfg.dataset.name, **group_params(cfg.dataset, "sample"))
        given.classifier = as_classifier(objects["classifier"], given.dataset.num_classes)
        cfg.classifier = OmegaConf.create(_label(objects["classifier"]))
    for group, kind in (("defense", Defense), ("attack", Attack), ("threat", ThreatModel)):
        if group not in objects:
            continue
        value = objects[group]
        if group == "defense" and not isinstance(value, Defense):
            if not callable(value):
                raise PurebenchError("defense must be a registry name, a dict of its keys, a Defense or a callable.")
            value = FunctionDefense(value)
        if not isinstance(value, kind):
            raise PurebenchError(f"{group} must be a registry name, a dict of its keys, or a {kind.__name__}.")
        setattr(given, group, value)
        cfg[group] = OmegaConf.create(_label(value if group != "defense" else objects[group]))
    return given


def _classes(cfg: DictConfig, classifier: object, x: torch.Tensor) -> int:
    """The number of classes of tensors handed over: the classifier's (a named one's config, a
    module's logits on one image), so a subset without the last class still has all of them."""
    if isinstance(classifier, Classifier):
        return classifier.num_classes
    if isinstance(classifier, nn.Module):
        device = next(classifier.parameters(), torch.empty(0)).device
        with torch.no_grad():
            return int(classifier(x[:1].float().to(device)).shape[1])
    return int(cfg.classifier.num_classes)
