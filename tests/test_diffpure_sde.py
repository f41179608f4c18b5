"""DiffPure's ``sde`` sampler (the authors' CIFAR-10 path): the authors' code, seeding, and its three gradients.

tests/reference/diffpure_sde_reference.npz was produced by tests/reference/make_diffpure_sde_reference.py, which
runs NVlabs/DiffPure's ``RevGuidedDiffusion.image_editing_sample`` (runners/diffpure_sde.py at 985703f) with
purebench's shipped network on 4 real CIFAR-10 images and purebench's per-example draws. purebench on the same
images and draws must give the same purified images; a network label one lower or the DDPM posterior's variance
instead of beta(t) dt must not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import test_diffpure
import torch
from diffusers import DDPMScheduler
from test_diffpure import _defense, _input_gradient, _saved_bytes
from torch import nn

from purebench.defenses import diffpure
from purebench.defenses.diffpure import DiffPure, ReplayedBrownian, ReverseVPSDE, load_diffusion
from purebench.errors import PurebenchError
from purebench.seeding import per_example

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).parent / "reference" / "diffpure_sde_reference.npz"
TOLERANCE = 1e-5  # float32 rounding of the same arithmetic written two ways; measured 1.2e-7
tiny_model = test_diffpure.tiny_model  # the fixture: an untrained tiny UNet2DModel folder


class Labelled(nn.Module):
    """The network, recording the timestep labels it is fed and feeding it those shifted by ``offset``."""

    def __init__(self, unet: nn.Module, offset: int = 0) -> None:
        super().__init__()
        self.unet, self.offset, self.labels = unet, offset, []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> object:
        self.labels.append(int(t[0]))
        return self.unet(x, t + self.offset)


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, np.ndarray], nn.Module, torch.Tensor]:
    ref = dict(np.load(REFERENCE))
    assert str(ref["commit"]).startswith("985703f")
    unet, alphas_cumprod = load_diffusion(str(REPO / "results" / "checkpoints" / "diffpure_small"))
    return ref, unet.requires_grad_(False), alphas_cumprod


def _sde(unet: nn.Module, alphas_cumprod: torch.Tensor, **overrides: object) -> DiffPure:
    params = {"t_star": 0.1, "sampler": "sde", "steps": None, "eta": 0.0, "clip_denoised": True,
              "grad_checkpoint": True, "adjoint": False, **overrides}  # fmt: skip
    return DiffPure(unet, alphas_cumprod, **params)


def _purify_reference(defense: DiffPure, ref: dict[str, np.ndarray], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """purebench's purification of the first ``n`` reference images with their draws, and the authors' (clamped)."""
    with per_example(int(ref["seed"]), ref["indices"][:n].tolist(), str(ref["stream"])):
        ours = defense.purify(torch.from_numpy(ref["x"][:n]))
    return ours, ((torch.from_numpy(ref["out"][:n]) + 1) / 2).clamp(0, 1)


def test_the_sde_sampler_equals_the_authors_code(reference):
    ref, unet, alphas_cumprod = reference
    network = Labelled(unet)
    defense = _sde(network, alphas_cumprod)
    assert torch.equal(defense.grid, torch.from_numpy(ref["grid"]))  # torchsde's 100 Euler times, 0.9 .. 0.99999
    x = torch.from_numpy(ref["x"])
    with per_example(int(ref["seed"]), ref["indices"].tolist(), str(ref["stream"])):
        forward_noise, noises = defense._draws(x)
    draws_sum = torch.stack([forward_noise, *noises]).double().sum((0, 2, 3, 4))
    assert np.allclose(draws_sum.numpy(), ref["draws_sum"], rtol=1e-9, atol=0)  # the draws they were given
    ours, theirs = _purify_reference(defense, ref, len(x))
    assert (ours - theirs).abs().max() <= TOLERANCE
    assert network.labels[1:] == ref["network_labels"].tolist() == list(range(100, 0, -1))  # [0]: shape check


def _posterior_variance(g: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``g`` scaled to the DDPM posterior's variance beta~ = beta (1 - abar(t - dt)) / (1 - abar(t)) per step."""

    def scaled(self: ReverseVPSDE, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t, dt, spread = 1 - s, diffpure.SDE_DT, diffpure.BETA_MAX - diffpure.BETA_MIN
        abar = torch.exp(-0.5 * spread * t**2 - diffpure.BETA_MIN * t)
        abar_prev = torch.exp(-0.5 * spread * (t - dt) ** 2 - diffpure.BETA_MIN * (t - dt))
        return g(self, s, y) * ((1 - abar_prev) / (1 - abar)).sqrt()

    return scaled


@pytest.mark.parametrize("change", ["network label one lower", "posterior variance"])
def test_the_reference_catches_a_wrong_label_or_variance(reference, monkeypatch, change):
    ref, unet, alphas_cumprod = reference
    if change == "posterior variance":
        monkeypatch.setattr(ReverseVPSDE, "g", _posterior_variance(ReverseVPSDE.g))
    defense = _sde(Labelled(unet, offset=-1) if change.startswith("network") else unet, alphas_cumprod)
    ours, theirs = _purify_reference(defense, ref, 2)
    assert (ours - theirs).abs().max() > 100 * TOLERANCE


def test_the_replayed_path_gives_its_increments_and_is_linear_between_them():
    grid, increments = torch.tensor([0.0, 0.5, 1.0]), torch.randn(2, 3, 4)
    bm = ReplayedBrownian(grid, increments)
    assert torch.equal(bm(grid[0], grid[1]), increments[0]) and torch.equal(bm(grid[1], grid[2]), increments[1])
    assert torch.allclose(bm(torch.tensor(0.25), torch.tensor(0.75)), (increments[0] + increments[1]) / 2)
    assert torch.allclose(bm(torch.tensor(1.0)), increments.sum(0)) and bm.shape == (3, 4)


@pytest.mark.parametrize("backprop_steps", [None, 3])
def test_the_checkpointed_sde_gradient_equals_the_unrolled_one(tiny_model, backprop_steps):
    x = torch.rand(2, 3, 8, 8)
    naive = _input_gradient(_defense(tiny_model, sampler="sde", steps=8, grad_checkpoint=False), x, backprop_steps)
    checkpointed = _input_gradient(_defense(tiny_model, sampler="sde", steps=8), x, backprop_steps)
    assert naive.abs().max() > 0 and torch.equal(naive, checkpointed)
    if backprop_steps is not None:  # truncation changes the gradient (bridged steps are straight-through)
        full = _input_gradient(_defense(tiny_model, sampler="sde", steps=8, grad_checkpoint=False), x, None)
        assert not torch.equal(naive, full)


def test_the_adjoint_gradient_converges_to_the_unrolled_one_at_first_order(tiny_model):
    """The adjoint solves the SDE backwards (Euler-Maruyama forwards, torchsde's Milstein backwards, the same
    here since the noise does not depend on the state) and takes each step's Jacobian at the other end of the
    step: its error is O(dt), not rounding. Measured relative errors: 0.13 at 20 steps, 0.030 at 100."""
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = {}
    for steps in (20, 100):
        exact = _input_gradient(_defense(tiny_model, sampler="sde", steps=steps), x, None)
        adjoint = _input_gradient(_defense(tiny_model, sampler="sde", steps=steps, adjoint=True), x, None)
        errors[steps] = ((adjoint - exact).norm() / exact.norm()).item()
    assert errors[20] < 0.3 and errors[100] < 0.06 and errors[100] < errors[20] / 3, errors
    truncated = _input_gradient(_defense(tiny_model, sampler="sde", steps=20, adjoint=True), x, 5)
    assert truncated.abs().max() > 0  # the adjoint over the last 5 steps, the first 15 bridged straight-through


def test_checkpointed_and_adjoint_memory_stay_flat_in_the_number_of_steps(tiny_model):
    x = torch.rand(2, 3, 8, 8)
    modes = {"naive": {"grad_checkpoint": False}, "checkpoint": {}, "adjoint": {"adjoint": True}}
    saved = {(steps, mode): _saved_bytes(_defense(tiny_model, sampler="sde", steps=steps, **modes[mode]), x)
             for steps in (5, 20) for mode in modes}  # fmt: skip
    assert saved[(20, "naive")] > 3.4 * saved[(5, "naive")]  # grows with the steps (21 vs 6 network calls: +1
    # is torchsde's shape check, whose graph is dropped at once)
    assert saved[(20, "checkpoint")] < 0.1 * saved[(20, "naive")]
    assert saved[(20, "checkpoint")] < 5 * saved[(5, "checkpoint")]  # only each step's inputs are kept
    # the adjoint keeps the end states only (and, briefly, the graph of the shape check's one network call)
    assert saved[(20, "adjoint")] <= saved[(5, "adjoint")] < 0.25 * saved[(5, "naive")]


def test_settings_the_sde_cannot_run_fail_with_what_to_do(reference):
    _, unet, alphas_cumprod = reference
    with pytest.raises(PurebenchError, match=r"defense.sampler=sde, or defense.adjoint=false"):
        _sde(unet, alphas_cumprod, sampler="ddpm", adjoint=True)
    cosine = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    with pytest.raises(PurebenchError, match=r"Use defense.sampler=ddpm"):
        _sde(unet, cosine)
    with pytest.raises(PurebenchError, match=r"defense.steps must be null"):
        _sde(unet, alphas_cumprod, steps=0)
