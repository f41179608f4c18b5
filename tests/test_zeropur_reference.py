"""ZeroPur against the authors' code: outputs of their implementation on the same images and weights.

tests/reference/zeropur_reference.npz was produced by tests/reference/make_zeropur_reference.py, which
runs erhul/ZeroPur's ``ZeroPur`` (HEAD zeropur.py with the helpers of commit 0fd2509) on purebench's
resnet20 and 8 PGD-10 adversarial CIFAR-10 images with the code's settings. purebench with the same
settings must give the same Guided Shift and GS+AP outputs; the paper's mean over S must not.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from purebench.classifiers import CLASSIFIERS
from purebench.defenses.blur_ops import pil_gaussian_blur
from purebench.seeding import per_example

REFERENCE = Path(__file__).parent / "reference" / "zeropur_reference.npz"
CODE_SETTINGS = {"blur": "pil_gaussian", "blur_level": 1.8, "gs_random_start": False}  # the rest are the defaults


@pytest.fixture(scope="module")
def reference(data_root):
    ref = np.load(REFERENCE)
    assert str(ref["helpers_commit"]).startswith("0fd2509")
    return CLASSIFIERS.build("resnet20"), {
        k: torch.from_numpy(ref[k]) for k in ("x_adv", "labels", "blurred", "gs", "gsap")
    }


def _purify(defense, x):
    with per_example(0, range(len(x))), torch.no_grad():
        return defense.guided_shift(x), defense.purify(x)


def test_pil_blur_equals_their_weak_transform(reference):
    _, ref = reference
    assert torch.equal(pil_gaussian_blur(ref["x_adv"], 1.8), ref["blurred"])


def test_guided_shift_and_projection_equal_the_authors_code(reference, zeropur):
    model, ref = reference
    gs, gsap = _purify(zeropur(model, **CODE_SETTINGS), ref["x_adv"])
    assert (gs - ref["gs"]).abs().max() <= 1e-6
    assert (gsap - ref["gsap"]).abs().max() <= 1e-6
    assert (model(gsap).argmax(1) == ref["labels"]).sum() >= 4  # their code purifies half of these 8


def test_paper_mean_over_layers_is_not_the_code(reference, zeropur):
    """Eq. 15/18's division by |S| halves lambda1's effective weight: a different purifier (the old default)."""
    model, ref = reference
    _, gsap = _purify(zeropur(model, ap_layer_mean=True, **CODE_SETTINGS), ref["x_adv"])
    assert (gsap - ref["gsap"]).abs().max() > 0.01
