"""LaTeX (booktabs) leaderboard tables, one per (dataset, threat model), sorted by RA."""

from __future__ import annotations

from collections.abc import Sequence

from purebench.eval.intervals import BOUNDED
from purebench.eval.results import has_ra
from purebench.leaderboard.params import rung_name
from purebench.leaderboard.table import UNDERIVED, budget, by_dataset_threat

# (header, column, alignment) of the paper table; the CSV keeps everything else.
LATEX_COLUMNS = [
    ("Classifier", "classifier", "l"), ("Defense", "defense", "l"), ("Attack", "attack", "l"),
    ("Budget", "eps", "l"), ("$n$", "n_examples", "r"), ("SA (\\%)", "sa", "r"), ("RA (\\%)", "ra", "r"),
    ("RA worst (\\%)", "ra_worst", "r"),
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
    """A table cell; figures carry their 95% interval in small type, an RA that could not be bounded a marker,
    the budget reads as papers write it (``Linf 8/255``)."""
    if column == "ra" and not has_ra(row):
        return escape(UNDERIVED)
    if column == "eps":
        return escape(budget(row))
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
            f"\\caption{{{escape(dataset)}, threat model: {escape(rung_name(threat))}. Accuracies in \\%, 95\\% Wilson "
            "intervals over the $n$ images in brackets. RA counts an example only when it is also classified "
            "correctly clean (RA $\\le$ SA).}",
            "\\begin{tabular}{" + "".join(a for _, _, a in LATEX_COLUMNS) + "}", "\\toprule",
            " & ".join(h for h, _, _ in LATEX_COLUMNS) + " \\\\", "\\midrule",
        ]  # fmt: skip
        out += [" & ".join(cell(r, c) for _, c, _ in LATEX_COLUMNS) + " \\\\" for r in members]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)
