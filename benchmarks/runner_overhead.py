"""Runner overhead: PGD on resnet20 through `evaluate` (defense=none) vs the same attack called directly.

The runner adds a clean and an adversarial prediction per batch (an identity purifier reuses them
for SA and RA), the randomness and zero-gradient checks and its bookkeeping; target: at most 1.05x
the attack alone. Measured for PGD-10 and PGD-50: the per-batch cost is roughly constant, so its share shrinks
with the attack's length. Run: python -m benchmarks.runner_overhead
"""

from __future__ import annotations

import shutil

import torch
from omegaconf import DictConfig

from benchmarks.common import config, interleaved_median_seconds, scratch
from purebench.attacks import ATTACKS, Attack
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.eval.runner import evaluate
from purebench.seeding import derive_seed, seed_everything

N, BATCH = 256, 128
STEPS = (10, 50)


def main() -> None:
    torch.set_num_threads(2)
    data = DATASETS.build("cifar10", root=str(config().dataset.root))
    x, y = data.load(range(N))
    model = CLASSIFIERS.build("resnet20")
    out = scratch("overhead")
    for steps in STEPS:
        attack = ATTACKS.build(
            "pgd", norm="Linf", eps=8 / 255, seed=0, verbose=False, alpha=2 / 255, steps=steps, random_start=True
        )

        def direct(attack: Attack = attack) -> None:
            for start in range(0, N, BATCH):
                seed_everything(derive_seed(0, "attack", start))
                attack(model, x[start : start + BATCH], y[start : start + BATCH])

        cfg = config("defense=none", "attack=pgd", f"attack.steps={steps}", "attack.verbose=false", f"n_examples={N}",
                     f"batch_size={BATCH}", "figures=0", "threads=2", f"results_dir={out}")  # fmt: skip

        def through_runner(cfg: DictConfig = cfg) -> None:
            shutil.rmtree(out, ignore_errors=True)  # no cached adversarial examples, no resumable batches
            evaluate(cfg)

        t_direct, t_runner = interleaved_median_seconds([direct, through_runner])
        print(f"| runner overhead | PGD-{steps}, resnet20, {N} images | direct {t_direct:.2f} s "
              f"| runner {t_runner:.2f} s | {t_runner / t_direct:.3f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
