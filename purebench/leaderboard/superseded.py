"""Rows that later runs replace, listed in ``results_dir/superseded.csv`` and never deleted.

A row is superseded when the code, a default or a checkpoint that produced it was corrected (a default that
was not the authors', a purifier re-trained). Its CSV line stays exactly as it was written; the tables,
the pivot, the plots and the RobustBench records are built from the current rows only; ``leaderboard.md`` ends
with the superseded ones and why, and the HTML page holds them hidden until asked for, so every number ever published stays traceable.
The file has two columns, ``run_id`` and ``reason``; an id that names no row is reported, not ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from purebench.eval.results import SUPERSEDED_FILE as FILE_NAME
from purebench.leaderboard.table import markdown_table, shown

log = logging.getLogger(__name__)

_SHOWN = [
    ("run", "run_id"), ("defense", "defense"), ("changed params", "defense_params"), ("attack", "attack"),
    ("threat", "threat_model"), ("budget", "eps"), ("n", "n_examples"), ("SA %", "sa"), ("RA %", "ra"),
    ("commit", "commit"),
]  # fmt: skip


def split_superseded(
    rows: Sequence[dict[str, str]], reasons: dict[str, str]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(current rows, superseded rows); warns about listed ids that name no row."""
    unknown = set(reasons) - {row["run_id"] for row in rows}
    if unknown:
        log.warning("%s lists run ids that are not in the leaderboard: %s", FILE_NAME, ", ".join(sorted(unknown)))
    old = [row for row in rows if row["run_id"] in reasons]
    return [row for row in rows if row["run_id"] not in reasons], old


def superseded_markdown(old: Sequence[dict[str, str]], reasons: dict[str, str]) -> str:
    """The closing section of leaderboard.md: each superseded row with its figures and the reason."""
    if not old:
        return ""
    lines = [
        "## Superseded rows",
        "",
        f"Kept for traceability and left out of every table and figure above ({FILE_NAME} says why).",
        "",
        f"<details><summary>{len(old)} superseded rows</summary>",  # folded: a reader wants the current ones
        "",
    ]
    table = [[*(shown(row, column) for _, column in _SHOWN), reasons[row["run_id"]]] for row in old]
    return "\n".join([*lines, markdown_table([*(h for h, _ in _SHOWN), "why superseded"], table), "", "</details>", ""])
