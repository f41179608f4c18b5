"""Cache of oblivious adversarial examples, shared by every defense evaluated under them.

Under the oblivious threat model x_adv depends only on the images, the classifier's weights,
the attack config and the seed of the batch, never on the defense; a sweep of K defenses under
one attack therefore runs the attack once. Each batch is stored under a hash of exactly those
inputs in ``results_dir/cache/adversarial/`` (float32, so a hit reproduces the attack bit for bit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from purebench.provenance import config_hash
from purebench.train.checkpoint import load, save


class ObliviousCache:
    def __init__(self, results_dir: Path, key: dict[str, Any]) -> None:
        self.dir, self.key = results_dir / "cache" / "adversarial", key

    def _path(self, batch: list[int]) -> Path:
        return self.dir / f"{config_hash({**self.key, 'indices': list(batch)})}.pt"

    def get(self, batch: list[int]) -> torch.Tensor | None:
        path = self._path(batch)
        return load(path)["x_adv"] if path.exists() else None

    def put(self, batch: list[int], x_adv: torch.Tensor) -> None:
        save(self._path(batch), {"x_adv": x_adv.cpu(), "indices": torch.tensor(batch)})
