"""Runner overhead: PGD-10 on resnet20 through `evaluate` (defense=none) vs the same attack called directly.

The runner adds a clean, an SA, an adversarial and an RA prediction per batch and its bookkeeping;
target: at most 1.05x the attack alone. Run: python -m benchmarks.runner_overhead
"""

from __future__ import annotations

import shutil

import torch

from benchmarks.common import config, median_seconds, scratch
from purebench.attacks import ATTACKS
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.eval.runner import evaluate
from purebench.seeding import derive_seed, seed_everything

N, BATCH = 256, 128


def main() -> None:
    torch.set_num_threads(2)
    data = DATASETS.build("cifar10", root=str(config().dataset.root))
    x, y = data.load(range(N))
    model = CLASSIFIERS.build("resnet20")
    attack = ATTACKS.build(
        "pgd", norm="Linf", eps=8 / 255, seed=0, verbose=False, alpha=2 / 255, steps=10, random_start=True
    )

    def direct() -> None:
        for start in range(0, N, BATCH):
            seed_everything(derive_seed(0, "attack", start))
            attack(model, x[start : start + BATCH], y[start : start + BATCH])

    out = scratch("overhead")

    def through_runner() -> None:
        shutil.rmtree(out, ignore_errors=True)  # no cached adversarial examples, no resumable batches
        evaluate(config("defense=none", "attack=pgd", "attack.verbose=false", f"n_examples={N}", f"batch_size={BATCH}",
                        "figures=0", "threads=2", f"results_dir={out}"))  # fmt: skip

    t_direct, t_runner = median_seconds(direct), median_seconds(through_runner)
    print(f"| runner overhead | PGD-10, resnet20, {N} images | direct {t_direct:.2f} s | runner {t_runner:.2f} s "
          f"| {t_runner / t_direct:.3f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
