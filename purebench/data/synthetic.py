"""Synthetic images for fast tests: each image is a deterministic function of its index."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from purebench.data.base import DATASETS, EvalDataset
from purebench.seeding import derive_seed


class Synthetic(EvalDataset):
    def __init__(self, name: str, size: int, num_classes: int, image_size: int) -> None:
        self.name, self._size, self.num_classes, self._hw = name, size, num_classes, image_size
        self.source = f"synthetic ({size} images, {num_classes} classes, {image_size}x{image_size})"

    def __len__(self) -> int:
        return self._size

    def load(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for i in indices:
            g = torch.Generator().manual_seed(derive_seed("synthetic", int(i)))
            xs.append(torch.rand(3, self._hw, self._hw, generator=g))
            ys.append(int(torch.randint(self.num_classes, (1,), generator=g)))
        return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


@DATASETS.register("synthetic")
def synthetic(name: str, size: int = 1024, num_classes: int = 10, image_size: int = 32) -> EvalDataset:
    """Uniform-noise images with random labels (no files needed)."""
    return Synthetic(name, size, num_classes, image_size)
