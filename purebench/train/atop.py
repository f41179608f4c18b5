"""AToP training: purifier pretraining on L_org and adversarial fine-tuning (Algorithm 1).

- ``pretrain``: the purifier learns to restore transformed clean training images (L_org: for
  DeepFill the hinge GAN loss plus L1 on both generator stages, L_df; for the MAE L_mae).
- ``finetune`` (Algorithm 1): the classifier is frozen; each step crafts x' against the
  classifier (line 3; FGSM 8/255 by default, as the authors' code) and updates the purifier on
  L_org(x') + lambda * CE(y, F(g(t(x')))) (line 4, Eq. 5 and 9). ``finetune_on=clean`` uses the
  clean images instead (Fig. 4a). Eq. 9 as printed reconstructs x' itself;
  ``reconstruction_target=clean`` reconstructs the clean image instead.

Only training-split images are used (never the evaluation images), with random-crop and flip
augmentation, a held-out validation split for SA/RA, an atomic checkpoint after every epoch and
``max_minutes`` so a CPU run finishes in bounded time; re-running the command resumes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from purebench.attacks import ATTACKS, Attack
from purebench.classifiers import CLASSIFIERS, Classifier
from purebench.data import DATASETS
from purebench.defenses.atop import AToP, build_purifier, load_purifier
from purebench.defenses.atop.deepfill import PatchDiscriminator
from purebench.defenses.atop.transforms import RandomTransform
from purebench.errors import PurebenchError
from purebench.eval.runner import group_params, resolve_device
from purebench.provenance import config_hash, git_commit
from purebench.seeding import derive_seed, seed_everything
from purebench.train import checkpoint

log = logging.getLogger(__name__)

STAGES = ("pretrain", "finetune")
# Keys that may change between a run and its resumption: where and how long it runs.
_RESUMABLE = ("max_minutes", "epochs", "out")


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel reflection padding and horizontal flip (standard CIFAR augmentation)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2, b), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)


class AToPTrainer:
    """One training run; see the module docstring for the stages and conf/train/atop.yaml for the knobs."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.t = cfg, cfg.train
        if self.t.stage not in STAGES:
            raise PurebenchError(f"train.stage must be one of {', '.join(STAGES)}, got '{self.t.stage}'.")
        if self.t.stage == "finetune" and not self.t.init:
            raise PurebenchError("train.stage=finetune needs train.init=PATH, the pretrained purifier checkpoint.")
        self.device = resolve_device(str(cfg.device))
        self.seed = int(cfg.seed)
        seed_everything(self.seed)
        self.dataset = DATASETS.build(cfg.dataset.name, **group_params(cfg.dataset, "sample"))
        self.classifier: Classifier = CLASSIFIERS.build(cfg.classifier.name, **group_params(cfg.classifier))
        self.classifier.to(self.device)
        d = cfg.defense
        self.transform = RandomTransform(d.transform, d.sigma, d.grid, d.missing_rate, d.n_masks)
        self.purifier = build_purifier(
            d.purifier, d.image_size, OmegaConf.to_container(d.deepfill), OmegaConf.to_container(d.mae)
        ).to(self.device)
        self.discriminator: nn.Module | None = (
            PatchDiscriminator(self.t.discriminator_cnum).to(self.device) if self.purifier.adversarial else None
        )
        betas = tuple(self.t.betas)
        self.opt_g = torch.optim.Adam(self.purifier.parameters(), lr=self.t.lr, betas=betas)
        self.opt_d = (
            torch.optim.Adam(self.discriminator.parameters(), lr=self.t.lr, betas=betas) if self.discriminator else None
        )
        self.adversary: Attack = ATTACKS.build(
            self.t.adversary.name, seed=self.seed, verbose=False, **group_params(self.t.adversary)
        )
        self.train_idx, self.val_idx = self._split()
        config = OmegaConf.to_container(cfg, resolve=True)
        self.config = config
        self.hash = config_hash({**config, "train": {k: v for k, v in config["train"].items() if k not in _RESUMABLE}})
        self.out = Path(str(self.t.out)).expanduser()

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.dataset) if self.t.n_train is None else min(int(self.t.n_train), len(self.dataset))
        order = np.random.default_rng(derive_seed(self.seed, "train-split")).permutation(len(self.dataset))[:n]
        n_val = max(1, round(self.t.val_fraction * n))
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    # ---- losses ----------------------------------------------------------------------------
    def _generate(self, views: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, ...]]:
        """Per view: (coarse, refined) for DeepFill, (reconstruction,) for the MAE."""
        if self.discriminator is not None:
            return [self.purifier.stages(x_t, m) for x_t, m in views]
        return [(self.purifier(x_t, m),) for x_t, m in views]

    def _reconstruction(self, views, outputs, target: torch.Tensor) -> torch.Tensor:
        """L1 on both DeepFill stages (L_df's reconstruction term) or L_mae, averaged over views."""
        if self.discriminator is not None:
            return sum((o[0] - target).abs().mean() + (o[1] - target).abs().mean() for o in outputs) / len(outputs)
        return sum(
            self.purifier.reconstruction_loss(o[0], target, m) for (_, m), o in zip(views, outputs, strict=True)
        ) / len(outputs)

    def _discriminator_step(self, views, outputs, target: torch.Tensor) -> float:
        """Hinge loss on real images vs the purifier's outputs (detached), one mask per view."""
        self.opt_d.zero_grad(set_to_none=True)
        loss = sum(
            0.5 * F.relu(1 - self.discriminator(target, m)).mean()
            + 0.5 * F.relu(1 + self.discriminator(o[-1].detach(), m)).mean()
            for (_, m), o in zip(views, outputs, strict=True)
        ) / len(outputs)
        loss.backward()
        self.opt_d.step()
        return loss.item()

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> dict[str, float]:
        finetune = self.t.stage == "finetune"
        x_in = x
        if finetune and self.t.finetune_on == "adversarial":
            x_in = self.adversary(self.classifier, x, y)  # Algorithm 1 line 3: x' against the classifier
        target = x_in if self.t.reconstruction_target == "adversarial" else x
        self.purifier.train()
        views = self.transform.views(x_in)
        outputs = self._generate(views)
        losses: dict[str, float] = {}
        if self.discriminator is not None:
            losses["d"] = self._discriminator_step(views, outputs, target)
        self.opt_g.zero_grad(set_to_none=True)
        loss = self.t.l1_weight * self._reconstruction(views, outputs, target)
        losses["rec"] = loss.item()
        if self.discriminator is not None:  # hinge generator loss on the refined output
            gan = -sum(self.discriminator(o[-1], m).mean() for (_, m), o in zip(views, outputs, strict=True)) / len(
                views
            )
            loss = loss + self.t.gan_weight * gan
            losses["gan"] = gan.item()
        if finetune and epoch >= self.t.cls_start_epoch:  # Eq. 5 / 9: lambda * CE(y, F(g(t(x'))))
            x_hat = self.transform.combine(views, [o[-1] for o in outputs]).clamp(0, 1)
            ce = F.cross_entropy(self.classifier(x_hat), y)
            loss = loss + self.t.lambda_cls * ce
            losses["ce"] = ce.item()
        loss.backward()
        self.opt_g.step()
        return losses

    # ---- validation ------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """SA and oblivious RA (the training adversary on the classifier) of the current purifier on held-out images."""
        self.purifier.eval()
        defense = AToP(self.transform, self.purifier)
        correct_sa = correct_ra = 0
        for start in range(0, len(self.val_idx), int(self.t.batch_size)):
            x, y = self.dataset.load(self.val_idx[start : start + int(self.t.batch_size)].tolist())
            x, y = x.to(self.device), y.to(self.device)
            x_adv = self.adversary(self.classifier, x, y)
            with torch.no_grad():
                correct_sa += int((self.classifier(defense.purify(x)).argmax(1) == y).sum())
                correct_ra += int((self.classifier(defense.purify(x_adv)).argmax(1) == y).sum())
        n = len(self.val_idx)
        return {"val_sa": round(100 * correct_sa / n, 2), "val_ra": round(100 * correct_ra / n, 2)}

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint_state(self, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "purifier": self.purifier.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator else {},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else {},
            "epoch": epoch, "history": history, "stage": str(self.t.stage),
            "config": self.config, "config_hash": self.hash, "commit": git_commit(),
        }  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        self.purifier.load_state_dict(state["purifier"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])

    def _initialise(self) -> None:
        """Finetune starts from the pretrained purifier (and its discriminator when there is one)."""
        load_purifier(self.purifier, str(self.t.init))
        init = checkpoint.load(Path(str(self.t.init)).expanduser())
        if self.discriminator is not None and init.get("discriminator"):
            self.discriminator.load_state_dict(init["discriminator"])

    def run(self) -> dict[str, Any]:
        state = checkpoint.resume_state(self.out, self.hash)
        history: list[dict[str, Any]] = []
        first_epoch = 0
        if state is not None:
            self._restore(state)
            history, first_epoch = list(state["history"]), int(state["epoch"]) + 1
            log.info("resuming %s after epoch %d", self.out, state["epoch"])
        elif self.t.stage == "finetune":
            self._initialise()
        budget_s, started, epoch_s = 60 * float(self.t.max_minutes), time.perf_counter(), 0.0
        for epoch in range(first_epoch, int(self.t.epochs)):
            if time.perf_counter() - started + epoch_s > budget_s:
                log.info("stopping before epoch %d: train.max_minutes=%s reached", epoch, self.t.max_minutes)
                break
            epoch_start = time.perf_counter()
            seed_everything(derive_seed(self.seed, "epoch", epoch))  # resumption replays the same epochs
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "augment", epoch))
            order = self.train_idx[torch.randperm(len(self.train_idx), generator=generator).numpy()]
            batches = [order[i : i + int(self.t.batch_size)] for i in range(0, len(order), int(self.t.batch_size))]
            totals: dict[str, float] = {}
            for batch in tqdm(batches, desc=f"{self.t.stage} epoch {epoch}", unit="batch", leave=False):
                x, y = self.dataset.load(batch.tolist())
                x = augment(x, generator) if self.t.augment else x
                for k, v in self.step(x.to(self.device), y.to(self.device), epoch).items():
                    totals[k] = totals.get(k, 0.0) + v / len(batches)
            record = {"epoch": epoch, **{k: round(v, 4) for k, v in totals.items()}}
            if (epoch + 1) % int(self.t.val_every) == 0 or epoch + 1 == int(self.t.epochs):
                record.update(self.validate())
            history.append(record)
            checkpoint.save(self.out, self.checkpoint_state(epoch, history))
            epoch_s = time.perf_counter() - epoch_start
            log.info("%s", record)
        return {"out": str(self.out), "epochs_done": len(history), "history": history}
