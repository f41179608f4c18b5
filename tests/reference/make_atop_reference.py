"""Reference outputs of the authors' AToP code (glin2022/atop) for tests/test_atop_reference.py.

Two parts, each run from their files in a fetched snapshot:

- Generator input of RT2 and RT1: the transform lines of the training loops of
  ``Finetuning-AToP/0..1 cifar-miss-gau-adv.ipynb`` (RT2, the logged notebook: a clean input x and an
  adversarial one from x') and ``Finetuning-AToP/cifar-miss-adv.ipynb`` (RT1), from
  ``batch_adv = atk1(batch_real, labels)`` to ``adv_x = torch.cat(...)``, are read from the notebook
  and executed as they stand on two CIFAR-10 test images resized by their ``transforms.Resize(256)``
  (torchvision on PIL images, as their data loader), with ``atk1`` replaced by a fixed Linf 8/255
  perturbation and their ``torch.normal`` / ``np.random.shuffle`` draws seeded. The npz keeps the
  mask they drew (8x8 blocks), and a 64x64 crop (2 x 2 blocks, hidden and kept) of their 256-px
  image, x', noise and generator inputs: the transform is per pixel, so the crop is enough.
- DeepFill stages: their ``model/networks.py`` ``Generator`` (in their repository; the module
  names and layout of nipponjo/deepfillv2-pytorch, whose older revision it is) at cnum 8 with
  purebench's generator weights loaded strictly (:func:`seeded_deepfill`), fed purebench's
  generator input of two 64-px images with a different RT2 mask each, one image per call (their
  contextual attention uses the first image's mask for the whole batch; purebench each image's own).

    python tests/reference/make_atop_reference.py --source DIR --commit SHA

DIR is a ``git archive`` (or checkout) of their repository at SHA; their code is imported or executed
from it, never copied. Needs torchvision and PIL. The npz holds numbers only, with the commit and the
SHA-256 of the source files used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from purebench.defenses.atop.deepfill import DeepFillGenerator
from purebench.defenses.atop.transforms import resize

NOTEBOOKS = {
    "rt2": "Finetuning-AToP/0..1 cifar-miss-gau-adv.ipynb",
    "rt1": "Finetuning-AToP/cifar-miss-adv.ipynb",
}
SOURCES = ("model/networks.py", *NOTEBOOKS.values())
SEED = 21
CNUM = 8  # DeepFill width of the stage comparison
SIZE = 64  # side of the DeepFill comparison's images (features 16 px, contextual attention at 8 px)
EPS = 8 / 255  # the code's FGSM budget; here a fixed sign pattern stands in for the attack
CROP = 64  # side of the stored crop of the 256-px transform outputs


def seeded_deepfill(cnum: int = CNUM, seed: int = SEED) -> DeepFillGenerator:
    """purebench's DeepFill generator with weights drawn from an explicit generator, so the test rebuilds them
    without storing them: uniform, He-scaled by fan-out as their ``_init_conv_layer`` and doubled, so the
    signal survives the gates (a sigmoid halves it per layer) and the contextual attention shapes the output
    (a softmax scale of 9 instead of 10 moves it by 3e-3); biases uniform +-0.1."""
    generator = DeepFillGenerator(cnum)
    draw = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(generator.named_parameters()):
            if name.endswith("weight"):
                bound = 2 * math.sqrt(6 / (p.shape[0] * p[0, 0].numel()))
                p.copy_((torch.rand(p.shape, generator=draw) * 2 - 1) * bound)
            else:
                p.copy_((torch.rand(p.shape, generator=draw) * 2 - 1) * 0.1)
    return generator.eval()


def deepfill_inputs(images: np.ndarray, blocks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, m) of the DeepFill comparison: the uint8 32-px images bilinearly resized to SIZE, one 8x8 block
    mask per image (1 = hidden, the code's convention) turned into purebench's m (1 = kept)."""
    x = resize(torch.from_numpy(images).float() / 255, SIZE)
    hidden = torch.from_numpy(blocks).float()[:, None]
    m = 1 - hidden.repeat_interleave(SIZE // 8, 2).repeat_interleave(SIZE // 8, 3)
    return m * x, m


def adversarial(x256: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    """x' standing in for their FGSM output: x + 8/255 * a random sign per pixel, clipped to [0, 1]."""
    signs = torch.randn(x256.shape, generator=torch.Generator().manual_seed(seed)).sign()
    return (x256 + EPS * signs).clamp(0, 1)


def _transform_lines(notebook: Path) -> str:
    """The notebook's transform lines, from the attack call to the adversarial generator input, dedented."""
    cells = json.loads(notebook.read_text())["cells"]
    code = "".join(next(c["source"] for c in cells if c["cell_type"] == "code" and "atk1 = " in "".join(c["source"])))
    lines = code.splitlines()
    start = next(i for i, line in enumerate(lines) if "batch_adv = atk1(batch_real, labels)" in line)
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("adv_x = torch.cat(") and i > start)
    return textwrap.dedent("\n".join(lines[start : end + 1]))


def _their_transform(notebook: Path, x256: torch.Tensor, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Execute their lines on the given images with seeded draws; returns their tensors after the lines ran."""
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    scope: dict[str, Any] = {
        "torch": torch, "np": np, "device": torch.device("cpu"), "batch_real": x256.clone(),
        "labels": torch.zeros(len(x256), dtype=torch.long), "atk1": lambda images, labels: x_adv.clone(),
        "gau_n": 0.25, "block_n": 32, "missing_rate": 0.25,
    }  # fmt: skip
    exec(compile(_transform_lines(notebook), str(notebook), "exec"), scope)  # their lines, run as they stand
    return scope


def _resize_256(images: np.ndarray) -> torch.Tensor:
    """Their data pipeline's ``transforms.Resize(256)`` and ``ToTensor()`` on PIL images."""
    from PIL import Image
    from torchvision import transforms

    pipeline = transforms.Compose([transforms.Resize(256), transforms.ToTensor()])
    return torch.stack([pipeline(Image.fromarray(image.transpose(1, 2, 0))) for image in images])


def _crop(t: torch.Tensor, top: int, left: int) -> np.ndarray:
    return t[..., top : top + CROP, left : left + CROP].numpy().astype(np.float32)


def make(source: Path, commit: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every array of the reference file."""
    out: dict[str, np.ndarray] = {"images32": images}
    x256 = _resize_256(images)
    x_adv = adversarial(x256)
    for kind, notebook in NOTEBOOKS.items():
        scope = _their_transform(source / notebook, x256, x_adv)
        blocks = scope["mask"][0, 0, ::32, ::32].numpy().astype(np.uint8)  # 1 = hidden, one mask per batch
        rows, cols = np.nonzero(blocks[:-1, :-1] + blocks[1:, 1:] == 1)  # a 2x2 block window, hidden and kept
        top, left = 32 * int(rows[0]), 32 * int(cols[0])
        out[f"{kind}/blocks"], out[f"{kind}/crop"] = blocks, np.array([top, left])
        out[f"{kind}/image"], out[f"{kind}/adv"] = _crop(x256, top, left), _crop(x_adv, top, left)
        out[f"{kind}/x"], out[f"{kind}/adv_x"] = _crop(scope["x"], top, left), _crop(scope["adv_x"], top, left)
        if kind == "rt2":
            out[f"{kind}/noise"] = _crop(scope["gau_noise"] / scope["gau_n"], top, left)  # standard normal
    sys.path.insert(0, str(source))
    from model.networks import Generator  # their repository's DeepFill v2 generator

    ours = seeded_deepfill()
    theirs = Generator(cnum_in=5, cnum=CNUM, return_flow=False, checkpoint=None)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    blocks = np.stack([np.random.default_rng(SEED + i).permutation(64).reshape(8, 8) < 16 for i in range(2)])
    x_t, m = deepfill_inputs(images, blocks.astype(np.uint8))
    with torch.no_grad():
        stages = [theirs(*ours.generator_input(x_t[i : i + 1], m[i : i + 1])) for i in range(len(x_t))]
    out["deepfill/blocks"] = blocks.astype(np.uint8)
    out["deepfill/coarse"] = torch.cat([s[0] for s in stages]).numpy()  # [-1, 1], as their generator returns
    out["deepfill/refined"] = torch.cat([s[1] for s in stages]).numpy()
    out["commit"] = np.array(commit)
    out["sources_sha256"] = np.array(
        [f"{name}:{hashlib.sha256((source / name).read_bytes()).hexdigest()}" for name in SOURCES]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="their repository at --commit (git archive)")
    parser.add_argument("--commit", required=True, help="the snapshot's commit, recorded in the npz")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "atop_reference.npz")
    parser.add_argument("--data", default=os.environ.get("PUREBENCH_DATA", "data"), help="CIFAR-10 root")
    args = parser.parse_args()
    from purebench.data import DATASETS

    images, _ = DATASETS.build("cifar10", root=args.data, split="test").load([0, 1])  # real texture to resize
    arrays = make(args.source, args.commit, (images.numpy() * 255).round().astype(np.uint8))
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB, commit {args.commit}")


if __name__ == "__main__":
    main()
