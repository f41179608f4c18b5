"""CIFAR-10 / CIFAR-100 from the standard python batch layout, or from verified subset files.

Order of preference under ``root``: the official batch files (``cifar-10-batches-py``,
``cifar-100-python``); otherwise the md5-verified ``.npz`` subsets holding the leading images of
those files (see shared/data/README.md), which is logged; otherwise a torchvision download when
``download=true``; otherwise a clear error.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from purebench.data.base import DATASETS, EvalDataset
from purebench.errors import PurebenchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Layout:
    folder: str  # official python-batch folder
    files: dict[str, list[str]]  # split -> batch files
    label_key: bytes
    subsets: dict[str, tuple[str, str]]  # split -> (npz path under root, md5)
    subset_label_key: str
    num_classes: int
    torchvision_cls: str
    meta: tuple[str, bytes]  # metadata file in the batch folder, key of its class names


_LAYOUTS = {
    "cifar10": _Layout(
        "cifar-10-batches-py",
        {"test": ["test_batch"], "train": [f"data_batch_{i}" for i in range(1, 6)]},
        b"labels",
        {
            "test": ("cifar10-subsets/test_batch_first1017.npz", "5103f426f725bd992d82af5d4d582e84"),
            "train": ("cifar10-subsets/data_batch_1_first1102.npz", "8aef835874ef2d6b2b950ce853719f34"),
        },
        "labels",
        10,
        "CIFAR10",
        ("batches.meta", b"label_names"),
    ),
    "cifar100": _Layout(
        "cifar-100-python",
        {"test": ["test"], "train": ["train"]},
        b"fine_labels",
        {"test": ("cifar100-subsets/test_first916.npz", "3db35eb883a65c20e0e52c59a50e638f")},
        "fine_labels",
        100,
        "CIFAR100",
        ("meta", b"fine_label_names"),
    ),
}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class Cifar(EvalDataset):
    """All images of one split held in memory as uint8 (30 MB for a full split)."""

    def __init__(self, name: str, root: str, split: str, download: bool) -> None:
        if split not in ("test", "train"):
            raise PurebenchError(f"dataset.split must be 'test' or 'train', got '{split}'.")
        self.name = name
        layout = _LAYOUTS[name]
        self.num_classes = layout.num_classes
        root_path = Path(root).expanduser()
        batch_dir = root_path / layout.folder
        self._meta = (batch_dir / layout.meta[0], layout.meta[1])
        files = [batch_dir / f for f in layout.files[split]]
        subset = layout.subsets.get(split)
        if all(f.is_file() for f in files):
            self._read_batches(files, layout.label_key)
            self.source = f"{batch_dir} ({', '.join(layout.files[split])})"
        elif subset and (root_path / subset[0]).is_file():
            self._read_subset(root_path / subset[0], subset[1], layout.subset_label_key)
        elif download:
            import torchvision

            getattr(torchvision.datasets, layout.torchvision_cls)(str(root_path), train=split == "train", download=True)
            self._read_batches(files, layout.label_key)
            self.source = f"{batch_dir} (downloaded)"
        else:
            raise PurebenchError(
                f"No {name} {split} data under '{root_path}': expected '{files[0]}'"
                + (f" or the verified subset '{root_path / subset[0]}'" if subset else "")
                + ". Set dataset.root=DIR (or the PUREBENCH_DATA environment variable) to a folder that holds them, "
                "or dataset.download=true on a machine with a network."
            )

    def _read_batches(self, files: list[Path], label_key: bytes) -> None:
        images, labels = [], []
        for path in files:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="bytes")  # official CIFAR format is a pickle of numpy arrays
            images.append(np.asarray(entry[b"data"], dtype=np.uint8))
            labels.extend(entry[label_key])
        self._images = np.concatenate(images).reshape(-1, 3, 32, 32)
        self._labels = np.asarray(labels, dtype=np.int64)

    def _read_subset(self, path: Path, md5: str, label_key: str) -> None:
        actual = _md5(path)
        if actual != md5:
            raise PurebenchError(f"'{path}' has md5 {actual}, expected {md5}: the subset file is corrupt; restore it.")
        with np.load(path, allow_pickle=False) as npz:
            self._images = npz["data"].reshape(-1, 3, 32, 32)
            self._labels = npz[label_key].astype(np.int64)
        self.source = f"{path} (verified subset: first {len(self._labels)} images of the official split)"
        log.warning("Using the verified subset %s: only %d images are available.", path, len(self._labels))

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def class_names(self) -> list[str]:
        """From the official metadata file beside the batches (batches.meta / meta), when it is there."""
        path, key = self._meta
        if not path.is_file():
            return super().class_names
        with open(path, "rb") as f:
            names = pickle.load(f, encoding="bytes")[key]  # the official CIFAR metadata format, a pickle
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def load(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(self._images[idx]).float().div_(255.0)
        return x, torch.from_numpy(self._labels[idx])


@DATASETS.register("cifar10")
def cifar10(name: str, root: str, split: str = "test", download: bool = False) -> EvalDataset:
    """CIFAR-10 (10 classes, 32x32)."""
    return Cifar(name, root, split, download)


@DATASETS.register("cifar100")
def cifar100(name: str, root: str, split: str = "test", download: bool = False) -> EvalDataset:
    """CIFAR-100 with fine labels (100 classes, 32x32)."""
    return Cifar(name, root, split, download)
