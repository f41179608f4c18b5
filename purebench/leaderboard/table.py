"""SA/RA tables from the leaderboard CSV, grouped by dataset and threat model and sorted by RA."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

# (header, column) pairs shown in the Markdown tables; the CSV keeps every column.
SHOWN = [
    ("classifier", "classifier"), ("defense", "defense"), ("defense params", "defense_params"),
    ("attack", "attack"), ("norm", "norm"), ("eps", "eps"), ("n", "n_examples"), ("seed", "seed"),
    ("SA %", "sa"), ("RA %", "ra"), ("clean % (undef.)", "clean_acc_undefended"),
    ("adv % (undef.)", "adv_acc_undefended"), ("run", "run_id"), ("commit", "commit"),
]  # fmt: skip


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells are escaped)."""
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def grouped_markdown(rows: Sequence[dict[str, str]]) -> str:
    """One section per (dataset, threat model), rows sorted by RA (descending), then SA."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["threat_model"])].append(row)
    sections = ["# purebench leaderboard", ""]
    for (dataset, threat), members in sorted(groups.items()):
        members = sorted(members, key=lambda r: (-float(r["ra"]), -float(r["sa"])))
        sections += [f"## {dataset} — threat model: {threat}", ""]
        sections += [markdown_table([h for h, _ in SHOWN], [[r.get(c, "") for _, c in SHOWN] for r in members]), ""]
    return "\n".join(sections)
