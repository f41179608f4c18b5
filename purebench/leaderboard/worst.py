"""``python -m purebench.leaderboard worst results_dir=DIR RUN_ID RUN_ID [...]``: the per-example
worst case of several runs on the same images.

Some papers' robust accuracy is an ensemble's: DiffPure's Table 1 counts an example as robust only
if it survives both AutoAttack Rand and Standard (the authors' README), which is neither row's RA.
This reads the runs' per-example records and counts each example with its lowest robust rate
(bounded by clean correctness, as every RA here), so any ensemble of attacks or threat models run
on the same images, seed and defense gets its honest figure without a new run.
"""

from __future__ import annotations

from pathlib import Path

from purebench.errors import PurebenchError
from purebench.eval.intervals import wilson
from purebench.eval.results import per_example_worst, read_rows


def worst_case_report(results_dir: Path, run_ids: list[str]) -> str:
    """A short report: the runs combined, n, and the per-example worst RA with its 95% interval."""
    if len(run_ids) < 2:
        raise PurebenchError("`worst` needs at least two run ids (the runs whose per-example worst case to take).")
    rows = {row["run_id"]: row for row in read_rows(results_dir / "leaderboard.csv")}
    missing = [r for r in run_ids if r not in rows]
    if missing:
        raise PurebenchError(
            f"run(s) {', '.join(missing)} are not in {results_dir / 'leaderboard.csv'}; give run ids of that "
            "leaderboard (its first column)."
        )
    chosen = [rows[r] for r in run_ids]
    try:
        rates = per_example_worst(chosen, results_dir / "runs")
    except (OSError, ValueError) as exc:
        raise PurebenchError(
            f"cannot combine these runs ({exc}): each needs its run file in {results_dir / 'runs'} with "
            "per-example records, and all must cover the same images (same n_examples, dataset.sample and seed)."
        ) from exc
    n = len(rates)
    ra = sum(rates.values()) / n
    low, high = wilson(ra, n)
    lines = [f"{r['run_id']}: {r['defense']} vs {r['attack']} ({r['attack_params']}), {r['threat_model']}, RA {r['ra']}"
             for r in chosen]  # fmt: skip
    return "\n".join([
        *lines,
        f"per-example worst case over {len(chosen)} runs, n={n}: RA {100 * ra:.2f} [{100 * low:.1f}, {100 * high:.1f}]"
        " (an example counts only if every run left it robust and it was classified correctly clean)",
    ])  # fmt: skip
