"""Classical operators on kornia and the non-learned floors of AToP and IMPure."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from purebench.defenses import DEFENSES
from purebench.defenses.blur_ops import gaussian_blur, median_blur, normalized_fill
from purebench.seeding import per_example


def _reference_gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The separable reflect-padded Gaussian purebench wrote by hand before it used kornia."""
    k = 2 * math.ceil(3 * sigma) + 1
    coords = torch.arange(k, dtype=x.dtype) - (k - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c, pad = x.shape[1], k // 2
    out = F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), kernel.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(out, kernel.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _reference_median(x: torch.Tensor, k: int) -> torch.Tensor:
    patches = F.pad(x, (k // 2,) * 4, mode="reflect").unfold(2, k, 1).unfold(3, k, 1)
    return patches.reshape(*patches.shape[:4], -1).median(dim=-1).values


@pytest.mark.parametrize(
    ("operator", "reference", "level"),
    [(gaussian_blur, _reference_gaussian, 0.6), (gaussian_blur, _reference_gaussian, 1.8),
     (median_blur, _reference_median, 3), (median_blur, _reference_median, 7)],
)  # fmt: skip
def test_kornia_filters_equal_the_hand_written_ones_values_and_gradients(operator, reference, level):
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    ours, ref = operator(x, level), reference(x, level)
    assert torch.allclose(ours, ref, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.pow(2).sum(), x)
    (g_ref,) = torch.autograd.grad(ref.pow(2).sum(), x)
    assert torch.allclose(g_ours, g_ref, atol=1e-12)


def test_normalized_fill_keeps_visible_pixels_and_fills_every_hole():
    x = torch.rand(2, 3, 32, 32)
    keep = torch.ones(2, 1, 32, 32)
    keep[:, :, 4:20, 8:24] = 0  # a 16-px hole: needs the widened kernel
    filled = normalized_fill(x * keep, keep, 1.0)
    assert torch.equal(filled * keep, x * keep)
    hole = filled[(1 - keep).bool().expand_as(filled)]
    assert hole.min() > 0.05 and abs(hole.mean() - 0.5) < 0.05  # averages of the surrounding U[0,1] pixels, no zeros


def test_impure_floor_rebuilds_each_subset_from_the_others_only():
    floor = DEFENSES.build("impure_floor", classifier=None, patch_size=4, subsets=4, fill_sigma=0.75)
    x = torch.rand(2, 3, 32, 32)
    lattice = torch.arange(32) // 4 % 2 == 0  # rows / columns 0-3 of every 8: lattice subset 0
    subset0 = (lattice[:, None] & lattice[None, :]).float()
    changed = x + subset0 * torch.rand_like(x)
    assert not floor.randomized
    out, out_changed = floor.purify(x), floor.purify(changed)
    assert torch.allclose(out * subset0, out_changed * subset0, atol=1e-6)  # own pixels never used
    assert not torch.allclose(out * (1 - subset0), out_changed * (1 - subset0))


def test_atop_floor_is_randomized_per_example_and_in_range():
    floor = DEFENSES.build(
        "atop_floor", classifier=None, transform="rt2", sigma=0.25, grid=8, missing_rate=0.25, n_masks=4,
        work_size=256, purifier_size=32, fill_sigma=1.0, denoise_sigma=0.5,
    )  # fmt: skip
    x = torch.rand(3, 3, 32, 32)
    with per_example(0, range(3)):
        a = floor.purify(x)
    with per_example(0, [1]):
        alone = floor.purify(x[1:2])
    assert floor.randomized and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.allclose(a[1:2], alone, atol=1e-6) and not torch.equal(floor.purify(x), floor.purify(x))


@pytest.mark.parametrize(("defense", "at_least"), [("atop_floor", 45), ("impure_floor", 40)])
def test_floors_keep_most_of_the_clean_accuracy_on_real_images(resnet20_batch, defense, at_least):
    """Measured on 256 images: atop_floor SA 61, impure_floor 54 (results/README); the blank image would be 10."""
    from omegaconf import OmegaConf

    from purebench.config_paths import CONF_DIR

    classifier, x, y = resnet20_batch
    params = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "defense" / f"{defense}.yaml"))
    floor = DEFENSES.build(params.pop("name"), classifier=classifier, **params)
    with per_example(0, range(64)), torch.no_grad():
        sa = (classifier(floor.purify(x)).argmax(1) == y).float().mean().item()
    assert sa * 100 >= at_least
