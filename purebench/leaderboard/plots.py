"""Figures of the leaderboard: the threat ladder per dataset and the SA-RA scatter.

The ladder is the story a purification benchmark tells: a defense's RA as the attacker learns more
(oblivious -> bpda -> eot -> bpda_eot -> adaptive), one line per defense with its 95% interval and its SA
marked. Where the leaderboard holds rows of the headline protocol (:mod:`purebench.leaderboard.matrix`), that
dataset's ladder draws the matrix and nothing else: one line per defense setting in the matrix's order (PGD
under each rung), AutoAttack rand and surrogate-gradient cells as markers of their own, and beside them the
figure of the job a reader runs first (``python -m purebench``: conf/config.yaml's defense, attack and threat),
so that number is read against the rungs above it. Without protocol rows: one panel per (classifier, attack,
budget). A ladder panel keeps at most :data:`MAX_LINES` lines apart, each setting's markers a little to the side of
the others' (at the adaptive rung every defense may sit at 0), its legend to its right; the undefended model
(``none``) is a dashed grey line. The SA-RA legend keeps at most :data:`MAX_LEGEND` entries; what does not fit is
named (ladder) or shares one grey entry (SA-RA), it is in the tables either way. Rungs and attacks are named by
:func:`purebench.leaderboard.params.rung_name` and :func:`~purebench.leaderboard.params.attack_name`. Text is
7 pt, an SA-RA panel 3.3 in wide (a paper column), a ladder with its legend a page wide.
"""

from __future__ import annotations

import functools
import itertools
import math
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from omegaconf import DictConfig, OmegaConf

from purebench.config_paths import CONF_DIR
from purebench.eval.atomic_files import atomic_path, inside, link_target, safe_name
from purebench.eval.results import has_ra
from purebench.eval.threats import LADDER, SURROGATE_SUFFIX
from purebench.leaderboard.matrix import (
    HEADLINE,
    RUNGS,
    SHATTERED,
    WEAKER_ATTACK,
    Line,
    is_surrogate,
    marks,
    protocol_lines,
)
from purebench.leaderboard.params import attack_name, changed_keys, rung_name, setting_label
from purebench.leaderboard.table import budget

PANEL = (3.3, 2.6)  # inches: one paper column
LADDER_PANEL = (4.2, 2.8)  # inches: a ladder's axes, the legend beside them (LEGEND_WIDTH) makes it a page wide
LEGEND_WIDTH = 2.7  # inches
STYLE = {"font.size": 7, "axes.titlesize": 7, "legend.fontsize": 6}  # paper-column text, set per figure only
MAX_LINES = 8  # lines a column-wide ladder panel keeps apart
MAX_LEGEND = 12  # entries of the SA-RA legend
# Qualitative colours, one per defense setting and none repeated: tab10 without its grey, which is OTHER's.
PALETTE = [colour for k, colour in enumerate(plt.cm.tab10.colors) if k != 7]
OTHER = "0.6"  # the settings beyond the palette or the legend
UNDEFENDED = "none"  # the setting without defense: the reference every figure draws in UNDEFENDED_STYLE
UNDEFENDED_STYLE = {"color": "0.35", "linestyle": "--"}
RUNG_MARKERS = dict(zip(LADDER, "osDv^Ph<>p", strict=False))  # SA-RA: one marker per rung (spares for new ones)
LINE_ATTACK = RUNGS[0][1]  # the matrix's attack under every rung (PGD) draws the lines; the others are markers
MARKERS = {"line": "o", "surrogate": "X", "other attack": "D", "default job": "*", "SA": "s"}
MARK_NOTES = {  # the matrix's marks, said under a figure's legend
    WEAKER_ATTACK: f"{WEAKER_ATTACK} above its oblivious figure, or another attack's on the same rung: a weaker "
    "attack there, not robustness.",
    SHATTERED: f"{SHATTERED} through a shattered gradient: a loose upper bound.",
}
SURROGATE_JOIN = ":"  # the line to and from a surrogate-gradient cell: the gradient changes along it
FLAG_BOX = {"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}  # over markers
SPREAD = 0.56  # the x width (in rungs) over which a rung's markers are spread apart, one place per setting
LABEL_WIDTH = 40  # characters per legend line: a setting's label with its changed keys wraps rather than widens
STAR = 0.38  # the default job's star: this far right of its rung, just past every setting's markers
LIMITS = (-3, 102)  # SA-RA axes: a marker at 0 or 100 shows whole
DETERMINISTIC = "n/a: deterministic"  # a column no drawn setting can have: known draws of deterministic defenses
NOT_RUN = "not run"  # a column none of the drawn settings was run under yet

Series = dict[str, dict[str, dict[str, str]]]  # defense label -> threat -> latest row


def ladder_series(rows: Sequence[dict[str, str]]) -> dict[str, dict[tuple[str, str, str], Series]]:
    """dataset -> (classifier, attack, budget) -> defense label -> threat -> the latest row of that cell (rows
    without an RA, old ones whose run file could not bound it, are not drawn)."""
    series: dict[str, dict[tuple[str, str, str], Series]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for row in sorted(filter(has_ra, rows), key=lambda r: r["finished_at"]):
        panel = (row["classifier"], row["attack"], budget(row))
        series[row["dataset"]][panel][setting_label(row)][row["threat_model"]] = row
    return series


def rung_order(threats: set[str]) -> list[str]:
    """The rungs that were run, weakest attacker first (unknown ones last, by name); a surrogate rung sits
    on its full rung."""
    rungs = {t.removesuffix(SURROGATE_SUFFIX) for t in threats}
    return [t for t in LADDER if t in rungs] + sorted(rungs - set(LADDER))


def _by_rung(cells: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """rung -> row, a surrogate row only where its full rung was not run."""
    ordered = sorted(cells.items(), key=lambda item: not item[0].endswith(SURROGATE_SUFFIX))  # full rungs written last
    return {threat.removesuffix(SURROGATE_SUFFIX): row for threat, row in ordered}


def _interval(row: dict[str, str], figure: str) -> tuple[float, float]:
    value, low, high = (float(row[c]) for c in (figure, f"{figure}_lo", f"{figure}_hi"))
    return value - low, high - value


@functools.cache
def default_job() -> dict[str, str]:
    """What ``python -m purebench`` runs without arguments: conf/config.yaml's choice per config group, and its
    number of images."""
    config = OmegaConf.load(CONF_DIR / "config.yaml")
    groups = {k: str(v) for entry in config.defaults if isinstance(entry, DictConfig) for k, v in entry.items()}
    return {**groups, "n_examples": str(config.n_examples)}


def default_job_row(rows: Sequence[dict[str, str]], like: dict[str, str]) -> dict[str, str] | None:
    """The default job's row on ``like``'s dataset, classifier and budget (the defense at its defaults, no
    protocol, its number of images: a run on more is another command): the latest; None when it was not run
    there."""
    job = default_job()
    matches = [
        r for r in filter(has_ra, rows)
        if not r.get("protocol") and r["threat_model"] == job["threat"] and not changed_keys(r)
        and all(r[k] == job[k] for k in ("dataset", "classifier", "defense", "attack", "n_examples"))
        and budget(r) == budget(like)
    ]  # fmt: skip
    return max(matches, key=lambda r: r["finished_at"], default=None)


@plt.rc_context(STYLE)
def ladder_plots(rows: Sequence[dict[str, str]], folder: Path) -> list[Path]:
    """One figure per dataset (``ladder_<dataset>.png``, the dataset cell made a plain file name): the headline
    matrix's where ``rows`` hold protocol rows (:func:`headline_ladder_figure`), else one column-wide panel
    per (classifier, attack, budget) where some defense setting was run under two rungs or more (a single
    rung is no ladder: it is in the tables and the SA-RA panels). Returns the files written."""
    lines = protocol_lines(rows, folder / "runs")
    headline = lines[0].main["dataset"] if lines else None
    written = []
    if lines:
        path = inside(folder, folder / f"ladder_{safe_name(headline)}.png")
        written.append(_save(headline_ladder_figure(rows, lines), path))
    for dataset, panels in sorted(ladder_series(rows).items()):
        figure = None if dataset == headline else ladder_figure(dataset, panels)
        if figure is not None:
            written.append(_save(figure, inside(folder, folder / f"ladder_{safe_name(dataset)}.png")))
    return written


@plt.rc_context(STYLE)
def ladder_figure(dataset: str, panels: dict[tuple[str, str, str], Series]) -> plt.Figure | None:
    """The panels of :func:`ladder_series` for one dataset; None when no setting was run under two rungs.
    A panel draws the settings run under the most rungs (at most :data:`MAX_LINES`) and names how many more
    there are."""
    drawn = {
        key: {label: by_rung for label, cells in lines.items() if len(by_rung := _by_rung(cells)) > 1}
        for key, lines in panels.items()
    }
    keys = sorted(key for key, lines in drawn.items() if lines)
    if not keys:
        return None
    fig, axes = plt.subplots(len(keys), 2, figsize=(LADDER_PANEL[0] + LEGEND_WIDTH, LADDER_PANEL[1] * len(keys)),
                             squeeze=False, layout="constrained",
                             gridspec_kw={"width_ratios": (LADDER_PANEL[0], LEGEND_WIDTH)})  # fmt: skip
    for k, key in enumerate(keys):
        ranked = sorted(drawn[key].items(), key=lambda item: (-len(item[1]), item[0]))
        rungs = rung_order({t for _, cells in ranked for t in cells})
        panel, shown = axes[k, 0], ranked[:MAX_LINES]
        colours = setting_colours([label for label, _ in shown])
        surrogate = [
            _ladder_line(panel, rungs, label, cells, cells[next(t for t in rungs if t in cells)], colours[label],
                         _shift(n, len(shown)))  # SA: the weakest rung's row
            for n, (label, cells) in enumerate(shown)
        ]  # fmt: skip
        attack = attack_name(key[1], next(iter(shown[0][1].values()))["attack_params"])
        _keys(panel, any(surrogate), attack)
        _ladder_axes(panel, rungs, f"{key[0]}, {attack}, {key[2]}")
        more = len(ranked) - len(shown)
        _ladder_legend(axes[k, 1], panel, f"{more} more settings in the tables" if more else "")
    fig.suptitle(f"{dataset}: robust accuracy (correct clean and attacked) up the threat ladder", fontsize=8)
    return fig


@plt.rc_context(STYLE)
def headline_ladder_figure(rows: Sequence[dict[str, str]], lines: Sequence[Line]) -> plt.Figure:
    """The matrix as a ladder: its first :data:`MAX_LINES` lines (the most robust, the default job's defense
    among them whatever its rank; the rest named beside the panel), the PGD cells joined between neighbouring
    rungs run (a gap at a rung not run), AutoAttack rand cells and surrogate-gradient cells as their own
    markers, and the default job's cell (:func:`default_job_row`) as a star in its defense's colour right of the
    markers of its rung. A rung
    none of the drawn lines has a cell under says why: :data:`DETERMINISTIC` where every drawn defense is
    deterministic (known draws are the draws of a randomized defense), else :data:`NOT_RUN`."""
    rungs = list(dict.fromkeys(rung for _, _, rung in RUNGS))
    job = default_job_row(rows, lines[0].main)
    drawn = lines[:MAX_LINES]
    # the default job's defense is drawn whatever its rank: its star stands beside its line
    mine = next((line for line in lines if job is not None and line.label == setting_label(job)), None)
    if mine is not None and all(line is not mine for line in drawn):
        drawn = [*drawn[:-1], mine]
    fig, (panel, legend_area) = plt.subplots(1, 2, figsize=(LADDER_PANEL[0] + LEGEND_WIDTH, LADDER_PANEL[1]),
                                             layout="constrained",
                                             gridspec_kw={"width_ratios": (LADDER_PANEL[0], LEGEND_WIDTH)})  # fmt: skip
    colours = setting_colours([line.label for line in drawn])
    others: dict[str, str] = {}  # attack -> its display name
    surrogate, filled = False, set()
    for n, line in enumerate(drawn):
        colour, shift = colours[line.label], _shift(n, len(drawn))
        by_attack: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        for header, attack, rung in RUNGS:
            if header in line.cells:
                by_attack[attack][rung] = line.cells[header]
                filled.add(rung)
        surrogate |= _ladder_line(panel, rungs, line.label, by_attack.pop(LINE_ATTACK, {}), line.main, colour, shift)
        for attack, cells in by_attack.items():
            others.setdefault(attack, attack_name(attack, next(iter(cells.values()))["attack_params"]))
            _points(panel, rungs, cells, shift + _step(len(drawn)) / 2, marker=MARKERS["other attack"],
                    color=colour["color"], markerfacecolor="white", markersize=3.5)  # fmt: skip
        # flagged as in the matrix: a weak attack (not a strong defense), a shattered gradient (an upper bound)
        for header, mark in marks(line).items():
            attack, rung = next((a, r) for h, a, r in RUNGS if h == header)
            x = rungs.index(rung) + shift + (0 if attack == LINE_ATTACK else _step(len(drawn)) / 2)  # its marker's x
            panel.annotate(mark, (x, float(line.cells[header]["ra"])), xytext=(4, 2), textcoords="offset points",
                           fontsize=8, color=colour["color"], zorder=5, bbox=FLAG_BOX)  # fmt: skip
    for k, rung in enumerate(rungs):
        if rung not in filled:
            text = DETERMINISTIC if not any(line.randomized for line in drawn) else NOT_RUN
            panel.text(k, 50, text, rotation=90, ha="center", va="center", fontsize=6, color="0.4")
    main = drawn[0].main
    if job is not None and job["threat_model"] in rungs:
        star = colours[mine.label]["color"] if mine is not None else "black"  # its defense's colour
        _points(panel, rungs, {job["threat_model"]: job}, STAR, marker=MARKERS["default job"], color=star,
                markersize=9, markeredgecolor="black", markeredgewidth=0.6, zorder=4)  # fmt: skip
    _keys(panel, surrogate, attack_name(LINE_ATTACK), list(others.values()), job, coloured=mine is not None)
    _ladder_axes(panel, rungs, f"{main['classifier']}, {budget(main)}")
    shown = {line.label for line in drawn}
    rest = [line.label for line in lines if line.label not in shown]
    notes = [f"In the matrix, not drawn here: {', '.join(rest)}."] if rest else []
    notes += _mark_notes([flag for line in drawn for flag in marks(line).values()])
    _ladder_legend(legend_area, panel, " ".join(notes))
    fig.suptitle(f"{main['dataset']}: RA up the threat ladder, headline protocol", fontsize=8)
    return fig


def _mark_notes(flags: Sequence[str]) -> list[str]:
    """What each mark among the cells' ``flags`` (:func:`~purebench.leaderboard.matrix.marks`) means, once."""
    return [note for mark, note in MARK_NOTES.items() if any(mark in flag for flag in flags)]


def setting_colours(labels: Sequence[str]) -> dict[str, dict[str, object]]:
    """label -> its line style: one palette colour per setting in ``labels``' order, :data:`OTHER` beyond the
    palette, and the undefended model (:data:`UNDEFENDED`) dashed grey without taking a colour, so a setting has
    the same colour in the ladder and the SA-RA figure."""
    palette = iter(PALETTE)
    return {
        label: dict(UNDEFENDED_STYLE) if label == UNDEFENDED else {"color": next(palette, OTHER), "linestyle": "-"}
        for label in labels
    }


def _step(count: int) -> float:
    """The x distance between neighbouring settings' markers at a rung: :data:`SPREAD` shared by ``count``."""
    return min(0.12, SPREAD / max(count - 1, 1))


def _shift(n: int, count: int) -> float:
    """The n-th of ``count`` settings' offset along x: markers that sit at the same RA (every defense at 0 under
    the adaptive rung) stay apart, as do their error bars."""
    return (n - (count - 1) / 2) * _step(count)


def _points(ax: plt.Axes, rungs: list[str], cells: dict[str, dict[str, str]], shift: float, **style: object) -> None:
    """RA with its 95% interval at each cell's rung. Where ``style`` draws a line it joins neighbouring rungs
    only: a rung not run between two that were breaks it (a gap, NaN), so no line suggests a figure there."""
    run = [rungs.index(t) for t in rungs if t in cells]
    span = range(run[0], run[-1] + 1) if run else range(0)
    figures = {k: (float(cells[rungs[k]]["ra"]), *_interval(cells[rungs[k]], "ra")) for k in run}
    ra, below, above = (
        [figures[k][i] if k in figures else math.nan for k in span] for i in range(3)
    )  # fmt: skip
    ax.errorbar([k + shift for k in span], ra, yerr=[below, above] if run else None,
                capsize=2, **{"linewidth": 1, "linestyle": "", "markersize": 3, **style})  # fmt: skip


def _ladder_line(
    ax: plt.Axes,
    rungs: list[str],
    label: str,
    cells: dict[str, dict[str, str]],
    sa_row: dict[str, str],
    style: dict[str, object],
    shift: float,
) -> bool:
    """One setting: its SA (``sa_row``'s) at the left, and its RA up the rungs (``cells``: rung -> row) joined
    in ``style`` (:func:`setting_colours`), which is its legend entry; a surrogate-gradient cell marked and
    joined to its neighbours by a dotted line (the gradient changes there: a drop to or from it is partly the
    gradient's); whether there was one."""
    colour = style["color"]
    ax.plot([-1 + shift], [float(sa_row["sa"])], marker=MARKERS["SA"], markersize=3, color=colour, linestyle="")
    ax.plot([], [], marker=MARKERS["line"], markersize=3, linewidth=1, label=label, **style)  # the legend entry
    if not cells:  # a setting of the matrix without PGD cells yet: its other markers only
        return False
    surrogate = {t: row for t, row in cells.items() if is_surrogate(row)}
    _points(ax, rungs, {t: row for t, row in cells.items() if t not in surrogate}, shift, marker=MARKERS["line"],
            **style)  # fmt: skip
    if surrogate:
        _points(ax, rungs, surrogate, shift, marker=MARKERS["surrogate"], color=colour, markersize=7,
                markeredgecolor="white", markeredgewidth=0.5, zorder=3)  # fmt: skip
        run = sorted(rungs.index(t) for t in cells)
        for a, b in itertools.pairwise(run):
            if b == a + 1 and (rungs[a] in surrogate or rungs[b] in surrogate):
                ax.plot([a + shift, b + shift], [float(cells[rungs[k]]["ra"]) for k in (a, b)], color=colour,
                        linestyle=SURROGATE_JOIN, linewidth=1)  # fmt: skip
    return bool(surrogate)


def _keys(
    ax: plt.Axes,
    surrogate: bool,
    line_attack: str = "",
    others: Sequence[str] = (),
    job: dict[str, str] | None = None,
    coloured: bool = False,
) -> None:
    """Legend keys after the settings' colours: what the SA squares, the joined markers, the other attacks'
    markers, the surrogate-gradient marker and the default job's star stand for (the ones drawn)."""
    ax.plot([], [], linestyle="", marker=MARKERS["SA"], color="black", markersize=3, label="SA (left column)")
    if line_attack:
        ax.plot(
            [],
            [],
            marker=MARKERS["line"],
            color="black",
            markersize=3,
            linewidth=1,
            label=f"{line_attack} (line: rungs run)",
        )
    for attack in others:
        ax.plot([], [], linestyle="", marker=MARKERS["other attack"], color="black", markerfacecolor="white",
                markersize=3, label=attack)  # fmt: skip
    if surrogate:
        ax.plot([], [], linestyle=SURROGATE_JOIN, linewidth=1, marker=MARKERS["surrogate"], color="black", markersize=7,
                markeredgecolor="white", markeredgewidth=0.5, label="surrogate gradient (dotted line to it)")  # fmt: skip
    if job is not None:
        ax.plot([], [], linestyle="", marker=MARKERS["default job"], color="black", markersize=7,
                label=default_job_label(job, coloured))  # fmt: skip


def default_job_label(job: dict[str, str], coloured: bool = False) -> str:
    """The star's legend entry: what ``python -m purebench`` runs and where the star is drawn (in its defense's
    colour when that defense has a line here)."""
    colour = ", in its defense's colour" if coloured else ""
    return textwrap.fill(
        f"default job (python -m purebench, star right of its rung{colour}): {job['defense']}, "
        f"{attack_name(job['attack'], job.get('attack_params', ''))}, n={job['n_examples']}",
        44,
    )


def _ladder_axes(ax: plt.Axes, rungs: list[str], title: str) -> None:
    """Rung ticks (:func:`rung_name`) upright, slanted where there are many, so that neighbours never overlap;
    a faint line between rungs; y from -3 so that markers at RA 0 show whole."""
    ax.axvline(-0.5, color="0.7", linewidth=0.6)
    for k in range(len(rungs) - 1):  # rungs apart: a marker belongs to the rung of its column
        ax.axvline(k + 0.5, color="0.9", linewidth=0.5)
    upright = len(rungs) <= 5
    ax.set_xticks(range(-1, len(rungs)), ["SA", *(rung_name(t) for t in rungs)], rotation=0 if upright else 30,
                  ha="center" if upright else "right", rotation_mode="anchor")  # fmt: skip
    ax.set(xlim=(-1.5, len(rungs) - 0.5), ylim=(-3, 102), ylabel="accuracy % (95% CI): SA, then RA", title=title)
    ax.grid(alpha=0.3, axis="y")


def _ladder_legend(area: plt.Axes, panel: plt.Axes, note: str) -> None:
    """The panel's legend, and ``note`` under it (below the area's bottom when the legend runs that far: the saved
    figure grows to hold it), in ``area`` right of the panel."""
    area.axis("off")
    handles, labels = panel.get_legend_handles_labels()
    labels = [
        label if "\n" in label else textwrap.fill(label, LABEL_WIDTH) for label in labels
    ]  # the panel keeps its width
    legend = area.legend(handles, labels, loc="upper left", frameon=False, ncol=1, borderaxespad=0)
    if note:
        area.figure.canvas.draw()  # lays the figure out, so the legend's extent is where it is saved
        bottom = legend.get_window_extent().transformed(area.transAxes.inverted()).y0
        area.text(0.0, min(bottom - 0.03, 0.2), textwrap.fill(note, 60), transform=area.transAxes, ha="left",
                  va="top", fontsize=5, color="0.3")  # fmt: skip


@plt.rc_context(STYLE)
def sa_ra_scatter(rows: Sequence[dict[str, str]], path: Path) -> Path:
    """Write :func:`sa_ra_figure` to ``path``; the run files beside it (``runs/``) order the headline lines."""
    return _save(sa_ra_figure(rows, path.parent / "runs"), path)


@plt.rc_context(STYLE)
def sa_ra_figure(rows: Sequence[dict[str, str]], runs_dir: Path | None) -> plt.Figure:
    """One panel per (classifier, attack, budget): each row's (SA, RA) with both intervals, one colour per
    defense setting and one marker per rung (rows without an RA are not drawn). With protocol rows only
    theirs, coloured as in the ladder (the matrix's order); else the settings with the most rows get the
    colours. At most :data:`MAX_LEGEND` legend entries: settings beyond them share one grey entry."""
    rows = list(filter(has_ra, rows))
    lines = protocol_lines(rows, runs_dir)
    flags: dict[int, str] = defaultdict(str)  # id(row) -> the matrix's marks on its cell
    labels = {id(row): line.label for line in lines for row in line.cells.values()}  # the matrix's names
    if lines:
        rows = [row for line in lines for row in line.cells.values()]
        order = [line.label for line in lines]
        for line in lines:
            for header, mark in marks(line).items():
                flags[id(line.cells[header])] = mark
    else:
        counts: dict[str, int] = defaultdict(int)
        for row in rows:
            counts[setting_label(row)] += 1
        order = sorted(counts, key=lambda label: (-counts[label], label))
    rungs = rung_order({r["threat_model"] for r in rows})
    surrogate = any(map(is_surrogate, rows))
    room = min(MAX_LEGEND - len(rungs) - surrogate, len(PALETTE) + (UNDEFENDED in order))
    coloured = order if len(order) <= room else order[: room - 1]
    colours = {label: style["color"] for label, style in setting_colours(coloured).items()}
    entries = {label: _entry("s", colour) for label, colour in colours.items()}
    grey = order[len(coloured) :]  # named under the legend: a grey marker still says whose it is
    if grey:
        entries[f"{len(grey)} other settings"] = _entry("s", OTHER)
    entries |= {rung_name(rung): _entry(RUNG_MARKERS.get(rung, "X"), "black") for rung in rungs}
    if surrogate:  # keyed by the marker of a rung it was run under
        rung = next(r["threat_model"].removesuffix(SURROGATE_SUFFIX) for r in rows if is_surrogate(r))
        entries["hollow: surrogate gradient"] = _entry(RUNG_MARKERS.get(rung, "X"), "black", markerfacecolor="white")
    # PGD's panel first: the ladder's attack; AutoAttack beside it.
    panels = sorted({(r["classifier"], r["attack"], budget(r)) for r in rows}, key=lambda p: (p[1] != LINE_ATTACK, p))
    columns = min(3, len(panels))
    n_rows = -(-len(panels) // columns)
    notes = [f"grey: {', '.join(grey)}."] if grey else []
    notes += _mark_notes(list(flags.values()))
    grey_note = textwrap.wrap(" ".join(notes), width=int(20 * PANEL[0] * columns))
    legend_columns = 2 * columns
    legend_height = 0.16 * (-(-len(entries) // legend_columns) + len(grey_note)) + 0.1  # inches
    height = PANEL[1] * n_rows + legend_height
    fig, axes = plt.subplots(n_rows, columns, figsize=(PANEL[0] * columns, height), squeeze=False)
    for ax, (classifier, attack, width) in zip(axes.flat, panels, strict=False):
        members = [r for r in rows if (r["classifier"], r["attack"], budget(r)) == (classifier, attack, width)]
        key = (classifier, attack_name(attack, members[0]["attack_params"]), width)
        sa_drawn = set()  # a setting's SA interval once per image set: its rungs share the clean images
        for row in members:
            rung = row["threat_model"].removesuffix(SURROGATE_SUFFIX)
            label = labels.get(id(row)) or setting_label(row)
            colour = colours.get(label, OTHER)
            first = (label, row["n_examples"], row["sa"]) not in sa_drawn
            sa_drawn.add((label, row["n_examples"], row["sa"]))
            ax.errorbar(float(row["sa"]), float(row["ra"]), xerr=[[e] for e in _interval(row, "sa")] if first else None,
                        yerr=[[e] for e in _interval(row, "ra")], marker=RUNG_MARKERS.get(rung, "X"), color=colour,
                        markerfacecolor="white" if is_surrogate(row) else colour, markersize=3,
                        linewidth=0.6, capsize=1.5, alpha=0.8)  # fmt: skip
            if flags.get(id(row)):
                ax.annotate(flags[id(row)], (float(row["sa"]), float(row["ra"])), xytext=(3, 1),
                            textcoords="offset points", fontsize=7, color=colour, zorder=5, bbox=FLAG_BOX)  # fmt: skip
        sizes = sorted({int(r["n_examples"]) for r in members})
        images = f"n = {sizes[0]}" if len(sizes) == 1 else f"n = {sizes[0]}-{sizes[-1]} (the matrix's n)"
        title = ", ".join(key) + (f"\n{HEADLINE} protocol, {images}" if lines else "")
        ax.set(xlim=LIMITS, ylim=LIMITS, xlabel="SA %", ylabel="RA %", title=title)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.legend(
        list(entries.values()), [textwrap.fill(e, LABEL_WIDTH) for e in entries], loc="lower center", ncol=legend_columns, frameon=False, fontsize=6,
        bbox_to_anchor=(0.5, 0.16 * len(grey_note) / height),
    )  # fmt: skip
    if grey_note:
        fig.text(0.5, 0.02 / height, "\n".join(grey_note), ha="center", va="bottom", fontsize=6)
    fig.tight_layout(rect=(0, legend_height / height, 1, 1))
    return fig


def _entry(marker: str, colour: object, **style: object) -> plt.Line2D:
    """A legend key: a marker without line."""
    return plt.Line2D([], [], marker=marker, color=colour, linestyle="", markersize=4, **style)


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write the PNG whole or not at all, where a link at ``path`` leads (as the leaderboard's other files)."""
    with atomic_path(link_target(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=200, bbox_inches="tight")
    plt.close(fig)
    return path
