"""``python -m purebench.leaderboard [merge] results_dir=DIR [readme=README.md]`` (and ``worst``:
:mod:`purebench.leaderboard.worst`).

Rows listed in ``DIR/superseded.csv`` are left out of every table and figure below; the Markdown lists them
at its end and the HTML page holds them hidden until asked for (see :mod:`purebench.leaderboard.superseded`).
Without ``merge``: print and write ``DIR/leaderboard.md`` (the headline matrix of
:mod:`purebench.leaderboard.matrix` first, then per-threat-model tables and the pivot of each defense across
threat models), ``DIR/leaderboard.tex`` (booktabs), ``DIR/sa_ra.png`` (one panel per
threat model), ``DIR/ladder_<dataset>.png`` (RA up the threat ladder), ``DIR/leaderboard.html`` (all of
it in one self-contained page) and
RobustBench-style records in ``DIR/robustbench/``. With ``merge``: first join complete sets of shards into one
row each (see :mod:`purebench.leaderboard.merge`). Shard rows not merged yet are in none of these: a
note in the Markdown and on stderr says so (with only such rows there is nothing to draw or pivot).

``readme=PATH[,PATH...]`` also replaces the headline-matrix block of each README (between the markers of
:func:`purebench.leaderboard.matrix.refresh_readme`), so its first screen shows the figures the board holds
(the repository's: ``readme=README.md,results/README.md``).

Names of outputs built from CSV cells are plain file names inside ``DIR`` (a cell such as
``x/../../tmp/escaped`` cannot write elsewhere), and outputs behind links are updated where the links lead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from purebench.errors import PurebenchError
from purebench.eval.atomic_files import atomic_write_text, link_target
from purebench.eval.results import has_ra, read_rows, read_superseded
from purebench.eval.threats import LADDER
from purebench.leaderboard.html import html_leaderboard
from purebench.leaderboard.latex import latex_tables
from purebench.leaderboard.matrix import matrix_body, matrix_markdown, refresh_readme
from purebench.leaderboard.merge import merge_shards, unmerged
from purebench.leaderboard.plots import ladder_plots, sa_ra_scatter
from purebench.leaderboard.robustbench import robustbench_records
from purebench.leaderboard.superseded import split_superseded, superseded_markdown
from purebench.leaderboard.table import complete, defaults_legend, grouped_markdown, threat_pivot
from purebench.leaderboard.worst import worst_case_report

USAGE = (
    "usage: python -m purebench.leaderboard [merge] results_dir=DIR [readme=README.md[,results/README.md]]\n"
    "       python -m purebench.leaderboard worst results_dir=DIR RUN_ID RUN_ID [...]"
)


def main(argv: list[str]) -> int:
    command = argv[0] if argv and argv[0] in ("merge", "worst") else None
    args = argv[1:] if command else argv
    options = dict(arg.split("=", 1) for arg in args if "=" in arg)
    run_ids = [a for a in args if "=" not in a] if command == "worst" else []
    keys = ("results_dir",) if command == "worst" else ("results_dir", "readme")
    unknown = [a for a in args if a not in run_ids and ("=" not in a or a.split("=", 1)[0] not in keys)]
    if unknown:
        print(f"purebench.leaderboard: unknown argument(s) {unknown}; {USAGE}", file=sys.stderr)
        return 2
    results_dir = Path(options.get("results_dir", "results"))
    try:
        if command == "worst":
            print(worst_case_report(results_dir, run_ids))
            return 0
        if command == "merge":
            merge_shards(results_dir)
        readmes = [Path(path) for path in options.get("readme", "").split(",") if path]
        return _render(results_dir, readmes)
    except PurebenchError as exc:
        print(f"purebench.leaderboard: error: {exc}", file=sys.stderr)
        return 2


def _render(results_dir: Path, readmes: Sequence[Path] = ()) -> int:
    """Write every output of the leaderboard in ``results_dir`` (and the matrix block of each of ``readmes``); 2
    when it has no rows."""
    reasons = read_superseded(results_dir)
    rows, old = split_superseded(read_rows(results_dir / "leaderboard.csv"), reasons)
    if not rows:
        print(
            f"purebench.leaderboard: no rows in {results_dir / 'leaderboard.csv'}; run `python -m purebench` first.",
            file=sys.stderr,
        )
        return 2
    done = complete(rows)  # unsharded runs and merged shards
    if readmes:  # first: a README without the markers stops the command before any output
        refresh_readme(readmes, matrix_body(done, results_dir / "runs"))
    shards = unmerged(rows)
    if shards:
        print(f"purebench.leaderboard: {_unmerged_note(shards, results_dir)}", file=sys.stderr)
    text = "\n".join(
        [
            "# purebench leaderboard\n",
            *([matrix] if (matrix := matrix_markdown(done, results_dir / "runs")) else []),
            grouped_markdown(rows),
            *([threat_pivot(rows, list(LADDER), results_dir / "runs"), defaults_legend(rows)] if done else []),
            *([f"## Unmerged shards\n\n{_unmerged_note(shards, results_dir)}\n"] if shards else []),
            superseded_markdown(old, reasons),
        ]
    )
    _write(results_dir / "leaderboard.md", text + "\n")
    _write(results_dir / "leaderboard.tex", latex_tables(done))
    if any(map(has_ra, done)):  # nothing to draw when no row has a (bounded) RA
        sa_ra_scatter(done, results_dir / "sa_ra.png")
    ladder_plots(done, results_dir)
    _write(results_dir / "leaderboard.html", html_leaderboard(rows, results_dir, old, reasons))
    robustbench_records(rows, results_dir / "robustbench")
    print(text)
    return 0


def _unmerged_note(shards: list[dict[str, str]], results_dir: Path) -> str:
    configs = sorted({r["config_hash"] for r in shards})
    return (
        f"{len(shards)} row(s) are shards of {len(configs)} config(s) ({', '.join(configs[:5])}"
        f"{' ...' if len(configs) > 5 else ''}) not merged yet, so they are in no table, figure or record; "
        f"`python -m purebench.leaderboard merge results_dir={results_dir}` joins each complete set into one row."
    )


def _write(path: Path, text: str) -> None:
    """Replace one output whole, where a link at ``path`` leads (a leaderboard shared through a link)."""
    atomic_write_text(link_target(path), text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
