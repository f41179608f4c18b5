"""AToP: Adversarial Training on Purification (Lin et al.): random transforms + a generative purifier.

``purify(x)`` = RT(x) -> g -> x_hat (Eq. 1-4), the transform at the authors' 256-px working size
and x_hat area-resized back to the classifier's input. The purifier g is a DeepFill v2 GAN, a
masked autoencoder or (not in the paper; the CPU-scale purifier) a small U-Net, trained by ``python -m purebench.train`` (pretraining on L_org, then AToP fine-tuning
with L_org + lambda * CE through the frozen classifier, Eq. 5 and 9). The transforms are random
at test time, so the defense declares itself randomized: every threat model then applies EOT and
the runner's repeated evaluation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from purebench.classifiers import Classifier
from purebench.classifiers.checkpoints import load_weights
from purebench.defenses.atop.deepfill import DeepFillGenerator
from purebench.defenses.atop.mae import MAEPurifier
from purebench.defenses.atop.transforms import RandomTransform, resize
from purebench.defenses.atop.unet import UNetPurifier
from purebench.defenses.base import DEFENSES, Defense
from purebench.errors import PurebenchError

PURIFIERS = ("deepfill", "mae", "unet")


def build_purifier(kind: str, image_size: int, blocks: dict[str, dict[str, Any]]) -> nn.Module:
    """The purifier network named by ``defense.purifier`` with its block of the config (``blocks[kind]``)."""
    if kind == "deepfill":
        return DeepFillGenerator(**blocks["deepfill"])
    if kind == "mae":
        return MAEPurifier(image_size=image_size, **blocks["mae"])
    if kind == "unet":
        return UNetPurifier(**blocks["unet"])
    raise PurebenchError(f"defense.purifier must be one of {', '.join(PURIFIERS)}, got '{kind}'.")


class AToP(Defense):
    randomized = True  # the transform draws masks and noise on every call
    differentiable = True
    trainable = True

    def __init__(self, transform: RandomTransform, purifier: nn.Module) -> None:
        super().__init__()
        self.transform, self.purifier = transform, purifier

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        views = self.transform.views(x)
        generated = [self.purifier(x_t, m) for x_t, m in views]
        return resize(self.transform.combine(views, generated), x.shape[-1]).clamp(0, 1)


def load_purifier(purifier: nn.Module, checkpoint: str) -> None:
    """Load trained weights: a purebench training checkpoint, a public DeepFill v2 file (its ``G``), or a
    fine-tuned file of the authors' notebooks, whose ``G`` holds their whole model (`misc.save_states` of
    `Model_g`): the DeepFill generator under ``generator.`` and their ResNet-18 under ``res.``, which is
    not loaded (the classifier is purebench's ``classifier``), as their evaluate.ipynb does."""
    load_weights(
        purifier,
        checkpoint,
        hint="Set defense.purifier and its width (deepfill.cnum, mae.*, unet.*) to those the purifier was trained "
        "with. A file with 'generator.*' and 'res.*' keys is the authors' fine-tuned AToP model (DeepFill v2 "
        "generator and their ResNet-18): it needs defense.purifier=deepfill and the cnum it was trained with "
        "(48 in their notebooks).",
        prefix="generator." if isinstance(purifier, DeepFillGenerator) else "",
    )


@DEFENSES.register("atop")
def atop(
    name: str,
    classifier: Classifier,
    transform: str,
    purifier: str,
    checkpoint: str | None,
    sigma: float,
    grid: int,
    missing_rate: float,
    n_masks: int,
    work_size: int,
    purifier_size: int | None,
    deepfill: dict[str, Any],
    mae: dict[str, Any],
    unet: dict[str, Any],
) -> Defense:
    """AToP with a trained purifier (``defense.checkpoint``); see conf/defense/atop.yaml."""
    transform_ = RandomTransform(transform, sigma, grid, missing_rate, n_masks, work_size, purifier_size)
    network = build_purifier(purifier, transform_.purifier_size, {"deepfill": deepfill, "mae": mae, "unet": unet})
    if checkpoint is None:
        raise PurebenchError(
            "defense=atop needs a trained purifier: train one with `python -m purebench.train defense=atop "
            f"defense.purifier={purifier} defense.transform={transform} train.stage=pretrain train.out=PATH` "
            "(then train.stage=finetune train.init=PATH train.out=PATH2) and pass defense.checkpoint=PATH2."
        )
    load_purifier(network, checkpoint)
    return AToP(transform_, network.eval())
