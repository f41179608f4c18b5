"""Cache of oblivious adversarial examples, shared by every defense evaluated under them.

Under the oblivious threat model x_adv depends only on the images, the classifier's weights,
the attack config and the seed of the batch, never on the defense; a sweep of K defenses under
one attack therefore runs the attack once. Each batch is stored under a hash of exactly those
inputs in ``results_dir/cache/adversarial/`` (float32, so a hit reproduces the attack bit for bit),
the images by their content (:meth:`purebench.data.EvalDataset.digest`), not by a data path, so a
cache copied to another machine still hits.

A hit is trusted only when the file loads, its SHA-256 of x_adv matches, it holds the expected
batch, and x_adv is a valid example for the budget; anything else (a truncated file, an edited
tensor) is reported in :attr:`ObliviousCache.warnings` and the attack is run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from purebench.attacks.base import check_budget
from purebench.errors import PurebenchError
from purebench.provenance import config_hash
from purebench.train.checkpoint import load, save


def _digest(x_adv: torch.Tensor) -> str:
    return hashlib.sha256(x_adv.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class ObliviousCache:
    def __init__(self, results_dir: Path, key: dict[str, Any], images: Mapping[int, str]) -> None:
        """``key``: what x_adv depends on besides the batch; ``images``: the digest of each batch's
        images and labels by its first index."""
        self.dir, self.key, self.images = results_dir / "cache" / "adversarial", key, images
        self.warnings: list[str] = []

    def _path(self, batch: list[int]) -> Path:
        return self.dir / f"{config_hash({**self.key, 'indices': list(batch), 'images': self.images[batch[0]]})}.pt"

    def get(self, batch: list[int], x: torch.Tensor, norm: str, eps: float) -> torch.Tensor | None:
        """The cached x_adv of ``batch`` (clean images ``x``), or None when absent or untrustworthy."""
        path = self._path(batch)
        if not path.exists():
            return None
        try:
            entry = load(path)
            x_adv = entry["x_adv"]
            if entry["sha256"] != _digest(x_adv) or entry["indices"].tolist() != list(batch):
                raise ValueError("checksum or indices do not match")
            check_budget(x_adv.to(x.device), x, norm, eps, "cached attack")
        except (PurebenchError, KeyError, ValueError, RuntimeError, AttributeError) as exc:
            self.warnings.append(f"adversarial cache file {path.name} rejected ({exc}); attack recomputed")
            return None
        return x_adv.to(x.device)

    def put(self, batch: list[int], x_adv: torch.Tensor) -> None:
        x_adv = x_adv.detach().cpu()
        save(self._path(batch), {"x_adv": x_adv, "indices": torch.tensor(batch), "sha256": _digest(x_adv)})
