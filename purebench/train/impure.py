"""IMPure training (impure.txt Algorithm 1, Eq. 10-15; authors' code per NOTES.md): pretraining, then fine-tuning.

- ``pretrain`` (code: ``shell/pretrain.sh``, 100 epochs on clean images): the RIAE rebuilds clean
  training images under the same division and information masking, on the pixel L1 alone. No
  labels and no attacks, so ``train.extra_images`` may add other datasets' images.
- ``finetune`` (Algorithm 1): pairs (x_adv, x) come from the adversarial cache: every configured
  attack (paper: FGSM, PGD, MI-FGSM, DI-FGSM, APGD-CE, APGD-DLR, CW, DeepFool at 16/255) run once
  against the classifier on the training split. Each step: x_hat = R(x_adv) with a random division
  and random noise intensity (line 3), the Random Combination Module (line 4, Eq. 10) and
  L = L_pix(x_hat, x) + sum_i lambda_i L_per_i(x', x) (line 5, Eq. 12-15) on the layers of a
  feature network F (VGG19 in the paper; any registered classifier here, by default the pretrained
  resnet56, a network other than the victim). ``train.init`` starts from a pretrained RIAE.

The pixel L1 is taken in ImageNet-normalised units, as the code's (so the perceptual weights
balance it as there). Validation: SA on held-out clean images and RA against ``train.val_attack``
crafted once on the classifier (oblivious), with the test-time settings of the defense.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from purebench.attacks import ATTACKS
from purebench.classifiers import CLASSIFIERS
from purebench.classifiers.checkpoints import load_weights
from purebench.defenses.impure import IMPure, build_riae
from purebench.errors import PurebenchError
from purebench.eval.runner import group_params
from purebench.seeding import rand_like
from purebench.train.adversarial_cache import adversarial_pairs
from purebench.train.base import Trainer

LOGITS, EMBEDDING = "logits", "embedding"  # feature names of the pre-softmax output and the penultimate features
STAGES = ("pretrain", "finetune")
FINETUNE_ON = {"adversarial": 0.0, "mixed": 0.5, "clean": 1.0}  # share of the inputs replaced by the clean image
RCM_MODES = ("code", "per_image", "paper")
RCM_CHUNKS = (2, 4)  # code: k = torch.randint(2, mask_chunks + 1) with mask_chunks 4


def random_combination(x_hat: torch.Tensor, x_adv: torch.Tensor, patch_size: int, mode: str) -> torch.Tensor:
    """RCM: x' = x_hat * u + x_adv * (1 - u) with u constant on each patch.

    ``code`` (the authors' gen_random_masks, composite imgs*(1-mask)+pred*mask): one k in {2, 3, 4}
    and one chunk j < k per batch; each image's patches in a random order, the positions
    [e_j, e_{j+1}) with e = round(linspace(0, L - 1, k + 1)) taken from x_adv (an exact count).
    ``per_image`` (purebench before): each patch from x_adv with probability 1/k, k per image.
    ``paper`` (Eq. 10): u ~ U[0, 1] per patch.
    """
    b, _, h, w = x_hat.shape
    grid = (h // patch_size, w // patch_size)
    u = rand_like(torch.empty(b, 1, *grid, device=x_hat.device))
    if mode == "code":
        n = grid[0] * grid[1]
        k = int(torch.randint(RCM_CHUNKS[0], RCM_CHUNKS[1] + 1, ()))  # per batch: the trainer's seeded global stream
        j = int(torch.randint(k, ()))
        edges = np.linspace(0, n - 1, k + 1).round().astype(int)
        chosen = u.view(b, n).argsort(dim=1)[:, edges[j] : edges[j + 1]]  # per-image random patch order
        u = torch.ones(b, n, device=x_hat.device, dtype=x_hat.dtype).scatter(1, chosen, 0.0).view(b, 1, *grid)
    elif mode == "per_image":
        k = 2 + (rand_like(torch.empty(b, 1, 1, 1, device=x_hat.device)) * 3).floor()
        u = (u >= 1 / k).to(x_hat.dtype)
    elif mode != "paper":
        raise PurebenchError(f"train.rcm must be one of {', '.join(RCM_MODES)}, got '{mode}'.")
    u = u.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return x_hat * u + x_adv * (1 - u)


def decay_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as timm's param_groups_weight_decay (the code's optimiser): biases and other 1-D
    parameters (norms) without weight decay. The fusion weights are 1-D here but 4-D (k+1, 1, 1, 1) in
    the code, so they keep theirs."""
    decay, exempt = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (exempt if (param.ndim <= 1 and name != "fusion_weights") or name.endswith(".bias") else decay).append(
                param
            )
    return [{"params": exempt, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


class ImpureTrainer(Trainer):
    purifier_keys = ("image_size", "masking", "model")
    label_free_stages = ("pretrain",)

    def __init__(self, cfg: DictConfig) -> None:
        if cfg.train.stage not in STAGES:
            raise PurebenchError(f"train.stage must be one of {', '.join(STAGES)}, got '{cfg.train.stage}'.")
        if cfg.train.finetune_on not in FINETUNE_ON:
            raise PurebenchError(
                f"train.finetune_on must be one of {', '.join(FINETUNE_ON)}, got '{cfg.train.finetune_on}'."
            )
        super().__init__(cfg)
        d = cfg.defense
        if len(self.t.feature_layers) != len(self.t.feature_weights):
            raise PurebenchError("train.feature_layers and train.feature_weights must have the same length.")
        self.riae = build_riae(d.image_size, OmegaConf.to_container(d.model)).to(self.device)
        self.networks["purifier"] = self.riae
        self.optimizers["purifier"] = torch.optim.AdamW(
            decay_groups(self.riae, float(self.t.weight_decay)), lr=self.t.lr, betas=tuple(self.t.betas)
        )
        self.defense = IMPure(self.riae, d.division, d.masking, d.t_image, d.t_feature, d.eval_pad)
        self.finetune = self.t.stage == "finetune"
        self.feature_net = CLASSIFIERS.build(self.t.feature_net).to(self.device) if self.finetune else None
        self.x_adv = None
        if self.finetune:  # the cache covers train and validation images (its key, shared with earlier runs)
            self.all_idx = sorted([*self.train_idx.tolist(), *self.val_idx.tolist()])
            self.position = {index: k for k, index in enumerate(self.all_idx)}
            self.x_adv, _ = adversarial_pairs(
                Path(str(self.t.cache_dir)), self.dataset, self.all_idx, self.classifier,
                OmegaConf.to_container(self.t.attacks, resolve=True), self.t.norm, self.t.eps, self.seed,
                int(self.t.batch_size),
            )  # fmt: skip
        self.validation_attack = ATTACKS.build(
            self.t.val_attack.name, seed=self.seed, verbose=False, norm=self.t.norm, eps=self.t.eps,
            **group_params(self.t.val_attack),
        )  # fmt: skip

    def initialise(self) -> None:
        """Fine-tuning starts from the pretrained RIAE when ``train.init`` names one."""
        if self.t.init:
            load_weights(self.riae, str(self.t.init), hint="train.init must be an IMPure checkpoint of this model.")

    # ---- data: clean images (pretrain) or (x_adv, x, y) over every (attack, training image) pair ---------
    def n_batches(self) -> int:
        if not self.finetune:
            return super().n_batches()
        return -(-self.x_adv.shape[0] * len(self.train_idx) // int(self.t.batch_size))

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        if not self.finetune:
            yield from super().batches(epoch, generator)
            return
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
        (L1Loss), which is the scale at which the weights 30/10/10 balance the pixel term.
        """
        with torch.no_grad():
            target = self._features(x)
        current = self._features(combined)
        return sum(
            weight * (current[layer] - target[layer]).abs().mean()
            for layer, weight in zip(self.t.feature_layers, self.t.feature_weights, strict=True)
        )

    def step(self, batch: tuple[torch.Tensor, ...], epoch: int) -> dict[str, float]:
        x_in, x = (batch[0], batch[1]) if self.finetune else (batch[0], batch[0])
        clean_share = FINETUNE_ON[str(self.t.finetune_on)] if self.finetune else 0.0
        if clean_share:  # not in the paper (CPU scale): some inputs are the clean image, so SA is trained too
            clean_rows = rand_like(torch.empty(x.shape[0], device=x.device)) < clean_share
            x_in = torch.where(clean_rows.view(-1, 1, 1, 1), x, x_in)
        self.riae.train()
        b, (i_lo, i_hi), (f_lo, f_hi) = x.shape[0], self.t.t_image_range, self.t.t_feature_range
        noise = rand_like(torch.empty(b, 1 + self.riae.subsets))  # random noise steps (training; code)
        t_image = (i_lo + noise[:, 0] * (i_hi - i_lo)).long()  # one per image
        t_feature = (f_lo + noise[:, 1:] * (f_hi - f_lo)).long()  # one per image and subset (code: drawn per chunk)
        division = self.riae.division(x_in, self.t.division)
        predicted = self.riae.predict(x_in, division, self.defense.masking, t_image, t_feature)
        pixel = (predicted - self.riae.normalise(x)).abs().mean()  # Eq. 12, normalised units, unclamped (code)
        losses = {"pix": pixel}
        x_hat = predicted * self.riae.std + self.riae.mean  # the code's unnormalize(pred), unclamped
        if self.finetune:  # Eq. 10, 13-14
            combined = random_combination(x_hat, x_in, self.riae.patch_size, str(self.t.rcm))
            losses["per"] = self.perceptual(combined, x)
        loss = sum(losses.values())  # Eq. 15
        self.optimizers["purifier"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["purifier"].step()
        return {k: v.item() for k, v in losses.items()}

    def validation_defense(self) -> IMPure:
        return self.defense
