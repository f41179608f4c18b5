"""IMPure: Information Mask Purification (impure.txt, Sec. 3.2): x_hat = RIAE(x_adv) (Eq. 11).

At test time the division is uniform by default (Sec. 5.3) and the noise of the information
masking has a fixed intensity (image noise t=400, feature noise t=600; authors' code), with fresh
noise on every call: unless masking is ``occlusion`` with a uniform division, the defense is
randomized and every threat model applies EOT and repeated evaluation. ``eval_pad`` reproduces the
authors' evaluation of ResNet classifiers (``--val_preprocess``: the purified image zero-padded
and resized back to the input size before classification). Train with
``python -m purebench.train defense=impure`` (clean-image pretraining, then adversarial fine-tuning).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from purebench.classifiers import Classifier
from purebench.classifiers.checkpoints import load_weights
from purebench.defenses.base import DEFENSES, Defense
from purebench.defenses.impure.riae import RIAE
from purebench.errors import PurebenchError


class IMPure(Defense):
    trainable = True
    differentiable = True

    def __init__(
        self, riae: RIAE, division: str, masking: str, t_image: int, t_feature: int, eval_pad: int = 0
    ) -> None:
        super().__init__()
        self.riae, self.division, self.masking = riae, division, masking
        self.t_image, self.t_feature, self.eval_pad = t_image, t_feature, eval_pad
        self.randomized = masking != "occlusion" or division == "random"

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        purified = self.riae(
            x,
            self.riae.division(x, self.division),
            self.masking,
            torch.full((b,), self.t_image),
            torch.full((b,), self.t_feature),
        )
        if not self.eval_pad:
            return purified
        padded = F.pad(purified, (self.eval_pad,) * 4)  # code: transforms.Pad (zeros), then Resize (bilinear)
        return F.interpolate(padded, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False).clamp(0, 1)


def build_riae(image_size: int, model: dict[str, Any]) -> RIAE:
    return RIAE(image_size=image_size, **model)


@DEFENSES.register("impure")
def impure(
    name: str,
    classifier: Classifier,
    checkpoint: str | None,
    image_size: int,
    model: dict[str, Any],
    division: str,
    masking: str,
    t_image: int,
    t_feature: int,
    eval_pad: int,
) -> Defense:
    """IMPure with a trained RIAE (``defense.checkpoint``); see conf/defense/impure.yaml."""
    riae = build_riae(image_size, model)
    if checkpoint is None:
        raise PurebenchError(
            "defense=impure needs a trained RIAE: train one with `python -m purebench.train defense=impure "
            "train.out=PATH` (it builds the adversarial-example cache first) and pass defense.checkpoint=PATH."
        )
    load_weights(
        riae, checkpoint, hint="Set defense.model.* and defense.image_size to those the RIAE was trained with."
    )
    return IMPure(riae.eval(), division, masking, t_image, t_feature, eval_pad)
