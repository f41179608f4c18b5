"""The evaluation-dataset interface: indexed access to (images in [0,1], labels)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from purebench.registry import Registry


class EvalDataset(ABC):
    """Images addressed by their index in the official split, so results name the exact images used."""

    name: str
    num_classes: int
    source: str  # human-readable description of the files actually read (logged and recorded)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images (N, C, H, W) in [0, 1] and int64 labels for ``indices``."""

    def digest(self, indices: Sequence[int]) -> str:
        """SHA-256 of the images and labels at ``indices`` as :meth:`load` gives them: the data's
        identity in a row's config hash and in the adversarial cache, the same wherever the files lie
        (a path is not) and different for other files under the same path. It loads the images once
        more, which costs little next to attacking them."""
        x, y = self.load(indices)
        h = hashlib.sha256(f"{[int(i) for i in indices]} {tuple(x.shape)} {x.dtype}\n".encode())
        for tensor in (x, y):
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @property
    def class_names(self) -> list[str]:
        """Class names by label, for figures (the dataset's metadata; label numbers where it has none)."""
        return [str(k) for k in range(self.num_classes)]


DATASETS: Registry[EvalDataset] = Registry("dataset")
