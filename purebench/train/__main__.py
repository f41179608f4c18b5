"""``python -m purebench.train defense=atop train.stage=pretrain train.out=PATH ...``.

Composes conf/train.yaml (the dataset's training split, the frozen classifier, the defense and
its ``train`` block) and runs that defense's trainer. Errors exit with status 2 and one paragraph.
"""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from omegaconf import DictConfig

from purebench.config_paths import CONF_DIR
from purebench.errors import PurebenchError

log = logging.getLogger("purebench.train")


def _trainers() -> dict:
    from purebench.train.atop import AToPTrainer
    from purebench.train.diffpure import DiffPureTrainer
    from purebench.train.impure import ImpureTrainer

    return {"atop": AToPTrainer, "diffpure": DiffPureTrainer, "impure": ImpureTrainer}


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    try:
        trainers = _trainers()
        if cfg.defense.name not in trainers:
            raise PurebenchError(
                f"defense '{cfg.defense.name}' has no trainer; trainable defenses: {', '.join(sorted(trainers))}."
            )
        if int(cfg.threads) > 0:
            torch.set_num_threads(int(cfg.threads))
        trainer = trainers[cfg.defense.name](cfg)
        trainer.command = " ".join(["python -m purebench.train", *sys.argv[1:]])
        result = trainer.run()
    except PurebenchError as exc:
        log.error("%s", exc)
        print(f"purebench.train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    last = result["history"][-1] if result["history"] else {}
    print(f"\npurebench.train: {result['epochs_done']} epochs in {result['out']}; last epoch: {last}", flush=True)
    return result


if __name__ == "__main__":
    main()
