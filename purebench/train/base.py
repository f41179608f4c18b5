"""The training loop shared by every trainable defense.

A trainer names its networks and optimisers; this base class owns the rest: the train/validation
split of the dataset's training split (never the evaluation images), seeded per-epoch order and
augmentation (a resumed run replays the same epochs), progress bars, validation, an atomic
checkpoint with the resolved config after every epoch, resumption from it, and the
``train.max_minutes`` budget. The purifier's weights sit under ``purifier`` in the checkpoint, so
``defense.checkpoint=PATH`` loads a training checkpoint directly.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from purebench.classifiers import CLASSIFIERS, Classifier
from purebench.data import DATASETS
from purebench.errors import PurebenchError
from purebench.eval.runner import group_params, resolve_device
from purebench.provenance import config_hash, git_commit
from purebench.seeding import derive_seed, seed_everything
from purebench.train import checkpoint

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption: where it writes and its time budget
# (not ``epochs``: a learning-rate schedule depends on it).
_RESUMABLE = ("max_minutes", "out")


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel reflection padding and horizontal flip (standard CIFAR augmentation)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2, b), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)


class Trainer(ABC):
    """Subclasses build ``self.networks`` (``purifier`` first) and ``self.optimizers``, then implement the hooks."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.t = cfg, cfg.train
        self.device = resolve_device(str(cfg.device))
        self.seed = int(cfg.seed)
        seed_everything(self.seed)
        self.dataset = DATASETS.build(cfg.dataset.name, **group_params(cfg.dataset, "sample"))
        self.classifier: Classifier = CLASSIFIERS.build(cfg.classifier.name, **group_params(cfg.classifier))
        self.classifier.to(self.device)
        self.train_idx, self.val_idx = self._split()
        self.config = OmegaConf.to_container(cfg, resolve=True)
        train_cfg = {k: v for k, v in self.config["train"].items() if k not in _RESUMABLE}
        self.hash = config_hash({**self.config, "train": train_cfg})
        self.out = Path(str(self.t.out)).expanduser()
        self.commit = git_commit()
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.dataset) if self.t.n_train is None else min(int(self.t.n_train), len(self.dataset))
        order = np.random.default_rng(derive_seed(self.seed, "train-split")).permutation(len(self.dataset))[:n]
        n_val = max(1, round(self.t.val_fraction * n))
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    # ---- hooks -----------------------------------------------------------------------------
    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """The epoch's batches: (x, y) of the training indices in a seeded order, augmented."""
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=generator).numpy()]
        for i in range(0, len(order), int(self.t.batch_size)):
            x, y = self.dataset.load(order[i : i + int(self.t.batch_size)].tolist())
            yield (augment(x, generator) if self.t.augment else x), y

    def n_batches(self) -> int:
        return -(-len(self.train_idx) // int(self.t.batch_size))

    @abstractmethod
    def step(self, batch: tuple[torch.Tensor, ...], epoch: int) -> dict[str, float]:
        """One optimisation step; returns the losses to log."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """Validation metrics on ``self.val_idx``."""

    def initialise(self) -> None:  # noqa: B027 (optional hook)
        """Set the networks' starting weights for a fresh run (default: as constructed)."""

    def begin_epoch(self, epoch: int) -> None:  # noqa: B027 (optional hook)
        """Per-epoch set-up before the first step (a learning-rate schedule, say)."""

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint_state(self, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **{name: net.state_dict() for name, net in self.networks.items()},
            **{f"opt_{name}": opt.state_dict() for name, opt in self.optimizers.items()},
            "epoch": epoch, "history": history, "config": self.config, "config_hash": self.hash,
            "commit": self.commit,
        }  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        for name, net in self.networks.items():
            net.load_state_dict(state[name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[f"opt_{name}"])

    def run(self) -> dict[str, Any]:
        if "purifier" not in self.networks:
            raise PurebenchError(f"{type(self).__name__} registers no 'purifier' network.")
        state = checkpoint.resume_state(self.out, self.hash)
        history: list[dict[str, Any]] = []
        first_epoch = 0
        if state is not None:
            self._restore(state)
            history, first_epoch = list(state["history"]), int(state["epoch"]) + 1
            log.info("resuming %s after epoch %d", self.out, state["epoch"])
        else:
            self.initialise()
        budget_s, started, epoch_s = 60 * float(self.t.max_minutes), time.perf_counter(), 0.0
        for epoch in range(first_epoch, int(self.t.epochs)):
            if time.perf_counter() - started + epoch_s > budget_s:
                log.info("stopping before epoch %d: train.max_minutes=%s reached", epoch, self.t.max_minutes)
                break
            epoch_start = time.perf_counter()
            self.begin_epoch(epoch)
            seed_everything(derive_seed(self.seed, "epoch", epoch))  # resumption replays the same epochs
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "batches", epoch))
            totals: dict[str, float] = {}
            n = self.n_batches()
            for batch in tqdm(self.batches(epoch, generator), total=n, desc=f"epoch {epoch}", leave=False):
                for k, v in self.step(tuple(t.to(self.device) for t in batch), epoch).items():
                    totals[k] = totals.get(k, 0.0) + v / n
            record = {"epoch": epoch, **{k: round(v, 4) for k, v in totals.items()}}
            if (epoch + 1) % int(self.t.val_every) == 0 or epoch + 1 == int(self.t.epochs):
                for net in self.networks.values():
                    net.eval()
                record.update(self.validate())
            history.append(record)
            checkpoint.save(self.out, self.checkpoint_state(epoch, history))
            epoch_s = time.perf_counter() - epoch_start
            log.info("%s", record)
        return {"out": str(self.out), "epochs_done": len(history), "history": history}
