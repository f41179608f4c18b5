"""Sweep of 3 defenses under one oblivious attack, with and without the adversarial-example cache.

Target: the attack runs once for the whole sweep, so the sweep costs one attack plus three
purifications. Counts attack calls and times both ways. Run: python -m benchmarks.sweep_cache
"""

from __future__ import annotations

import shutil
import time

from benchmarks.common import config, scratch
from purebench.attacks.base import Attack
from purebench.eval.runner import evaluate

DEFENSES = ("gaussian_blur", "median_blur", "gaussian_noise")
COMMON = ["attack=pgd", "attack.verbose=false", "n_examples=256", "batch_size=128", "figures=0", "threads=2"]


def sweep(shared_cache: bool) -> tuple[float, int]:
    calls = 0
    original = Attack.__call__

    def counting(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        return original(self, *args, **kwargs)

    Attack.__call__ = counting
    start = time.perf_counter()
    try:
        for i, defense in enumerate(DEFENSES):
            out = scratch("sweep-shared" if shared_cache else f"sweep-{i}")
            evaluate(config(f"defense={defense}", *COMMON, f"results_dir={out}"))
    finally:
        Attack.__call__ = original
    return time.perf_counter() - start, calls


def main() -> None:
    shutil.rmtree(scratch(""), ignore_errors=True)
    sweep(shared_cache=False)  # warm-up (imports, weights, data)
    shutil.rmtree(scratch(""), ignore_errors=True)
    t_without, calls_without = sweep(shared_cache=False)
    t_with, calls_with = sweep(shared_cache=True)
    print(f"| sweep cache | 3 defenses, PGD-10, 256 images | without: {calls_without} attack calls, {t_without:.1f} s "
          f"| with: {calls_with} attack calls, {t_with:.1f} s | {t_without / t_with:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
