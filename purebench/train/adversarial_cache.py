"""Adversarial training pairs crafted once and reused (IMPure trains on cached attacks, Sec. 4.1).

The examples depend only on (dataset, indices, classifier weights, attack configs, budget,
seed), so they are stored under a hash of exactly that and rebuilt only when one of them changes.
They are kept as float16 (half the disk of float32; the rounding, below 5e-4 on [0,1] pixels,
is far below any eps used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from purebench.attacks import ATTACKS
from purebench.classifiers import Classifier
from purebench.data import EvalDataset
from purebench.errors import PurebenchError
from purebench.provenance import config_hash, weights_digest
from purebench.seeding import derive_seed, seed_everything
from purebench.train import checkpoint

log = logging.getLogger(__name__)


def adversarial_pairs(
    cache_dir: Path,
    dataset: EvalDataset,
    indices: list[int],
    classifier: Classifier,
    attacks: list[dict[str, Any]],
    norm: str,
    eps: float,
    seed: int,
    batch_size: int,
) -> tuple[torch.Tensor, list[str]]:
    """x_adv of shape (attacks, len(indices), C, H, W) in [0, 1] and the attack names; built when missing."""
    key_config = {
        "dataset": dataset.name, "source": dataset.source, "indices": indices, "classifier": classifier.name,
        "weights": weights_digest(classifier), "attacks": attacks, "norm": norm, "eps": eps, "seed": seed,
        "batch_size": batch_size,  # batches set the per-batch attack seeds
    }  # fmt: skip
    path = Path(cache_dir).expanduser() / f"adversarial-{config_hash(key_config)}.pt"
    names = [a["name"] + "".join(f"-{k}={v}" for k, v in sorted(a.items()) if k != "name") for a in attacks]
    expected_shape = (len(attacks), len(indices), *dataset.load(indices[:1])[0].shape[1:])
    if path.exists():
        try:
            x_adv = checkpoint.load(path)["x_adv"]
            if tuple(x_adv.shape) != expected_shape or not torch.isfinite(x_adv).all():
                raise ValueError(f"shape {tuple(x_adv.shape)}, expected {expected_shape}, or non-finite values")
        except (PurebenchError, KeyError, ValueError) as exc:
            log.warning("adversarial cache %s is unreadable (%s); building it again", path, exc)
        else:
            log.info("adversarial cache hit: %s", path)
            return x_adv.float(), names
    log.info("building the adversarial cache %s (%d attacks x %d images)", path, len(attacks), len(indices))
    device = next(classifier.parameters()).device
    out = []
    for spec, label in zip(attacks, names, strict=True):
        params = {k: v for k, v in spec.items() if k != "name"}
        attack = ATTACKS.build(spec["name"], norm=norm, eps=eps, seed=seed, verbose=False, **params)
        rows = []
        for start in tqdm(range(0, len(indices), batch_size), desc=f"cache {label}", leave=False):
            batch = indices[start : start + batch_size]
            x, y = dataset.load(batch)
            seed_everything(derive_seed(seed, "cache", label, batch[0]))
            rows.append(attack(classifier, x.to(device), y.to(device)).cpu().half())
        out.append(torch.cat(rows))
    x_adv = torch.stack(out)
    checkpoint.save(path, {"x_adv": x_adv, "attacks": names, "config": key_config})
    return x_adv.float(), names
