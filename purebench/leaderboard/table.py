"""SA/RA tables from the leaderboard CSV.

Two views: one table per (dataset, threat model) sorted by RA, and a pivot that puts one
defense's rows under every threat model side by side with its worst case over them, because a
purifier is only as robust as the strongest attacker that was tried.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from purebench.eval.intervals import BOUNDED
from purebench.eval.results import has_ra, per_example_worst
from purebench.eval.threats import LADDER, base_rung
from purebench.leaderboard.merge import MERGED
from purebench.leaderboard.params import changed, legend, split_params

# (header, column) pairs shown in the Markdown tables; the CSV keeps every column. Figures carry their
# 95% Wilson interval (purebench.eval.intervals), defense parameters only the keys changed from the defaults.
SHOWN = [
    ("classifier", "classifier"), ("defense", "defense"), ("changed params", "defense_params"),
    ("attack", "attack"), ("attack params", "attack_params"), ("budget", "eps"), ("n", "n_examples"),
    ("SA % (95% CI)", "sa"), ("RA % (95% CI)", "ra"), ("RA worst %", "ra_worst"), ("RA vote %", "ra_vote"),
    ("evals", "n_eval"), ("EOT", "threat_eot_iter"), ("undefended: clean / adv %", "clean_acc_undefended"),
    ("run", "run_id"), ("commit", "commit"),
]  # fmt: skip
_BOUNDS = {figure: (low, high) for figure, low, high in BOUNDED}
INTERVAL_NOTE = (
    "Figures in % with their 95% Wilson interval over the n images in brackets. RA counts an example only "
    "when the defended model also classifies it correctly clean (as AutoAttack and RobustBench do), so "
    "RA <= SA; the accuracy on purified adversarial inputs alone is the CSV's `acc_purified_adv`. For a "
    "randomized defense (evals > 1) RA is the mean over the evaluations, and its interval covers the sampling "
    "of the images, not of the draws. `changed params` lists the keys that differ from the defaults below."
)
# The robust-figure cell of a row written before RA was bounded whose run file cannot re-derive it.
UNDERIVED = "n/a (no per-example records)"


def shown(row: dict[str, str], column: str) -> str:
    """A table cell: the figure with its interval, the budget, the changed parameters, or the raw value."""
    if column in _BOUNDS:
        return with_interval(row, column)
    if column == "eps":
        return budget(row)
    if column == "defense_params":
        return changed(row["defense"], row.get("defense_params", ""))
    if column == "clean_acc_undefended":
        return f"{row['clean_acc_undefended']} / {row['adv_acc_undefended']}"
    if column == "commit":
        return row.get("commit", "")[:7]
    if column == "threat_eot_iter":
        return eot_text(row)
    return str(row.get(column, ""))


def eot_text(row: dict[str, str]) -> str:
    """The draws averaged per gradient: the threat model's EOT, times an attack's own (AutoAttack rand averages
    ``eot_iter`` draws itself, so its rows set the threat's to 1): ``20 (the attack's)``, ``5 x 4``, ``20``."""
    threat, attack = row.get("threat_eot_iter", ""), split_params(row.get("attack_params", "")).get("eot_iter", "1")
    if attack in ("", "1"):
        return threat
    return f"{attack} (the attack's)" if threat in ("", "1") else f"{threat} x {attack}"


def eps_text(eps: float, norm: str = "Linf") -> str:
    """An Linf budget as ``8/255`` when eps x 255 is within 1e-3 of a whole number k, or eps is k/255 written to 4 significant
    digits (configs hold 16/255 as 0.06275: x 255 = 16.00125), as papers write them; else (and every L2
    budget) the number: ``0.5``."""
    k = round(eps * 255)
    whole = norm == "Linf" and k >= 1 and (abs(eps * 255 - k) <= 1e-3 or f"{k / 255:.4g}" == f"{eps:.4g}")
    return f"{k}/255" if whole else f"{eps:.5g}"


def budget(row: dict[str, str]) -> str:
    """A row's budget as papers write it: ``Linf 8/255``, ``L2 0.5``; empty when the row has none."""
    return f"{row['norm']} {eps_text(float(row['eps']), row['norm'])}" if row.get("eps") else ""


def interval(row: dict[str, str], figure: str) -> str:
    """``"[32.4, 49.2]"``, the 95% bounds of ``figure``; empty when the figure or its bounds are."""
    low, high = (row.get(c, "") for c in _BOUNDS[figure])
    if row.get(figure, "") in ("", None) or low in ("", None):
        return ""
    return f"[{float(low):.1f}, {float(high):.1f}]"


def with_interval(row: dict[str, str], figure: str) -> str:
    """``"40.55 [32.4, 49.2]"``; the figure alone when its bounds are empty, :data:`UNDERIVED` for an RA
    that could not be bounded (its worst-case and vote figures are then empty)."""
    if figure == "ra" and not has_ra(row):
        return UNDERIVED
    return " ".join(part for part in (str(row.get(figure, "")), interval(row, figure)) if part)


_MARKUP = re.compile(r"[\\`*~|]")  # one pass: the backslashes it adds are not escaped again
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # intraword underscores are literal already
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def markdown_text(value: object) -> str:
    """``value`` as literal text on one Markdown line: cells come from CSVs anyone may have written, so raw
    HTML (``<script>``), code spans, emphasis, links and line breaks must not render or break the table.
    Names purebench writes (``gaussian_blur``, intervals in brackets) come out unchanged."""
    text = " ".join(str(value).splitlines())
    text = _EMPHASIS_UNDERSCORE.sub(r"\\_", _MARKUP.sub(r"\\\g<0>", text)).replace("](", "]\\(")  # no link/image
    return "".join(_HTML.get(c, c) for c in text)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table whose cells read as literal text (:func:`markdown_text`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(markdown_text(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def complete(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Rows that stand for a whole evaluation: unsharded runs and merged shards, not single shards."""
    return [r for r in rows if not r.get("shard") or r["shard"].startswith(MERGED)]


def by_dataset_threat(rows: Sequence[dict[str, str]]) -> list[tuple[tuple[str, str], list[dict[str, str]]]]:
    """The rows grouped by (dataset, threat model), groups by dataset then strongest rung first (oblivious
    last), rows by RA then SA (descending), rows without an RA last."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["threat_model"])].append(row)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], *strongest_first(item[0][1])))
    return [
        (key, sorted(members, key=lambda r: (not has_ra(r), -float(r["ra"] or 0), -float(r["sa"]))))
        for key, members in ordered
    ]


def strongest_first(threat: str) -> tuple[int, str]:
    """Sort key of a rung: the ladder's strongest attacker first, ``oblivious`` last (it is the weakest and the
    one papers report, so a reader meets the informed rungs before it); unknown names before ``oblivious``."""
    rung = base_rung(threat)
    order = list(reversed(LADDER))
    return (order.index(rung) if rung in order else order.index("oblivious") - 1, threat)


def grouped_markdown(rows: Sequence[dict[str, str]]) -> str:
    """One section per (dataset, threat model), rows sorted by RA (descending), then SA."""
    sections = ["## Every run, by threat model", "", INTERVAL_NOTE, ""]
    for (dataset, threat), members in by_dataset_threat(complete(rows)):
        sections += [f"### {markdown_text(dataset)} — threat model: {markdown_text(threat)}", ""]
        sections += [markdown_table([h for h, _ in SHOWN], [[shown(r, c) for _, c in SHOWN] for r in members]), ""]
    return "\n".join(sections)


def defaults_legend(rows: Sequence[dict[str, str]]) -> str:
    """The closing section: each defense's defaults, which the tables' ``changed params`` leave out."""
    return "\n".join(["## Defaults of the defenses above", "", *legend(complete(rows)), ""])


PIVOT_KEY = ("dataset", "classifier", "defense", "defense_params", "attack", "attack_params", "norm", "eps")


def _cell(row: dict[str, str]) -> str:
    if not has_ra(row):
        return f"{UNDERIVED} (n={row['n_examples']})"
    repeated = row.get("n_eval", "1") not in ("", "1")
    worst = (
        f", worst {row['ra_worst']}" + (f", vote {row['ra_vote']}" if row.get("ra_vote") else "") if repeated else ""
    )
    return f"{with_interval(row, 'ra')}{worst} (n={row['n_examples']})"


def threat_pivot(rows: Sequence[dict[str, str]], threat_order: Sequence[str], runs_dir: Path | None = None) -> str:
    """RA of each (dataset, classifier, defense, attack, budget) under each threat model, latest run per cell.

    The last columns are the minimum RA over the threat models that were run for that line (an
    upper bound on the worst case; blank when only one was run, which is no worst case), and, when the run files in ``runs_dir`` hold the same examples
    for every cell, the per-example worst case: each example counts with its lowest RA over the
    threat models, so an example broken by any rung counts as broken. RA is bounded by clean
    correctness throughout (an example the defended model gets wrong clean counts 0).
    """
    latest: dict[tuple[str, ...], dict[str, dict[str, str]]] = defaultdict(dict)
    for row in sorted(complete(rows), key=lambda r: r["finished_at"]):
        latest[tuple(row[k] for k in PIVOT_KEY)][row["threat_model"]] = row
    seen = {t for cells in latest.values() for t in cells}
    threats = [t for t in threat_order if t in seen] + sorted(seen - set(threat_order))
    headers = [*PIVOT_KEY[:3], "changed params", *PIVOT_KEY[4:6], "budget", *[f"RA % {t}" for t in threats], "worst-case RA % (threat)",
               "per-example worst RA %"]  # fmt: skip
    lines = []
    for key, cells in sorted(latest.items()):
        known = [t for t in cells if has_ra(cells[t])]  # a cell without RA cannot be the worst case
        worst = min(known, key=lambda t: float(cells[t]["ra"])) if len(known) > 1 else None
        lines.append([
            *key[:3], changed(key[2], key[3]), *key[4:6], budget(dict(zip(PIVOT_KEY, key, strict=True))), *[_cell(cells[t]) if t in cells else "" for t in threats],
            f"{cells[worst]['ra']} ({worst})" if worst else "", _per_example_worst(list(cells.values()), runs_dir),
        ])  # fmt: skip
    return "\n".join(["## Across threat models", "", markdown_table(headers, lines), ""])


def _per_example_worst(cells: Sequence[dict[str, str]], runs_dir: Path | None) -> str:
    """Mean over examples of the lowest per-example RA across ``cells``; empty when the cells do not
    cover the same examples, a run file is missing or a cell has no RA."""
    if runs_dir is None or len(cells) < 2:
        return ""
    try:
        rates = per_example_worst(cells, runs_dir)
    except (OSError, ValueError):  # missing, unreadable, without records, or a run_id that names no file
        return ""
    return f"{100.0 * sum(rates.values()) / len(rates):.2f}"
