"""Datasets: registry and built-in loaders (importing registers them)."""

from purebench.data import cifar, image_folder, synthetic  # noqa: F401
from purebench.data.base import DATASETS, EvalDataset

__all__ = ["DATASETS", "EvalDataset"]
