"""IMPure: Information Mask Purification (impure.txt, Sec. 3.2): x_hat = RIAE(x_adv) (Eq. 11).

At test time the division is uniform by default (Sec. 5.3) and the noise of the information
masking has a fixed intensity (image noise t=400, feature noise t=600; authors' code), with fresh
noise on every call: unless masking is ``occlusion`` with a uniform division, the defense is
randomized and every threat model applies EOT and repeated evaluation. Train with
``python -m purebench.train defense=impure``.
"""

from __future__ import annotations

from typing import Any

import torch

from purebench.classifiers import Classifier
from purebench.classifiers.checkpoints import load_weights
from purebench.defenses.base import DEFENSES, Defense
from purebench.defenses.impure.riae import RIAE
from purebench.errors import PurebenchError


class IMPure(Defense):
    trainable = True
    differentiable = True

    def __init__(self, riae: RIAE, division: str, masking: str, t_image: int, t_feature: int) -> None:
        super().__init__()
        self.riae, self.division, self.masking = riae, division, masking
        self.t_image, self.t_feature = t_image, t_feature
        self.randomized = masking != "occlusion" or division == "random"

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return self.riae(
            x,
            self.riae.division(x, self.division),
            self.masking,
            torch.full((b,), self.t_image),
            torch.full((b,), self.t_feature),
        )


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
    return IMPure(riae.eval(), division, masking, t_image, t_feature)
