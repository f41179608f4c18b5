"""LaTeX (booktabs) leaderboard tables, one per (dataset, threat model), sorted by RA."""

from __future__ import annotations

from collections.abc import Sequence

from purebench.eval.intervals import BOUNDED
from purebench.eval.results import has_ra
from purebench.leaderboard.table import UNDERIVED, by_dataset_threat

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
    "~": "\\textasciitilde{}",  # a non-breaking space otherwise
    "^": "\\textasciicircum{}",  # a superscript (an error outside math) otherwise
}


def escape(text: object) -> str:
    """``text`` as literal LaTeX on one line (a blank line inside a table cell would end the paragraph)."""
    return "".join(_ESCAPES.get(c, c) for c in " ".join(str(text).splitlines()))


_FIGURES = {figure: (low, high) for figure, low, high in BOUNDED}


def cell(row: dict[str, str], column: str) -> str:
    """A table cell; figures carry their 95% interval in small type, an RA that could not be bounded a marker."""
    if column == "ra" and not has_ra(row):
        return escape(UNDERIVED)
    value = escape(row.get(column, ""))
    low, high = (row.get(c, "") for c in _FIGURES.get(column, ("", "")))
    if column in _FIGURES and value and low != "":
        return f"{value} {{\\scriptsize [{float(low):.1f}, {float(high):.1f}]}}"
    return value


def latex_tables(rows: Sequence[dict[str, str]]) -> str:
    out = ["% purebench leaderboard; needs \\usepackage{booktabs}"]
    for (dataset, threat), members in by_dataset_threat(rows):
        out += [
            "\\begin{table}[t]", "\\centering",
            f"\\caption{{{escape(dataset)}, threat model: {escape(threat)}. Accuracies in \\%, 95\\% Wilson "
            "intervals over the $n$ images in brackets. RA counts an example only when it is also classified "
            "correctly clean (RA $\\le$ SA).}",
            "\\begin{tabular}{" + "l" * 3 + "r" * (len(LATEX_COLUMNS) - 3) + "}", "\\toprule",
            " & ".join(h for h, _ in LATEX_COLUMNS) + " \\\\", "\\midrule",
        ]  # fmt: skip
        out += [" & ".join(cell(r, c) for _, c in LATEX_COLUMNS) + " \\\\" for r in members]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)
