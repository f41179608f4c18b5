"""The headline matrix: which purification defense keeps what robustness under which attacker.

The rows of one protocol (``protocol=headline``, experiments/headline.yaml: one classifier, the same first
images, one budget, one seed) are laid out one line per defense setting and one column per rung of the
threat ladder, PGD-20 under each rung and AutoAttack rand under the oblivious and adaptive ones. Each cell
is RA with its 95% interval; a cell on fewer images than the protocol's own says so. The last column is the
per-example worst case over every rung that was run, given only when the white-box rungs (BPDA+EOT and
adaptive) were: without them a "worst case" would be the oblivious figure in disguise. A sentence above the
table states the finding in words, generated from the figures, so it cannot drift from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from purebench.errors import PurebenchError
from purebench.eval.atomic_files import atomic_write_text
from purebench.eval.intervals import percent_bounds
from purebench.eval.results import has_ra, per_example_worst
from purebench.eval.threats import SURROGATE_SUFFIX
from purebench.leaderboard.params import attack_name, rung_name, setting_label
from purebench.leaderboard.table import budget, complete, interval, markdown_table

HEADLINE = "headline"
# (column header, attack, rung): the rungs a matrix shows, weakest attacker first. A surrogate rung
# (threat.surrogate, Lee & Kim 2023) fills its full rung's column when that was not run, and says so.
RUNGS = [
    (f"{attack_name(attack)} {rung_name(rung)}", attack, rung)
    for attack, rung in [
        ("pgd", "oblivious"), ("pgd", "bpda_eot"), ("pgd", "adaptive"), ("pgd", "known_draws"),
        ("autoattack", "oblivious"), ("autoattack", "adaptive"),
    ]
]  # fmt: skip
PGD_OBLIVIOUS, PGD_ADAPTIVE, PGD_KNOWN_DRAWS, AA_ADAPTIVE = (RUNGS[i][0] for i in (0, 2, 3, 5))
WHITE_BOX = ("bpda_eot", "adaptive")  # both must have been run for the worst case over rungs to mean anything
BROKEN = 5.0  # RA (%) at or below which a defense counts as broken in the finding sentence
NOT_RUN = "not run"
# The block of a README that ``python -m purebench.leaderboard ... readme=README.md,...`` keeps equal to the matrix.
README_START = (
    "<!-- headline matrix: python -m purebench.leaderboard results_dir=results readme=README.md,results/README.md -->"
)
README_END = "<!-- end of the headline matrix -->"
NOT_APPLICABLE = "n/a (deterministic)"
ABOVE_OBLIVIOUS = "▲"  # an informed rung above the oblivious figure: a weak attack there, not a strong defense
INFORMED = ("eot", "bpda_eot", "adaptive")  # the rungs that draw EOT samples of a randomized defense


@dataclass
class Line:
    """One defense setting of the protocol: its rows by column and the figures drawn from them."""

    label: str
    cells: dict[str, dict[str, str]] = field(default_factory=dict)  # column header -> row
    randomized: bool = False
    worst: float | None = None  # per-example worst over the rungs run, in %
    worst_n: int = 0

    @property
    def main(self) -> dict[str, str]:
        """The row SA and n are read from: the one on the most images (the oblivious one when tied)."""
        return max(self.cells.values(), key=lambda r: (int(r["n_examples"]), r["threat_model"] == "oblivious"))


def _column(row: dict[str, str]) -> str | None:
    rung = row["threat_model"].removesuffix(SURROGATE_SUFFIX)
    return next((header for header, attack, name in RUNGS if attack == row["attack"] and name == rung), None)


def protocol_lines(rows: Sequence[dict[str, str]], runs_dir: Path | None, protocol: str = HEADLINE) -> list[Line]:
    """The protocol's lines, the latest row per cell (a full-gradient row before a surrogate one, then the most
    images), ordered by worst case over rungs, then adaptive RA, then oblivious RA (descending)."""
    lines: dict[str, Line] = {}
    ordered = sorted(complete(rows), key=lambda r: r["finished_at"])
    for row in (r for r in ordered if r.get("protocol") == protocol and has_ra(r)):
        column = _column(row)
        if column is None:
            continue
        line = lines.setdefault(setting_label(row), Line(setting_label(row)))
        line.randomized |= row.get("defense_randomized") == "True" or row.get("randomness_detected") == "True"
        held = line.cells.get(column)
        rank = lambda r: (not r["threat_model"].endswith(SURROGATE_SUFFIX), int(r["n_examples"]))  # noqa: E731
        if held is None or rank(row) >= rank(held):
            line.cells[column] = row
    for line in lines.values():
        line.worst, line.worst_n = _worst_over_rungs(line, runs_dir)
    return sorted(lines.values(), key=_order)


def _ra(line: Line, column: str) -> float:
    row = line.cells.get(column)
    return float(row["ra"]) if row else -1.0


def _order(line: Line) -> tuple[float, float, float]:
    adaptive = max(_ra(line, PGD_ADAPTIVE), _ra(line, AA_ADAPTIVE))
    return (-(line.worst if line.worst is not None else -1.0), -adaptive, -_ra(line, PGD_OBLIVIOUS))


def _worst_over_rungs(line: Line, runs_dir: Path | None) -> tuple[float | None, int]:
    """Mean over the examples every rung evaluated of each example's lowest robust rate; None unless the
    white-box rungs were run and every run file can be read."""
    rungs = {row["threat_model"].removesuffix(SURROGATE_SUFFIX) for row in line.cells.values()}
    if runs_dir is None or not all(r in rungs for r in WHITE_BOX):
        return None, 0
    try:
        worst = per_example_worst(list(line.cells.values()), runs_dir, common=True)
    except (OSError, ValueError):  # a run file missing or without records
        return None, 0
    return 100.0 * sum(worst.values()) / len(worst), len(worst)


def _informed(row: dict[str, str]) -> bool:
    """Whether a row's rung draws EOT samples of a randomized defense (PGD under eot, bpda_eot, adaptive)."""
    return row["attack"] == "pgd" and row["threat_model"].removesuffix(SURROGATE_SUFFIX) in INFORMED


def _protocol_eot(lines: Sequence[Line]) -> int:
    """The EOT draws per gradient of the protocol: the most any informed row of a randomized defense used."""
    return max(
        (int(r["threat_eot_iter"] or 1) for x in lines if x.randomized for r in x.cells.values() if _informed(r)),
        default=1,
    )


def _cell(line: Line, column: str, n: int, protocol_eot: int) -> str:
    row = line.cells.get(column)
    if row is None:
        return NOT_APPLICABLE if column == PGD_KNOWN_DRAWS and not line.randomized else NOT_RUN
    notes = [f"n={row['n_examples']}"] if int(row["n_examples"]) != n else []
    if line.randomized and _informed(row) and int(row["threat_eot_iter"] or 1) < protocol_eot:
        notes.append(f"EOT-{row['threat_eot_iter']}")  # fewer draws per gradient than the protocol's
    if row.get("threat_surrogate"):
        notes.append(f"surrogate {row['threat_surrogate']}")
    flag = [ABOVE_OBLIVIOUS] if column in _above_oblivious(line) else []
    figure = f"{float(row['ra']):.2f}"  # two decimals throughout, so the column reads aligned
    return " ".join([figure, interval(row, "ra"), *flag, *([f"({'; '.join(notes)})"] if notes else [])]).strip()


def _above_oblivious(line: Line) -> list[str]:
    """The informed-rung columns of ``line`` whose RA exceeds the same attack's oblivious RA: there the attack
    is weaker than attacking the classifier alone (BPDA's identity backward pass through a strong filter), so
    the figure says nothing about the defense; the matrix marks it and the finding names it."""
    above = []
    for header, attack, rung in RUNGS:
        base = next((h for h, a, r in RUNGS if a == attack and r == "oblivious"), None)
        held = rung != "oblivious" and header in line.cells and base in line.cells
        if held and float(line.cells[header]["ra"]) > float(line.cells[base]["ra"]):
            above.append(header)
    return above


def _worst_cell(line: Line, n: int) -> str:
    if line.worst is None:
        return ""
    bounds = percent_bounds(line.worst, line.worst_n)
    text = f"{line.worst:.2f}" + (f" [{bounds[0]:.1f}, {bounds[1]:.1f}]" if bounds else "")
    return text + (f" (n={line.worst_n})" if line.worst_n != n else "")


def matrix_table(lines: Sequence[Line]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the matrix (strings, for Markdown and HTML alike)."""
    headers = ["defense", "SA % (95% CI)", "n", *(h for h, _, _ in RUNGS), "worst over rungs"]
    table, eot = [], _protocol_eot(lines)
    for line in lines:
        main = line.main
        n = int(main["n_examples"])
        sa = " ".join(p for p in (f"{float(main['sa']):.2f}", interval(main, "sa")) if p)
        table.append([line.label, sa, str(n), *(_cell(line, h, n, eot) for h, _, _ in RUNGS), _worst_cell(line, n)])
    return headers, table


def protocol_caption(lines: Sequence[Line]) -> str:
    """What the protocol and the columns are, read from the rows (classifier, images, budget, seed, attacks, EOT)."""
    if not lines:
        return ""
    row = lines[0].main
    rows = [r for line in lines for r in line.cells.values()]
    steps = sorted({r["attack_steps"] for r in rows if r["attack"] == "pgd"})
    informed = [r for line in lines if line.randomized for r in line.cells.values() if _informed(r)]
    random_part = (
        f"; randomized defenses: EOT-{_protocol_eot(lines)} per gradient (fewer where a cell says EOT-k) and "
        f"{max(int(r['n_eval'] or 1) for r in informed)} evaluations per adversarial image (RA their mean)"
        if informed
        else ""
    )
    return (
        f"{row['classifier']} on the first {row['n_examples']} {row['dataset']} test images (fewer where a cell says "
        f"n), {budget(row)}, seed {row['seed']}; {'/'.join(f'PGD-{s}' for s in steps) or 'PGD'} and AutoAttack "
        f"rand (APGD-CE + APGD-DLR, EOT 20){random_part}. Rungs: oblivious = attack the classifier alone, then "
        "purify (the papers' protocol); BPDA+EOT = forward through the purifier, identity backward; adaptive = "
        "gradients through the real purifier; known draws = adaptive with the evaluation's own random draws; "
        "surrogate = gradients through a cheaper copy (Lee & Kim 2023), evaluation with the real defense. "
        "`<paper>_floor` = the paper's corruption step with a classical fill instead of its learned network. RA % "
        "with its 95% interval; RA counts an example only if its clean input is also classified correctly. "
        f"{ABOVE_OBLIVIOUS} = above the oblivious figure: that attack is weaker here, not the defense stronger. "
        "The last column is each example's worst case over every rung run (given once BPDA+EOT and adaptive were)."
    )


def finding(lines: Sequence[Line]) -> str:
    """Two or three sentences that state what the matrix shows, generated from its figures: the oblivious
    range, what the adaptive rung leaves, and any informed rung that scores above the oblivious one."""
    purifiers = [line for line in lines if line.label != "none"]  # the undefended classifier is the reference
    oblivious = sorted((x for x in purifiers if PGD_OBLIVIOUS in x.cells), key=lambda x: _ra(x, PGD_OBLIVIOUS))
    adaptive = sorted((x for x in purifiers if PGD_ADAPTIVE in x.cells), key=lambda x: _ra(x, PGD_ADAPTIVE))
    sentences = []
    if oblivious:
        low, high = _ra(oblivious[0], PGD_OBLIVIOUS), _ra(oblivious[-1], PGD_OBLIVIOUS)
        sentences.append(
            f"Against the oblivious attacker (the papers' protocol) the {len(oblivious)} purifiers keep "
            f"{low:.1f}-{high:.1f}% RA under PGD (best: {oblivious[-1].label})"
        )
    if adaptive:
        best = adaptive[-1]
        lead = "but under" if sentences else "Under"
        rung = "the adaptive attacker (PGD through the purifier, with EOT when it is random)"
        top = _ra(best, PGD_ADAPTIVE)
        if top <= BROKEN:
            floor = "0.0% RA" if top == 0 else f"at most {top:.1f}% RA"
            sentences.append(f"{lead} {rung} every one of the {len(adaptive)} run there falls to {floor}")
        else:
            broken = sum(_ra(x, PGD_ADAPTIVE) <= BROKEN for x in adaptive)
            sentences.append(
                f"{lead} {rung} {broken} of the {len(adaptive)} run there fall to {BROKEN:.0f}% RA or below and the "
                f"most robust, {best.label}, keeps {_ra(best, PGD_ADAPTIVE):.1f}% (SA {best.main['sa']}%)"
            )
    text = "; ".join(sentences) + "." if sentences else ""
    known = [x for x in purifiers if PGD_KNOWN_DRAWS in x.cells]
    if known:
        broken = [x for x in known if _ra(x, PGD_KNOWN_DRAWS) <= BROKEN]
        text += (
            f" Given the evaluation's own random draws (known draws), {len(broken)} of the {len(known)} randomized "
            f"purifiers run there fall to {BROKEN:.0f}% RA or below: whatever they keep under EOT is owed to "
            "their randomness."
        )
    weak = [f"{c.removeprefix(attack_name('pgd') + ' ')} on {x.label}" for x in purifiers for c in _above_oblivious(x)]
    if weak:
        text += (
            f" {ABOVE_OBLIVIOUS} Above the oblivious figure, a weaker attack rather than robustness: {', '.join(weak)}."
        )
    pending = [x.label for x in purifiers if x not in adaptive]
    if pending:
        text += f" Not yet run under the headline protocol's adaptive rung: {', '.join(pending)}."
    return text.strip()


def matrix_body(rows: Sequence[dict[str, str]], runs_dir: Path | None, protocol: str = HEADLINE) -> str:
    """The finding, the table and its caption (README's "Results at a glance"); empty without protocol rows."""
    lines = protocol_lines(rows, runs_dir, protocol)
    if not lines:
        return ""
    headers, table = matrix_table(lines)
    return "\n".join([finding(lines), "", markdown_table(headers, table), "", protocol_caption(lines), ""])


def matrix_markdown(rows: Sequence[dict[str, str]], runs_dir: Path | None, protocol: str = HEADLINE) -> str:
    """The matrix section that opens leaderboard.md; empty without protocol rows."""
    body = matrix_body(rows, runs_dir, protocol)
    return f"## At a glance: every defense under every rung ({protocol} protocol)\n\n{body}" if body else ""


def refresh_readme(paths: Sequence[Path], body: str) -> None:
    """Replace the block between :data:`README_START` and :data:`README_END` of each of ``paths`` by ``body``, so
    each README shows the figures the leaderboard holds, never an older copy of them. Every file's markers are
    checked before any is written."""
    texts = {path: path.read_text() if path.is_file() else "" for path in paths}
    for path, text in texts.items():
        if text.count(README_START) != 1 or text.count(README_END) != 1:
            raise PurebenchError(
                f"readme={path}: the file needs one line '{README_START}' and one '{README_END}' where the "
                "headline matrix belongs (nothing was written)."
            )
    for path, text in texts.items():
        head, rest = text.split(README_START)
        tail = rest.split(README_END)[1]
        atomic_write_text(path, f"{head}{README_START}\n{body.strip()}\n{README_END}{tail}")
