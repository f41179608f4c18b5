"""The training loop shared by every trainable defense.

A trainer names its networks and optimisers; this base class owns the rest: the train/validation
split of the dataset's training split (never the evaluation images), seeded per-epoch order and
augmentation (a resumed run replays the same epochs), progress bars, validation, an atomic
checkpoint with the resolved config after every epoch, resumption from it, and the
``train.max_minutes`` budget, the learning-rate schedule (``train.lr_schedule``) and, for
label-free stages, extra unlabelled images from other registered datasets (``train.extra_images``).
The purifier's weights sit under ``purifier`` in the checkpoint, beside ``purifier_config`` (the
defense keys that define it, ``purifier_keys``), so ``defense.checkpoint=PATH`` loads a training
checkpoint directly and with the right architecture, and ``training_data`` (the images it learnt
from, by dataset, split and index), so an evaluation on them is flagged. Keys that would leave
nothing to train (``train.epochs=0``, ``train.max_minutes=0``, ...) are refused before any work.
"""

from __future__ import annotations

import logging
import math
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

from purebench.allocator import keep_freed_memory
from purebench.attacks import Attack
from purebench.classifiers import CLASSIFIERS, Classifier
from purebench.data import DATASETS, EvalDataset
from purebench.defenses import Defense
from purebench.defenses.checkpoint_config import settle
from purebench.defenses.training_data import index_runs, inherited_sources
from purebench.errors import PurebenchError
from purebench.eval.results import check_writable
from purebench.eval.runner import group_params, resolve_device, sweep_job_number
from purebench.provenance import NOT_DECISIVE, NOT_HASHED, config_hash, git_commit
from purebench.seeding import derive_seed, per_example, seed_everything
from purebench.train import checkpoint

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption: where it writes and its time budget
# (not ``epochs``: a learning-rate schedule depends on it).
_RESUMABLE = ("max_minutes", "out")
# Keys under which a value of zero or less trains nothing (no epoch, no checkpoint) or fails mid-run.
_POSITIVE = ("epochs", "max_minutes", "batch_size", "val_every")


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

    purifier_keys: tuple[str, ...] = ()  # defense keys that define the purifier, stored in every checkpoint
    label_free_stages: tuple[str, ...] = ()  # stages that may train on train.extra_images (no labels needed)
    evaluation_keys: tuple[str, ...] = ()  # defense keys the training step never reads (how the net purifies)

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.t = cfg, cfg.train
        for key in _POSITIVE:  # before any data, weights or compute: a run that cannot train fails here
            value = self.t.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise PurebenchError(
                    f"train.{key} must be a positive number, got {value}. Set it above 0 (the default is in "
                    f"conf/train/{cfg.defense.name}.yaml): at 0, train.epochs or train.max_minutes would end the run "
                    "at once, as if finished, with no checkpoint."
                )
        if self.t.init:  # fine-tuning continues the pretrained purifier: its keys win over the defaults
            if self.t.stage == "pretrain":
                raise PurebenchError("train.init is the starting point of fine-tuning; pretraining starts fresh.")
            settle(cfg.defense, str(self.t.init))
        keep_freed_memory()
        self.device = resolve_device(str(cfg.device), sweep_job_number())
        self.seed = int(cfg.seed)
        seed_everything(self.seed)
        self.dataset = DATASETS.build(cfg.dataset.name, **group_params(cfg.dataset, "sample"))
        self.classifier: Classifier = CLASSIFIERS.build(cfg.classifier.name, **group_params(cfg.classifier))
        self.classifier.to(self.device)
        self.train_idx, self.val_idx = self._split()
        self.extra = self._extra_images()
        self.training_data = self._training_data()
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.hash = config_hash(self.resume_view(self.config))
        self.out = Path(str(self.t.out)).expanduser()
        check_writable([self.out.parent], "train.out")  # before any compute
        if self.t.get("cache_dir"):
            check_writable([Path(str(self.t.cache_dir)).expanduser()], "train.cache_dir")
        self.commit = git_commit()
        self.validation_attack: Attack  # set by subclasses: the adversary of the validation RA
        self._val_batches: list[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        self.command = ""  # the command line, set by the CLI entry point (recorded in checkpoints)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.dataset) if self.t.n_train is None else min(int(self.t.n_train), len(self.dataset))
        order = np.random.default_rng(derive_seed(self.seed, "train-split")).permutation(len(self.dataset))[:n]
        n_val = max(1, round(self.t.val_fraction * n))
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def resume_view(self, config: dict[str, Any]) -> dict[str, Any]:
        """The part of a config a checkpoint must share with this run to be resumed by it: everything but the
        run-only keys (``NOT_HASHED``: device, threads, ...), the train keys a resumption may change
        (``_RESUMABLE``), where the dataset lies (``NOT_DECISIVE``: the same images moved elsewhere) and the
        defense's ``evaluation_keys`` (a long run may be validated with another sampler when it is resumed; each
        validated epoch of its history records the settings it was validated with). The images themselves are
        compared by identity beside it (``training_data``)."""
        view = {k: v for k, v in config.items() if k not in NOT_HASHED}
        view["train"] = {k: v for k, v in config["train"].items() if k not in _RESUMABLE}
        view["dataset"] = {k: v for k, v in config["dataset"].items() if k not in NOT_DECISIVE["dataset"]}
        view["defense"] = {k: v for k, v in config["defense"].items() if k not in self.evaluation_keys}
        return view

    def purifier_config(self) -> dict[str, Any]:
        """The defense keys that define the trained purifier (stored in every checkpoint)."""
        return {k: self.config["defense"][k] for k in self.purifier_keys}

    def _extra_images(self) -> list[EvalDataset]:
        """``train.extra_images``: other datasets' images for label-free stages, never the evaluation images."""
        extra = [dict(entry) for entry in self.t.extra_images]
        if not extra:
            return []
        stage = self.t.stage
        if stage not in self.label_free_stages:
            raise PurebenchError(
                f"train.extra_images holds unlabelled images; only {', '.join(self.label_free_stages) or 'no'} "
                f"stages of {self.cfg.defense.name} can use them (train.stage={stage}). Set train.extra_images=[]."
            )
        datasets = []
        for entry in extra:
            split = entry.get("split", "train")
            if entry.get("name") == self.cfg.dataset.name:  # its test split is evaluated, its train split in use
                raise PurebenchError(
                    f"train.extra_images names {entry['name']}, the dataset being trained on (its test split holds the "
                    "evaluation images, its training split is already used with its held-out part): pick another dataset."
                )
            datasets.append(DATASETS.build(entry["name"], root=str(self.cfg.dataset.root), split=split))
            log.info("extra training images: %s", datasets[-1].source)
        return datasets

    def _training_data(self) -> list[dict[str, Any]]:
        """The images this run learns from by identity (dataset, split, index runs; never the held-out validation
        images), with those of the ``train.init`` it continues: stored in every checkpoint, so that an evaluation
        on them is flagged (purebench.defenses.training_data) even where the init file is gone."""
        own = [
            {"dataset": self.dataset.name, "split": str(self.cfg.dataset.split), "indices": index_runs(self.train_idx)}
        ]
        own += [{"dataset": d.name, "split": str(entry.get("split", "train")), "indices": index_runs(range(len(d)))}
                for entry, d in zip(self.t.extra_images, self.extra, strict=True)]  # fmt: skip
        return own + (inherited_sources(Path(str(self.t.init)).expanduser()) if self.t.init else [])

    # ---- hooks -----------------------------------------------------------------------------
    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """The epoch's batches: (x, y) of the training indices (and extra images, label -1) in a seeded order,
        augmented."""
        pool = [(self.dataset, int(i)) for i in self.train_idx] + [(d, i) for d in self.extra for i in range(len(d))]
        order = torch.randperm(len(pool), generator=generator).tolist()
        for start in range(0, len(order), int(self.t.batch_size)):
            chosen = [pool[k] for k in order[start : start + int(self.t.batch_size)]]
            loaded = [source.load([index]) for source, index in chosen]
            x = torch.cat([xi for xi, _ in loaded])
            y = torch.cat([yi if source is self.dataset else torch.full_like(yi, -1) for (source, _), (_, yi) in
                           zip(chosen, loaded, strict=True)])  # fmt: skip
            yield (augment(x, generator) if self.t.augment else x), y

    def n_batches(self) -> int:
        return -(-(len(self.train_idx) + sum(len(d) for d in self.extra)) // int(self.t.batch_size))

    @abstractmethod
    def step(self, batch: tuple[torch.Tensor, ...], epoch: int) -> dict[str, float]:
        """One optimisation step; returns the losses to log."""

    @abstractmethod
    def validation_defense(self) -> Defense:
        """The defense as evaluated (test-time settings), around the purifier being trained."""

    # ---- validation ------------------------------------------------------------------------
    def _validation_batches(self) -> list[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Held-out (indices, x, x_adv, y) batches: ``self.validation_attack`` on the frozen classifier, crafted
        once under a fixed seed, so a resumed run validates on exactly the examples of an uninterrupted one."""
        if self._val_batches is None:
            self._val_batches = []
            with torch.random.fork_rng():
                torch.manual_seed(derive_seed(self.seed, "validation"))
                for start in range(0, len(self.val_idx), int(self.t.batch_size)):
                    indices = self.val_idx[start : start + int(self.t.batch_size)].tolist()
                    x, y = self.dataset.load(indices)
                    x, y = x.to(self.device), y.to(self.device)
                    self._val_batches.append((indices, x, self.validation_attack(self.classifier, x, y), y))
        return self._val_batches

    def validate(self) -> dict[str, float]:
        """SA and oblivious RA of the current purifier on held-out training images, its draws seeded per example."""
        defense = self.validation_defense()
        correct_sa = correct_ra = 0
        for indices, x, x_adv, y in self._validation_batches():
            with torch.no_grad():
                with per_example(self.seed, indices, "validation-clean"):
                    correct_sa += int((self.classifier(defense.purify(x)).argmax(1) == y).sum())
                with per_example(self.seed, indices, "validation-adv"):
                    correct_ra += int((self.classifier(defense.purify(x_adv)).argmax(1) == y).sum())
        n = len(self.val_idx)
        return {"val_sa": round(100 * correct_sa / n, 2), "val_ra": round(100 * correct_ra / n, 2)}

    def initialise(self) -> None:  # noqa: B027 (optional hook)
        """Set the networks' starting weights for a fresh run (default: as constructed)."""

    def begin_epoch(self, epoch: int) -> None:
        """The epoch's learning rate: ``constant`` or ``cosine`` annealing from train.lr over train.epochs."""
        schedule = str(self.t.lr_schedule)
        if schedule not in ("constant", "cosine"):
            raise PurebenchError(f"train.lr_schedule must be constant or cosine, got '{schedule}'.")
        factor = 0.5 * (1 + math.cos(math.pi * epoch / int(self.t.epochs))) if schedule == "cosine" else 1.0
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = float(self.t.lr) * factor

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint_state(self, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **{name: net.state_dict() for name, net in self.networks.items()},
            **{f"opt_{name}": opt.state_dict() for name, opt in self.optimizers.items()},
            "epoch": epoch, "history": history, "config": self.config, "config_hash": self.hash,
            "commit": self.commit, "command": self.command,
            "data": [self.dataset.source, *(d.source for d in self.extra)], "training_data": self.training_data,
            "purifier_config": self.purifier_config(),
        }  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        for name, net in self.networks.items():
            net.load_state_dict(state[name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[f"opt_{name}"])

    def run(self) -> dict[str, Any]:
        if "purifier" not in self.networks:
            raise PurebenchError(f"{type(self).__name__} registers no 'purifier' network.")
        state = checkpoint.resume_state(self.out, self.config, self.resume_view, self.training_data)
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
                if self.evaluation_keys:  # they may change when the run is resumed: say which were used
                    record["validated_with"] = {k: self.config["defense"].get(k) for k in self.evaluation_keys}
            epoch_s = time.perf_counter() - epoch_start
            record["seconds"] = round(epoch_s, 1)
            history.append(record)
            checkpoint.save(self.out, self.checkpoint_state(epoch, history))
            log.info("%s", record)
        return {"out": str(self.out), "epochs_done": len(history), "history": history}
