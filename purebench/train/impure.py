"""IMPure training (impure.txt Algorithm 1, Eq. 10-15).

Pairs (x_adv, x) come from the adversarial cache: every configured attack (paper: FGSM, PGD,
MI-FGSM, DI-FGSM, APGD-CE, APGD-DLR, CW, DeepFool at 16/255) run once against the classifier on the
training split. Each step: x_hat = R(x_adv) with a random division and random noise intensity
(line 3), the Random Combination Module x' = x_hat * u + x_adv * (1 - u) with u uniform per patch
(line 4, Eq. 10), and L = L_pix(x_hat, x) + sum_i lambda_i L_per_i(x', x) (line 5, Eq. 12-15) on
the layers of a feature network F (VGG19 in the paper; any registered classifier here, by
default the pretrained resnet56, a network other than the victim). AdamW (0.9, 0.95), cosine
learning-rate schedule over the epochs (Sec. 4.1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from purebench.classifiers import CLASSIFIERS
from purebench.defenses.impure import IMPure, build_riae
from purebench.errors import PurebenchError
from purebench.seeding import rand_like
from purebench.train.adversarial_cache import adversarial_pairs
from purebench.train.base import Trainer

LOGITS, EMBEDDING = "logits", "embedding"  # feature names of the pre-softmax output and the penultimate features


def random_combination(x_hat: torch.Tensor, x_adv: torch.Tensor, patch_size: int) -> torch.Tensor:
    """RCM (Eq. 10): x' = x_hat * u + x_adv * (1 - u), u in [0, 1] constant on each patch."""
    b, _, h, w = x_hat.shape
    u = rand_like(torch.empty(b, 1, h // patch_size, w // patch_size, device=x_hat.device))
    u = u.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return x_hat * u + x_adv * (1 - u)


class ImpureTrainer(Trainer):
    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        d = cfg.defense
        if len(self.t.feature_layers) != len(self.t.feature_weights):
            raise PurebenchError("train.feature_layers and train.feature_weights must have the same length.")
        self.riae = build_riae(d.image_size, OmegaConf.to_container(d.model)).to(self.device)
        self.networks["purifier"] = self.riae
        self.optimizers["purifier"] = torch.optim.AdamW(self.riae.parameters(), lr=self.t.lr, betas=tuple(self.t.betas))
        self.feature_net = CLASSIFIERS.build(self.t.feature_net).to(self.device)
        self.defense = IMPure(self.riae, d.division, d.masking, d.t_image, d.t_feature)
        self.all_idx = sorted([*self.train_idx.tolist(), *self.val_idx.tolist()])
        self.x_adv, _ = adversarial_pairs(
            Path(str(self.t.cache_dir)), self.dataset, self.all_idx, self.classifier,
            OmegaConf.to_container(self.t.attacks, resolve=True), self.t.norm, self.t.eps, self.seed,
            int(self.t.batch_size),
        )  # fmt: skip
        self.position = {index: k for k, index in enumerate(self.all_idx)}

    # ---- data: (x_adv, x, y) over every (attack, training image) pair -------------------------
    def n_batches(self) -> int:
        return -(-self.x_adv.shape[0] * len(self.train_idx) // int(self.t.batch_size))

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        n_attacks, n = self.x_adv.shape[0], len(self.train_idx)
        order = torch.randperm(n_attacks * n, generator=generator)
        for start in range(0, len(order), int(self.t.batch_size)):
            chosen = order[start : start + int(self.t.batch_size)]
            attack, image = chosen // n, chosen % n
            indices = self.train_idx[image.numpy()].tolist()
            x, y = self.dataset.load(indices)
            positions = torch.tensor([self.position[i] for i in indices])
            yield self.x_adv[attack, positions], x, y

    # ---- loss -------------------------------------------------------------------------------
    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        layers = [layer for layer in self.t.feature_layers if layer not in (LOGITS, EMBEDDING)]
        logits, feats = self.feature_net.features(x, layers, embedding=EMBEDDING in self.t.feature_layers)
        return {**feats, LOGITS: logits}

    def perceptual(self, combined: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """sum_i lambda_i * L1(F_i(x'), F_i(x)) (Eq. 13-14), the L1 a mean over every element.

        Eq. 13 prints 1/(H_F W_F) ||.||_1; the authors' code takes the mean over channels too
        (L1Loss), which is the scale at which the weights 30/10/5 balance the pixel term.
        """
        with torch.no_grad():
            target = self._features(x)
        current = self._features(combined)
        return sum(
            weight * (current[layer] - target[layer]).abs().mean()
            for layer, weight in zip(self.t.feature_layers, self.t.feature_weights, strict=True)
        )

    def begin_epoch(self, epoch: int) -> None:
        """Cosine annealing of the learning rate over train.epochs (Sec. 4.1)."""
        lr = 0.5 * self.t.lr * (1 + math.cos(math.pi * epoch / int(self.t.epochs)))
        for group in self.optimizers["purifier"].param_groups:
            group["lr"] = lr

    def step(self, batch: tuple[torch.Tensor, ...], epoch: int) -> dict[str, float]:
        x_adv, x, _ = batch
        self.riae.train()
        b = x.shape[0]
        noise = rand_like(torch.empty(b, 2))  # random noise intensity per image (training)
        t_image = (self.t.t_image_range[0] + noise[:, 0] * (self.t.t_image_range[1] - self.t.t_image_range[0])).long()
        t_feature = (
            self.t.t_feature_range[0] + noise[:, 1] * (self.t.t_feature_range[1] - self.t.t_feature_range[0])
        ).long()
        x_hat = self.riae(x_adv, self.riae.division(x_adv, self.t.division), self.defense.masking, t_image, t_feature)
        pixel = (x_hat - x).abs().mean()  # Eq. 12 (mean over pixels and channels, as the code's L1Loss)
        perceptual = self.perceptual(random_combination(x_hat, x_adv, self.riae.patch_size), x)  # Eq. 10, 13-14
        loss = pixel + perceptual  # Eq. 15
        self.optimizers["purifier"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["purifier"].step()
        return {"pix": pixel.item(), "per": perceptual.item()}

    def validate(self) -> dict[str, float]:
        """SA on clean and RA on every cached attack of the held-out images, test-time settings."""
        positions = torch.tensor([self.position[i] for i in self.val_idx.tolist()])
        x, y = self.dataset.load(self.val_idx.tolist())
        x, y = x.to(self.device), y.to(self.device)
        with torch.no_grad():
            sa = (self.classifier(self.defense.purify(x)).argmax(1) == y).float().mean()
            ra = torch.stack([
                (self.classifier(self.defense.purify(self.x_adv[a, positions].to(self.device))).argmax(1) == y).float().mean()
                for a in range(self.x_adv.shape[0])
            ])  # fmt: skip
        return {"val_sa": round(100 * sa.item(), 2), "val_ra": round(100 * ra.mean().item(), 2)}
