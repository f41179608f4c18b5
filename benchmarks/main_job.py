"""The default main job (`python -m purebench`, what `make demo` runs), timed in fresh processes.

Each checkout named on the command line runs its own code with this environment's Python, in turns
(A, B, A, B, ...), each run into an empty results folder so that nothing is reused, the attack
included; the table gives the median wall time and the SA/RA each produced, so a speed-up can be
checked for identical numbers. With no checkout, the current one runs.
Run: python -m benchmarks.main_job [--device cuda] [--repeats 3] [CHECKOUT ...]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(checkout: Path, device: str) -> tuple[float, dict[str, str]]:
    results = Path(tempfile.mkdtemp(prefix="purebench-main-job-"))
    try:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "purebench", f"results_dir={results}", f"device={device}",
             f"hydra.run.dir={results / 'hydra'}"],
            cwd=checkout, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        spent = time.perf_counter() - start
        with open(results / "leaderboard.csv", newline="") as handle:
            return spent, next(csv.DictReader(handle))
    finally:
        shutil.rmtree(results, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path, default=[Path.cwd()])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[Path, list[float]] = {c: [] for c in args.checkouts}
    rows: dict[Path, dict[str, str]] = {}
    for _ in range(args.repeats):
        for checkout in args.checkouts:
            spent, rows[checkout] = run_once(checkout, args.device)
            times[checkout].append(spent)
    for checkout in args.checkouts:
        row = rows[checkout]
        print(f"| default main job (`python -m purebench`) | {row['defense']} vs {row['attack']}, {row['classifier']}, "
              f"{row['n_examples']} images, {args.device}, commit {row['commit'][:7]} "
              f"| median {statistics.median(times[checkout]):.1f} s of {len(times[checkout])} "
              f"| SA {row['sa']}, RA {row['ra']}, worst {row['ra_worst']}, vote {row['ra_vote']} |")  # fmt: skip


if __name__ == "__main__":
    main()
