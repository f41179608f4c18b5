"""Peak memory grows with batch size, not with n_examples: per-example results are small and batches stream.

Runs the evaluation in fresh subprocesses and reads their peak RSS. Run: python -m benchmarks.peak_memory
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import scratch

CHILD = """
import json, resource, sys
from benchmarks.common import config
from purebench.eval.runner import evaluate
n, batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
evaluate(config("defense=median_blur", "attack=fgsm", "attack.verbose=false", f"n_examples={n}", f"batch_size={batch}",
                "figures=0", "threads=2", f"results_dir={out}"))
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))
"""


def peak_mb(n: int, batch: int) -> int:
    out = scratch(f"memory-{n}-{batch}")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(batch), str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    cells = {(n, b): peak_mb(n, b) for n in (128, 1000) for b in (32, 256)}
    print("| peak memory (MB) | batch 32 | batch 256 |")
    for n in (128, 1000):
        print(f"| n_examples={n} | {cells[(n, 32)]} | {cells[(n, 256)]} |")


if __name__ == "__main__":
    main()
