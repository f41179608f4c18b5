"""ZeroPur throughput (images/s) against the bound set by its forward/backward passes.

One purification = T_g Guided-Shift steps (embed(x) and embed(blur(x)) forward, backward through
embed(x)) + T_p Adaptive-Projection steps (feature forward + backward) + the features of x_init and
x_g. The bound times those passes alone on the same batch; the ratio says how much the algorithm's
bookkeeping (blur, projections, perceptual distance, clipping) costs on top (target: at most 1.2x).
Run: python -m benchmarks.zeropur_throughput [cpu|cuda] [classifier] [batch] [config override ...]
(timings do not depend on the weights: ``classifier.pretrained=false`` runs where they are absent)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from benchmarks.common import config, interleaved_median_seconds
from purebench.allocator import keep_freed_memory
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.defenses import DEFENSES
from purebench.eval.runner import group_params


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    name = sys.argv[2] if len(sys.argv) > 2 else "resnet20"
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    if device == "cpu":
        torch.set_num_threads(2)
    keep_freed_memory()  # as evaluate() does
    cfg = config(f"classifier={name}", *sys.argv[4:])
    x, _ = DATASETS.build("cifar10", root=str(cfg.dataset.root)).load(range(batch))
    x = x.to(device)
    model = CLASSIFIERS.build(name, **group_params(cfg.classifier)).to(device)
    zeropur = DEFENSES.build("zeropur", classifier=model, **group_params(cfg.defense))
    layers = sorted(set(zeropur.ap_layers) | set(zeropur.perceptual_layers))

    def gradient(output: torch.Tensor, z: torch.Tensor) -> None:
        torch.autograd.grad(output, z)

    def passes() -> None:
        for _ in range(zeropur.gs_steps):  # GS: embed(x) and embed(blur(x)) forward, backward through embed(x)
            z = x.clone().requires_grad_(True)
            gradient(model.embed(z).sum() + model.embed(z.detach()).sum(), z)
        model.features(x, layers)  # AP: the features of x_init and x_g
        model.features(x, zeropur.ap_layers)
        for _ in range(zeropur.ap_steps):  # AP: one feature pass, one backward
            z = x.clone().requires_grad_(True)
            _, feats = model.features(z, layers)
            gradient(sum(f.sum() for f in feats.values()), z)

    def synchronised(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        return run

    t_purify, t_bound = interleaved_median_seconds([synchronised(lambda: zeropur.purify(x)), synchronised(passes)])
    print(f"| ZeroPur throughput | {name}, batch {batch}, T_g {zeropur.gs_steps}, T_p {zeropur.ap_steps}, {device} "
          f"| {batch / t_purify:.1f} img/s | passes alone {batch / t_bound:.1f} img/s "
          f"| {t_purify / t_bound:.2f}x the bound |")  # fmt: skip


if __name__ == "__main__":
    main()
