"""ImageNet-style image folders (one sub-folder per class), resized and centre-cropped per config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from purebench.data.base import DATASETS, EvalDataset
from purebench.errors import PurebenchError


class ImageFolderData(EvalDataset):
    """Lazily decoded image folder; index order is torchvision's (sorted classes, sorted files)."""

    def __init__(self, name: str, path: Path, resize: int, crop: int) -> None:
        from torchvision import datasets, transforms

        if not path.is_dir() or not any(p.is_dir() for p in path.iterdir()):
            raise PurebenchError(
                f"No image folder for {name} at '{path}' (expected one sub-folder per class). "
                "Set dataset.root and dataset.folder so that ROOT/FOLDER/<class>/<image> exists."
            )
        tf = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor()])
        self._folder = datasets.ImageFolder(str(path), transform=tf)
        self.name = name
        self.num_classes = len(self._folder.classes)
        self.source = f"{path} ({len(self._folder)} images, {self.num_classes} classes)"

    def __len__(self) -> int:
        return len(self._folder)

    @property
    def class_names(self) -> list[str]:
        """The class folders' names (for ImageNet-style folders, the WordNet ids)."""
        return list(self._folder.classes)

    def load(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self._folder[int(i)] for i in indices]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


@DATASETS.register("imagenet")
def imagenet(name: str, root: str, folder: str = "imagenet/val", resize: int = 256, crop: int = 224) -> EvalDataset:
    """ImageNet-1k validation images in class folders."""
    return ImageFolderData(name, Path(root).expanduser() / folder, resize, crop)


@DATASETS.register("imagenette")
def imagenette(
    name: str, root: str, folder: str = "imagenette2-320/val", resize: int = 256, crop: int = 224
) -> EvalDataset:
    """Imagenette (10 easy ImageNet classes) in class folders."""
    return ImageFolderData(name, Path(root).expanduser() / folder, resize, crop)
