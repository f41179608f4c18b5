"""EOT draws and repeated purifications stacked into one batch vs one draw at a time.

EOT-20 PGD-10 under ``threat=bpda_eot`` with 10 evaluations per adversarial example, through
``evaluate``: ``threat.eot_batch=1`` is the loop (one purifier and classifier call per draw),
``threat.eot_batch=null`` stacks the draws of a forward (and the evaluations) into batches of the
device's pixel budget (``purebench.eval.threats.AUTO_PIXELS_PER_CALL``). Both
make the same draws; the script also checks that they give the same per-example records.
Each timed run starts from an empty results folder. Run: python -m benchmarks.eot_batching [cuda]
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path

from benchmarks.common import config, interleaved_median_seconds, scratch
from purebench.eval.runner import evaluate

COMMON = ["attack=pgd", "attack.verbose=false", "attack.steps=10", "threat=bpda_eot", "threat.eot_iter=20",
          "threat.n_eval=10", "figures=0"]  # fmt: skip
# (defense, images on CPU, images on CUDA)
WORKLOADS = (("gaussian_noise", 64, 512), ("zeropur", 4, 64))


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    counter = itertools.count()
    shutil.rmtree(scratch("eot"), ignore_errors=True)
    records: dict[str, list] = {}

    def run(defense: str, n: int, eot_batch: str) -> None:
        out = scratch("eot") / str(next(counter))
        overrides = [f"defense={defense}", f"n_examples={n}", f"batch_size={n}", f"threat.eot_batch={eot_batch}"]
        row = evaluate(config(*COMMON, *overrides, f"device={device}", "threads=0" if device == "cuda" else "threads=2",
                              f"results_dir={out}"))  # fmt: skip
        records[eot_batch] = json.loads(Path(out, "runs", f"{row['run_id']}.json").read_text())["per_example"]
        shutil.rmtree(out)

    for defense, n_cpu, n_cuda in WORKLOADS:
        n = n_cuda if device == "cuda" else n_cpu
        loop, stacked = interleaved_median_seconds(
            [lambda d=defense, n=n: run(d, n, "1"), lambda d=defense, n=n: run(d, n, "null")], repeats=3
        )
        same = "same records" if records["1"] == records["null"] else "RECORDS DIFFER"
        print(f"| EOT-20 PGD-10 bpda_eot + 10 evaluations | {defense}, resnet20, {n} images, {device} "
              f"| loop {loop:.1f} s | batched {stacked:.1f} s | {loop / stacked:.2f}x, {same} |")  # fmt: skip


if __name__ == "__main__":
    main()
