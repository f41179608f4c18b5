"""Memory and time of one adaptive gradient through an iterative purifier, against the number of
unrolled steps: gradient-checkpointed (``defense.grad_checkpoint=true``) vs the naive unrolled graph,
and for DiffPure's ``sde`` sampler also the authors' stochastic adjoint (``defense.adjoint=true``,
exact only up to O(dt), see tests/test_diffpure_sde.py).

Table ``discrete``: DiffPure's ``ddpm`` chain with k reverse steps (``defense.steps=k``, all unrolled)
and ZeroPur's default 10 + 50 inner steps, the last k unrolled (``threat.backprop_steps=k``). Table
``sde``: DiffPure's Euler-Maruyama solve with k steps (dt = t*/k), all in the gradient. Table ``zeropur``:
all 60 steps unrolled against the same gradient tracked in ZeroPur's forward pass (``threat.backprop_steps=null``,
equal bit for bit: tests/test_zeropur.py). Each cell runs
in a fresh process: one warm-up gradient, then the median time of 3, and the memory the gradient adds
above the process's peak before it (peak RSS on CPU; ``torch.cuda.max_memory_allocated`` on CUDA).

Run: python -m benchmarks.adaptive_memory [cpu|cuda] [all|discrete|sde|zeropur] [--threads N]   (DiffPure uses
defense.model from its config: the shipped small model by default)
"""

from __future__ import annotations

import argparse
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

defense_name, k, mode, sampler = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
device, threads = torch.device(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
extra = [f"defense.steps={k}", f"defense.sampler={sampler}", f"defense.adjoint={mode == 'adjoint'}"] if defense_name == "diffpure" else []
cfg = config(f"defense={defense_name}", f"defense.grad_checkpoint={mode == 'checkpointed'}", *extra, "n_examples=8",
             f"device={device.type}")
dataset, classifier, defense, _, _ = build_components(cfg, device)
x, y = dataset.load(list(range(8)))
x, y = x.to(device), y.to(device)
backprop_steps = None if defense_name == "diffpure" or mode == "tracked" else k

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

# (defense, sampler, unrolled steps, gradient modes) of each table
TABLES = {
    "discrete": [("diffpure", "ddpm", (5, 10, 20, 40), ("naive", "checkpointed")),
                 ("zeropur", "-", (5, 15, 30, 60), ("naive", "checkpointed"))],
    "sde": [("diffpure", "sde", (5, 10, 20, 40), ("naive", "checkpointed", "adjoint"))],
    "zeropur": [("zeropur", "-", (60,), ("naive", "checkpointed", "tracked"))],
}  # fmt: skip


def cell(defense: str, k: int, mode: str, sampler: str, device: str, threads: int) -> dict[str, float]:
    command = [sys.executable, "-c", CHILD, defense, str(k), mode, sampler, device, str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("device", nargs="?", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("table", nargs="?", default="all", choices=("all", *TABLES))
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each cell (2: the recorded tables)")
    args = parser.parse_args()
    for name, rows in TABLES.items():
        if args.table not in ("all", name):
            continue
        modes = rows[0][3]
        columns = "".join(f" {mode}: added MB | {mode}: s |" for mode in modes)
        print(f"\n| defense | sampler | unrolled steps |{columns} ({args.device}, {args.threads} threads, 8 images) |")
        print("|---|---|---|" + "---|---|" * len(modes) + "---|")
        for defense, sampler, steps, _ in rows:
            for k in steps:
                cells = [cell(defense, k, mode, sampler, args.device, args.threads) for mode in modes]
                figures = "".join(f" {c['added_mb']} | {c['seconds']} |" for c in cells)
                print(f"| {defense} | {sampler} | {k} |{figures} |", flush=True)


if __name__ == "__main__":
    main()
