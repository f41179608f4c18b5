"""Reference outputs of the authors' IMPure RIAE (NoWindButRain/IMPure) for tests/test_impure_reference.py.

Builds their ``RCMaskedMFFIntersectionDMaskedAutoencoderViT`` (recon_model/MAE/RCMMFFDMAE.py) at a
small size (16-px images, 4-px patches, 4 chunks, width 32, 3 encoder blocks fused at [0, 1], 2
decoder blocks, LayerNorm eps 1e-6, ``pre_norm`` and ``use_conv`` as their demo and scripts), with
their own initialisation and then every weight perturbed (so biases and norms are exercised by the
mapping), and runs its ``forward`` on seeded uniform images for the four information maskings in
eval mode (test-time noise steps 400/600, the centred position window) and for image+feature noise
in training mode (noise steps drawn per image and per chunk, a random position window per image).
Each run records what their code drew: the patch permutation (``ids_restore``), the Gaussian
noise, the noise steps and the position rows (``get_index_pos``), so purebench can be fed the same.

    python tests/reference/make_impure_reference.py --source DIR --commit SHA

DIR is a checkout (or ``git archive``) of the repository at SHA; their code is imported from it and
never copied. Needs timm and torchvision. The npz holds numbers only: inputs, their weights, the
draws and their outputs, with the commit and the SHA-256 of the source files used.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
import types
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SOURCES = ("recon_model/MAE/RCMMFFDMAE.py", "recon_model/MAE/util/pos_embed.py", "dataset/transforms.py")
SIZE = {
    "img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 3, "num_heads": 4, "decoder_embed_dim": 32,
    "decoder_depth": 2, "decoder_num_heads": 4, "chunks": 4, "out_indices": [0, 1],
}  # fmt: skip
MASKINGS = {  # purebench masking -> the code's (img_mask, feature_mask)
    "occlusion": ("mask", "mask"), "image_noise": ("noise", "mask"),
    "feature_noise": ("mask", "noise"), "image_feature_noise": ("noise", "noise"),
}  # fmt: skip
N_IMAGES = 3


def import_authors(source: Path) -> types.ModuleType:
    """Their model module, with its packages registered bare: the package ``__init__`` files import
    the webdataset pipeline and their other models, which the model file never uses."""
    sys.path.insert(0, str(source))
    for package in ("dataset", "recon_model", "recon_model.MAE", "recon_model.MAE.util"):
        module = types.ModuleType(package)
        module.__path__ = [str(source / package.replace(".", "/"))]
        sys.modules[package] = module
    return importlib.import_module("recon_model.MAE.RCMMFFDMAE")


class Recorder:
    """Wraps torch.randn_like / torch.randint while their forward runs and keeps every draw."""

    def __init__(self) -> None:
        self.normal: list[torch.Tensor] = []
        self.integers: list[torch.Tensor] = []

    def __enter__(self) -> Recorder:
        self._randn_like, self._randint = torch.randn_like, torch.randint
        torch.randn_like = lambda *a, **k: self._keep(self.normal, self._randn_like(*a, **k))
        torch.randint = lambda *a, **k: self._keep(self.integers, self._randint(*a, **k))
        return self

    @staticmethod
    def _keep(store: list[torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        store.append(value.clone())
        return value

    def __exit__(self, *exc: object) -> None:
        torch.randn_like, torch.randint = self._randn_like, self._randint


def run_case(module: types.ModuleType, weights: dict[str, torch.Tensor], masking: str, train: bool,
             x: torch.Tensor, seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    """One forward of their model; returns its output and every draw, keyed for the test."""
    img_mask, feature_mask = MASKINGS[masking]
    model = module.RCMaskedMFFIntersectionDMaskedAutoencoderViT(
        **SIZE, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6), pre_norm=True, use_conv=True,
        random_mask=True, img_mask=img_mask, feature_mask=feature_mask,
    )  # fmt: skip
    model.load_state_dict(weights, strict=False)  # the noise schedule exists only with a noise masking
    model.train(train)
    seen: dict[str, torch.Tensor] = {}
    masking_fn, index_fn = model.random_masking, model.get_index_pos

    def random_masking(tokens: torch.Tensor, ids_restore: torch.Tensor | None = None) -> Any:
        out = masking_fn(tokens, ids_restore)
        seen.setdefault("ids_restore", out[1])
        return out

    def get_index_pos(tokens: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
        seen["positions"] = index_fn(tokens, pos_embed)
        return seen["positions"]

    model.random_masking, model.get_index_pos = random_masking, get_index_pos
    torch.manual_seed(seed)
    with Recorder() as draws, torch.no_grad():
        _, pred, _ = model(x)
    n, chunks = x.shape[0], SIZE["chunks"]
    subsets = seen["ids_restore"].argsort(dim=1).view(n, chunks, -1)  # ids_shuffle in chunks = the division
    out = {"pred": pred, "subsets": subsets, "positions": seen["positions"]}
    normal = list(draws.normal)
    if img_mask == "noise":
        out["eps_image"] = normal.pop(0)
    if feature_mask == "noise":
        out["eps_feature"] = torch.stack(normal, dim=1)  # per chunk (N, L/S, D) -> (N, S, L/S, D)
    steps = [t for t in draws.integers if t.shape == (n,)]  # noise steps (the position offsets are (N, 1, 1))
    if train:
        image_steps = steps.pop(0) if img_mask == "noise" else torch.full((n,), 400)
        feature_steps = torch.stack(steps, dim=1) if feature_mask == "noise" else torch.full((n, chunks), 600)
    else:
        image_steps, feature_steps = torch.full((n,), 400), torch.full((n, chunks), 600)
    out.update(t_image=image_steps, t_feature=feature_steps)
    return {key: value.numpy() for key, value in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the repository's files at --commit")
    parser.add_argument("--commit", required=True, help="commit of the snapshot in --source")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("impure_reference.npz"))
    args = parser.parse_args()
    module = import_authors(args.source.resolve())
    torch.manual_seed(0)
    model = module.RCMaskedMFFIntersectionDMaskedAutoencoderViT(
        **SIZE, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6), pre_norm=True, use_conv=True,
        img_mask="noise", feature_mask="noise",
    )  # fmt: skip
    with torch.no_grad():  # their initialisation, then every weight moved so that biases and norms matter
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    arrays: dict[str, Any] = {
        "commit": np.array(args.commit),
        "sources_sha256": np.array(
            [f"{name} {hashlib.sha256((args.source / name).read_bytes()).hexdigest()}" for name in SOURCES]
        ),
        "size": np.array(repr(SIZE)),
        "x": torch.rand(N_IMAGES, 3, SIZE["img_size"], SIZE["img_size"]).numpy(),
        "pos_embed": weights["pos_embed"][0].numpy(),  # (1 + (2g)^2, D): the class slot, then the 2g x 2g table
        "decoder_pos_embed": weights["decoder_pos_embed"][0].numpy(),
    }
    arrays.update({f"w/{k}": v.numpy() for k, v in weights.items() if v.dtype.is_floating_point and "pos_embed" not in k
                   and "alphas" not in k})  # fmt: skip
    x = torch.from_numpy(arrays["x"])
    cases = [(masking, False) for masking in MASKINGS] + [("image_feature_noise", True)]
    for seed, (masking, train) in enumerate(cases):
        for key, value in run_case(module, weights, masking, train, x, seed).items():
            arrays[f"{masking}/{'train' if train else 'eval'}/{key}"] = value
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) from {args.commit}")


if __name__ == "__main__":
    main()
