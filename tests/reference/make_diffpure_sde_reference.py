"""Reference outputs of the authors' DiffPure SDE path (NVlabs/DiffPure) for tests/test_diffpure_sde.py.

Runs their ``RevGuidedDiffusion.image_editing_sample`` (``runners/diffpure_sde.py``: forward noise to
``--t 100`` on their discrete betas, then ``torchsde.sdeint_adjoint`` with method 'euler' and torchsde's
default dt from their t0 = 1 - t/1000 to t1 = 1 - 1e-5, on their ``RevVPSDE``) with purebench's shipped
network ``results/checkpoints/diffpure_small`` on the first real CIFAR-10 test images, mapped to [-1, 1]
as their ``SDE_Adv_Model`` does. The network enters through their score type ``guided_diffusion``, their
adapter for a discrete noise-predicting network (integer labels floor(tN), score -eps / sqrt(1 - abar(t))).
Their CIFAR-10 runs used ``score_sde``, the adapter of their continuous-time NCSN++ (real-valued labels
t * 999); the drift, diffusion, time grid and noise of both are the same code.

What is substituted, and nothing else:

* their ``__init__`` loads their own checkpoints; the script sets the attributes it sets (``args``,
  ``model``, ``rev_vpsde``, ``betas``) with purebench's network, wrapped to answer in the layout of their
  learned-sigma guided-diffusion model (eps, then variance channels their adapter splits off and drops);
* the randomness: ``torch.randn_like`` (their forward noise) returns purebench's per-example draw, and
  ``torchsde.BrownianInterval`` (built by their code with ``--use_bm``; without it torchsde builds the same
  interval itself) is a path returning sqrt(tb - ta) z_k on the k-th solver step, z_k purebench's k-th
  per-step draw. The draws are those of ``purebench.seeding.generators(SEED, indices, "defense")``: per
  example the forward noise, then one N(0, I) image per Euler step;
* ``score_sde.op`` (NCSN++'s CUDA kernels, compiled when imported, unused on this path) is stubbed.

    PUREBENCH_DATA=... python tests/reference/make_diffpure_sde_reference.py --source DIR --commit SHA

DIR is a checkout of NVlabs/DiffPure. Their code is imported from DIR and never copied; the npz holds
numbers only, with the commit and the SHA-256 of the source files used.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torchsde
from torch import nn

from purebench.data import DATASETS
from purebench.defenses.diffpure import load_diffusion
from purebench.seeding import generators

SOURCES = ("runners/diffpure_sde.py", "score_sde/sde_lib.py", "score_sde/models/utils.py")
MODEL = "results/checkpoints/diffpure_small"
N_IMAGES, SEED, STREAM, T = 4, 0, "defense", 100  # T: their --t of the CIFAR-10 scripts


class LearnedSigmaLayout(nn.Module):
    """purebench's eps network answering as their guided-diffusion model: eps, then variance channels."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet, self.labels = unet, []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.labels.append(t[0].item())
        eps = self.unet(x, t).sample
        return torch.cat([eps, torch.zeros_like(eps)], 1)


class Replayed(torchsde.BaseBrownian):
    """The k-th query returns sqrt(tb - ta) z_k: increments of variance tb - ta from pre-drawn normals."""

    def __init__(self, normals: torch.Tensor) -> None:
        self.normals, self.queries = normals, []

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        self.queries.append((ta, tb))
        return (tb - ta).sqrt() * self.normals[len(self.queries) - 1]

    def __repr__(self) -> str:
        return "Replayed()"

    dtype, device, levy_area_approximation = torch.float32, torch.device("cpu"), "none"

    @property
    def shape(self) -> torch.Size:
        return self.normals.shape[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a checkout of NVlabs/DiffPure")
    parser.add_argument("--commit", required=True, help="its commit")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("diffpure_sde_reference.npz"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    stub = types.ModuleType("score_sde.op")  # NCSN++'s CUDA kernels, compiled when imported, unused here
    stub.upfirdn2d = None
    sys.modules["score_sde.op"] = stub
    sys.path.insert(0, str(args.source))
    theirs = importlib.import_module("runners.diffpure_sde")

    unet, alphas_cumprod = load_diffusion(MODEL)
    indices = list(range(N_IMAGES))
    x, labels = DATASETS.build("cifar10", root=os.environ["PUREBENCH_DATA"]).load(indices)
    model = LearnedSigmaLayout(unet.requires_grad_(False))
    runner = theirs.RevGuidedDiffusion.__new__(theirs.RevGuidedDiffusion)
    nn.Module.__init__(runner)
    runner.args = SimpleNamespace(t=T, rand_t=False, t_delta=0, sample_step=1, use_bm=True, log_dir="unused")
    runner.device, runner.model = torch.device("cpu"), model
    runner.rev_vpsde = theirs.RevVPSDE(model=model, score_type="guided_diffusion", img_shape=(3, 32, 32))
    runner.betas = runner.rev_vpsde.discrete_betas.float()
    assert torch.equal((1 - runner.betas).cumprod(0), alphas_cumprod), "their discrete schedule is the network's"

    draws = []
    for g in generators(SEED, indices, STREAM):  # per example: the forward noise, then one image per step
        draws.append(torch.stack([torch.randn(x.shape[1:], generator=g) for _ in range(T + 1)]))
    draws = torch.stack(draws, 1)  # (1 + steps, batch, C, H, W)
    brownian = Replayed(draws[1:].flatten(2))
    forward_noise = iter([draws[0]])
    randn_like, interval = torch.randn_like, torchsde.BrownianInterval
    torch.randn_like = lambda _x: next(forward_noise)  # their only call: the forward noise
    torchsde.BrownianInterval = lambda **_: brownian
    try:
        with torch.no_grad():
            out = runner.image_editing_sample((x - 0.5) * 2, bs_id=2)  # bs_id >= 2: no images written
    finally:
        torch.randn_like, torchsde.BrownianInterval = randn_like, interval
    grid = torch.stack([brownian.queries[0][0], *(tb for _, tb in brownian.queries)])
    assert len(brownian.queries) == T, f"{len(brownian.queries)} Euler steps, expected {T}"

    np.savez_compressed(
        args.out,
        x=x.numpy(),
        labels=labels.numpy(),
        indices=np.array(indices),
        seed=SEED,
        stream=STREAM,
        out=out.numpy(),  # their output in [-1, 1], unclamped (their classifier gets (out + 1) / 2)
        grid=grid.numpy(),  # torchsde's times s = 1 - t of the Euler steps
        network_labels=np.array(model.labels[1:]),  # the first call is torchsde's shape check at t0
        draws_sum=draws.double().sum((0, 2, 3, 4)).numpy(),  # per example, to recognise the same draws
        commit=args.commit,
        sources=np.array([f"{s} sha256={hashlib.sha256((args.source / s).read_bytes()).hexdigest()}" for s in SOURCES]),
        torch_version=torch.__version__,
        torchsde_version=torchsde.__version__,
    )
    print(f"wrote {args.out}: {T} steps, labels {model.labels[1]}..{model.labels[-1]}")


if __name__ == "__main__":
    main()
