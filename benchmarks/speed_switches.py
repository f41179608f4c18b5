"""The classifier's speed switches (amp, channels_last, compile) on the attack's inner loop.

Times PGD-10 on resnet20 (CIFAR-10) with each switch against the eager float32 model on the same
images and reports the speed-up, the adversarial accuracy and how many predictions change. On a GPU machine this is the
measurement the switches exist for; on a CPU it shows what they cost or save there.
Compilation happens in the untimed warm-up. Run: python -m benchmarks.speed_switches [cuda]
"""

from __future__ import annotations

import sys

import torch

from benchmarks.common import config, median_seconds
from purebench.attacks import ATTACKS
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.seeding import seed_everything

N = 256
SETTINGS = {  # name -> accelerate(amp, channels_last, compile_backend)
    "eager float32": (False, False, None),
    "channels_last": (False, True, None),
    "amp": (True, False, None),
    "compile (inductor)": (False, False, "inductor"),
    "all three": (True, True, "inductor"),
}


def main() -> None:
    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")
    torch.set_num_threads(2)
    x, y = DATASETS.build("cifar10", root=str(config().dataset.root)).load(range(N))
    x, y = x.to(device), y.to(device)
    attack = ATTACKS.build("pgd", norm="Linf", eps=8 / 255, seed=0, verbose=False, alpha=2 / 255, steps=10)
    reference_pred, reference_time = None, None
    for name, (amp, channels_last, backend) in SETTINGS.items():
        model = CLASSIFIERS.build("resnet20").to(device).accelerate(amp, channels_last, backend)

        def run(model: torch.nn.Module = model) -> torch.Tensor:
            seed_everything(0)
            x_adv = attack(model, x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return x_adv

        seconds = median_seconds(run)
        x_adv = run()
        with torch.no_grad():
            pred = model(x_adv).argmax(1)
        if reference_pred is None:
            reference_pred, reference_time = pred, seconds
        changed, robust = int((pred != reference_pred).sum()), 100.0 * float((pred == y).float().mean())
        print(f"| {name} | PGD-10, resnet20, {N} images, {device.type} | {seconds:.2f} s "
              f"| {reference_time / seconds:.2f}x | adversarial accuracy {robust:.2f}% "
              f"| {changed}/{N} predictions differ from eager |")  # fmt: skip


if __name__ == "__main__":
    main()
