"""AToP training: purifier pretraining on L_org and adversarial fine-tuning (Algorithm 1).

- ``pretrain``: the purifier learns to restore transformed clean training images (L_org: L1 on
  both DeepFill stages in [-1, 1] units as the authors' code, the U-Net's L1, or L_mae). Labels are
  not used, so ``train.extra_images`` may add other datasets' images.
- ``finetune`` (Algorithm 1): the classifier is frozen; each step crafts x' against the
  classifier (line 3; FGSM 8/255 by default, as the authors' code) and updates the purifier on
  L_org + lambda * CE(y, F(g(t(x')))) (line 4, Eq. 5 and 9) from ``train.cls_start_epoch`` on.
  ``train.objective`` says what L_org reconstructs: ``logged`` (default) x from a clean pass g(t(x))
  with the same mask and noise as the CE pass, as the logged notebook "0..1 cifar-miss-gau-adv";
  ``eq9`` x' from g(t(x')) (Eq. 9, cifar-miss-gau-adv.ipynb); ``restore`` x from g(t(x')).
  ``finetune_on=clean`` uses the clean images as x' (Fig. 4a).
- DeepFill's SN-PatchGAN discriminator is trained on hinge loss as in the code (real: the L1 target,
  fake: the L1 pass); its generator term reaches G only with ``train.gan_weight`` > 0 (the code
  detaches it; Eq. 9's text has it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from purebench.attacks import ATTACKS, Attack
from purebench.defenses.atop import AToP, build_purifier, load_purifier
from purebench.defenses.atop.deepfill import PatchDiscriminator
from purebench.defenses.atop.transforms import RandomTransform, resize
from purebench.errors import PurebenchError
from purebench.eval.runner import group_params
from purebench.train import checkpoint
from purebench.train.base import Trainer

STAGES = ("pretrain", "finetune")
FINETUNE_ON = ("adversarial", "clean")
# train.objective -> (input of the L1 pass, L1 target): x or x' (conf/train/atop.yaml)
OBJECTIVES = {"logged": ("x", "x"), "eq9": ("x_adv", "x_adv"), "restore": ("x_adv", "x")}


class AToPTrainer(Trainer):
    """See the module docstring for the stages and conf/train/atop.yaml for the knobs."""

    purifier_keys = ("transform", "purifier", "sigma", "grid", "missing_rate", "n_masks", "work_size", "purifier_size")
    label_free_stages = ("pretrain",)

    def __init__(self, cfg: DictConfig) -> None:
        if cfg.train.stage not in STAGES:
            raise PurebenchError(f"train.stage must be one of {', '.join(STAGES)}, got '{cfg.train.stage}'.")
        for key, allowed in (("finetune_on", FINETUNE_ON), ("objective", tuple(OBJECTIVES))):
            if cfg.train[key] not in allowed:
                raise PurebenchError(f"train.{key} must be one of {', '.join(allowed)}, got '{cfg.train[key]}'.")
        if cfg.train.stage == "finetune" and not cfg.train.init:
            raise PurebenchError("train.stage=finetune needs train.init=PATH, the pretrained purifier checkpoint.")
        super().__init__(cfg)
        d = cfg.defense
        self.transform = RandomTransform(
            d.transform, d.sigma, d.grid, d.missing_rate, d.n_masks, d.work_size, d.purifier_size
        )
        blocks = {k: OmegaConf.to_container(d[k]) for k in ("deepfill", "mae", "unet")}
        self.purifier = build_purifier(d.purifier, self.transform.purifier_size, blocks).to(self.device)
        betas = tuple(self.t.betas)
        self.networks["purifier"] = self.purifier
        self.optimizers["purifier"] = torch.optim.Adam(self.purifier.parameters(), lr=self.t.lr, betas=betas)
        self.discriminator = None
        if self.purifier.adversarial:
            self.discriminator = PatchDiscriminator(self.t.discriminator_cnum).to(self.device)
            self.networks["discriminator"] = self.discriminator
            self.optimizers["discriminator"] = torch.optim.Adam(
                self.discriminator.parameters(), lr=self.t.lr, betas=betas
            )
        self.adversary: Attack = ATTACKS.build(
            self.t.adversary.name, seed=self.seed, verbose=False, **group_params(self.t.adversary)
        )
        self.validation_attack = self.adversary  # validation RA: the training adversary on the classifier

    def purifier_config(self) -> dict[str, Any]:
        """The transform keys and the block of the purifier in use (``deepfill``, ``mae`` or ``unet``)."""
        kind = self.config["defense"]["purifier"]
        return {**super().purifier_config(), kind: self.config["defense"][kind]}

    def initialise(self) -> None:
        """Finetune starts from the pretrained purifier (and its discriminator when there is one)."""
        if self.t.stage != "finetune":
            return
        load_purifier(self.purifier, str(self.t.init))
        init = checkpoint.load(Path(str(self.t.init)).expanduser())
        if self.discriminator is not None and init.get("discriminator"):
            self.discriminator.load_state_dict(init["discriminator"])

    # ---- losses ----------------------------------------------------------------------------
    def _generate(self, views: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, ...]]:
        """Per view: (coarse, refined) for DeepFill, (reconstruction,) for the MAE and the U-Net."""
        if self.discriminator is not None:
            return [self.purifier.stages(x_t, m) for x_t, m in views]
        return [(self.purifier(x_t, m),) for x_t, m in views]

    def _reconstruction(self, views, outputs, target: torch.Tensor) -> torch.Tensor:
        """L1 on both DeepFill stages in [-1, 1] units (the code's ae_loss1 + ae_loss2), or the purifier's own
        reconstruction loss, averaged over views."""
        if self.discriminator is not None:
            return sum(2 * ((o[0] - target).abs().mean() + (o[1] - target).abs().mean()) for o in outputs) / len(
                outputs
            )
        return sum(
            self.purifier.reconstruction_loss(o[0], target, m) for (_, m), o in zip(views, outputs, strict=True)
        ) / len(outputs)

    def _discriminator_step(self, views, outputs, target: torch.Tensor) -> float:
        """Hinge loss on real images vs the purifier's outputs (detached), one mask per view."""
        optimizer = self.optimizers["discriminator"]
        optimizer.zero_grad(set_to_none=True)
        loss = sum(
            0.5 * F.relu(1 - self.discriminator(target, m)).mean()
            + 0.5 * F.relu(1 + self.discriminator(o[-1].detach(), m)).mean()
            for (_, m), o in zip(views, outputs, strict=True)
        ) / len(outputs)
        loss.backward()
        optimizer.step()
        return loss.item()

    def step(self, batch: tuple[torch.Tensor, ...], epoch: int) -> dict[str, float]:
        x, y = batch
        finetune = self.t.stage == "finetune"
        with_ce = finetune and epoch >= self.t.cls_start_epoch
        pass_in, pass_target = OBJECTIVES[str(self.t.objective)]
        images = {"x": x, "x_adv": x}
        if finetune and self.t.finetune_on == "adversarial" and (with_ce or "x_adv" in (pass_in, pass_target)):
            images["x_adv"] = self.adversary(self.classifier, x, y)  # Algorithm 1 line 3: x' against the classifier
        target = self.transform.target(images[pass_target])
        self.purifier.train()
        if self.discriminator is not None:
            self.discriminator.train()
        draws = self.transform.draw(x)  # one mask and noise for both passes, as the notebooks
        views = self.transform.apply(images[pass_in], draws)
        outputs = self._generate(views)
        losses: dict[str, float] = {}
        if self.discriminator is not None:
            losses["d"] = self._discriminator_step(views, outputs, target)
        self.optimizers["purifier"].zero_grad(set_to_none=True)
        loss = self.t.l1_weight * self._reconstruction(views, outputs, target)
        losses["rec"] = loss.item()
        if self.discriminator is not None and self.t.gan_weight:  # hinge generator loss on the refined output
            gan = -sum(self.discriminator(o[-1], m).mean() for (_, m), o in zip(views, outputs, strict=True)) / len(
                views
            )
            loss = loss + self.t.gan_weight * gan
            losses["gan"] = gan.item()
        if with_ce:  # Eq. 5 / 9: lambda * CE(y, F(g(t(x')))); logged notebook: `outputs_cls = self.res(adv_x2)`
            if images[pass_in] is not images["x_adv"]:  # the logged objective's second pass, on x'
                views = self.transform.apply(images["x_adv"], draws)
                outputs = [(self.purifier(x_t, m),) for x_t, m in views]
            x_hat = resize(self.transform.combine(views, [o[-1] for o in outputs]), x.shape[-1]).clamp(0, 1)
            ce = F.cross_entropy(self.classifier(x_hat), y)
            loss = loss + self.t.lambda_cls * ce
            losses["ce"] = ce.item()
        loss.backward()
        self.optimizers["purifier"].step()
        return losses

    def validation_defense(self) -> AToP:
        return AToP(self.transform, self.purifier)
