"""ZeroPur throughput (images/s) against the bound set by its forward/backward passes.

One purification = T_g Guided-Shift steps (embed(x) and embed(blur(x)) forward, backward through
embed(x)) + T_p Adaptive-Projection steps (feature forward + backward) + the reference features.
The bound times those passes alone on the same batch; the ratio says how much the algorithm's
bookkeeping (blur, projections, clipping) costs on top. Run: python -m benchmarks.zeropur_throughput
"""

from __future__ import annotations

import torch

from benchmarks.common import config, interleaved_median_seconds
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.defenses import DEFENSES
from purebench.eval.runner import group_params

BATCH = 64


def main() -> None:
    torch.set_num_threads(2)
    cfg = config()
    x, _ = DATASETS.build("cifar10", root=str(cfg.dataset.root)).load(range(BATCH))
    model = CLASSIFIERS.build("resnet20")
    zeropur = DEFENSES.build("zeropur", classifier=model, **group_params(cfg.defense))

    def passes() -> None:
        layers = model.stages
        for _ in range(zeropur.gs_steps):  # GS: two embeddings, one backward
            z = x.clone().requires_grad_(True)
            (model.embed(z).sum() + model.embed(z.detach()).sum()).backward()
        model.features(x, layers)  # AP reference features
        for _ in range(zeropur.ap_steps):  # AP: one feature pass, one backward
            z = x.clone().requires_grad_(True)
            _, feats = model.features(z, layers)
            sum(f.sum() for f in feats.values()).backward()

    t_purify, t_bound = interleaved_median_seconds([lambda: zeropur.purify(x), passes])
    print(f"| ZeroPur throughput | resnet20, batch {BATCH}, T_g 10, T_p 50 | {BATCH / t_purify:.1f} img/s "
          f"| passes alone {BATCH / t_bound:.1f} img/s | {t_purify / t_bound:.2f}x the bound |")  # fmt: skip


if __name__ == "__main__":
    main()
