"""Memory and time of one exact adaptive gradient through an iterative purifier, against the number of
unrolled steps: gradient-checkpointed (``defense.grad_checkpoint=true``) vs the naive unrolled graph.

DiffPure: k reverse steps (``defense.steps=k``, all unrolled). ZeroPur: its default 10 + 50 inner
steps, the last k unrolled (``threat.backprop_steps=k``). Each cell runs in a fresh process: one
warm-up gradient, then the median time of 3, and the memory the gradient adds above the process's
peak before it (peak RSS on CPU; ``torch.cuda.max_memory_allocated`` on CUDA).

Run: python -m benchmarks.adaptive_memory [cuda]   (DiffPure uses defense.model from its config:
the shipped small model by default)
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, resource, statistics, sys, time
import torch
import torch.nn.functional as F
from benchmarks.common import config
from purebench.eval.runner import build_components
from purebench.seeding import per_example

defense_name, k, ckpt, device = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", torch.device(sys.argv[4])
torch.set_num_threads(2)
extra = [f"defense.steps={k}"] if defense_name == "diffpure" else []
cfg = config(f"defense={defense_name}", f"defense.grad_checkpoint={ckpt}", *extra, "n_examples=8",
             f"device={device.type}")
dataset, classifier, defense, _, _ = build_components(cfg, device)
x, y = dataset.load(list(range(8)))
x, y = x.to(device), y.to(device)
backprop_steps = None if defense_name == "diffpure" else k

def gradient():
    inputs = x.clone().requires_grad_(True)
    with per_example(0, range(8), "bench"):
        loss = F.cross_entropy(classifier(defense.adaptive_purify(inputs, backprop_steps)), y)
    return torch.autograd.grad(loss, inputs)[0]

def peak_mb():
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

with per_example(0, range(8), "bench"), torch.no_grad():
    defense.purify(x)  # the forward pass alone sets the baseline peak
if device.type == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
before = peak_mb()
gradient()
added = peak_mb() - before
times = []
for _ in range(3):
    start = time.perf_counter(); gradient()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter() - start)
print(json.dumps({"added_mb": round(added, 1), "seconds": round(statistics.median(times), 2)}))
"""

STEPS = {"diffpure": (5, 10, 20, 40), "zeropur": (5, 15, 30, 60)}


def cell(defense: str, k: int, checkpointed: bool, device: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, defense, str(k), "1" if checkpointed else "0", device],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    print(
        f"| defense | unrolled steps | naive: added MB | naive: s | checkpointed: added MB | checkpointed: s | ({device}, 8 images) |"
    )
    print("|---|---|---|---|---|---|---|")
    for defense, steps in STEPS.items():
        for k in steps:
            naive, ckpt = cell(defense, k, False, device), cell(defense, k, True, device)
            print(f"| {defense} | {k} | {naive['added_mb']} | {naive['seconds']} | {ckpt['added_mb']} | {ckpt['seconds']} | |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
