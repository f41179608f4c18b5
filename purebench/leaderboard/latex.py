"""LaTeX (booktabs) leaderboard tables, one per (dataset, threat model), sorted by RA."""

from __future__ import annotations

from collections.abc import Sequence

from purebench.leaderboard.table import by_dataset_threat

# (header, column) pairs of the paper table; the CSV keeps everything else.
LATEX_COLUMNS = [
    ("Classifier", "classifier"), ("Defense", "defense"), ("Attack", "attack"), ("$n$", "n_examples"),
    ("SA (\\%)", "sa"), ("RA (\\%)", "ra"), ("RA worst (\\%)", "ra_worst"),
]  # fmt: skip
_ESCAPES = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
}


def escape(text: object) -> str:
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def latex_tables(rows: Sequence[dict[str, str]]) -> str:
    out = ["% purebench leaderboard; needs \\usepackage{booktabs}"]
    for (dataset, threat), members in by_dataset_threat(rows):
        out += [
            "\\begin{table}[t]", "\\centering",
            f"\\caption{{{escape(dataset)}, threat model: {escape(threat)}.}}",
            "\\begin{tabular}{" + "l" * 3 + "r" * (len(LATEX_COLUMNS) - 3) + "}", "\\toprule",
            " & ".join(h for h, _ in LATEX_COLUMNS) + " \\\\", "\\midrule",
        ]  # fmt: skip
        out += [" & ".join(escape(r.get(c, "")) for _, c in LATEX_COLUMNS) + " \\\\" for r in members]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)
