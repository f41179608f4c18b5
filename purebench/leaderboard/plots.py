"""Figures of the leaderboard: the threat ladder per dataset and the SA-RA scatter per threat model.

The ladder is the story a purification benchmark tells: a defense's RA as the attacker learns more
(oblivious -> bpda -> eot -> bpda_eot -> adaptive), one line per defense with its 95% interval and
its SA marked, one panel per (classifier, attack, budget). Sizes are chosen for a paper column
(3.3 in wide per panel, 7 pt text).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from purebench.eval.atomic_files import atomic_path, inside, link_target, safe_name
from purebench.eval.results import has_ra
from purebench.eval.threats import LADDER
from purebench.leaderboard.params import setting_label

PANEL = (3.3, 2.6)  # inches: one paper column
STYLE = {"font.size": 7, "axes.titlesize": 7, "legend.fontsize": 6}  # paper-column text, set per figure only

Series = dict[str, dict[str, dict[str, str]]]  # defense label -> threat -> latest row


def ladder_series(rows: Sequence[dict[str, str]]) -> dict[str, dict[tuple[str, str, str], Series]]:
    """dataset -> (classifier, attack, budget) -> defense label -> threat -> the latest row of that cell (rows
    without an RA, old ones whose run file could not bound it, are not drawn)."""
    series: dict[str, dict[tuple[str, str, str], Series]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for row in sorted(filter(has_ra, rows), key=lambda r: r["finished_at"]):
        panel = (row["classifier"], row["attack"], f"{row['norm']} {float(row['eps']):.4g}")
        series[row["dataset"]][panel][setting_label(row)][row["threat_model"]] = row
    return series


def rung_order(threats: set[str]) -> list[str]:
    """The rungs that were run, weakest attacker first (unknown ones last, by name)."""
    return [t for t in LADDER if t in threats] + sorted(threats - set(LADDER))


def _interval(row: dict[str, str], figure: str) -> tuple[float, float]:
    value, low, high = (float(row[c]) for c in (figure, f"{figure}_lo", f"{figure}_hi"))
    return value - low, high - value


@plt.rc_context(STYLE)
def ladder_plots(rows: Sequence[dict[str, str]], folder: Path) -> list[Path]:
    """One figure per dataset (``ladder_<dataset>.png``, the dataset cell made a plain file name), one
    column-wide panel per (classifier, attack, budget) where some defense setting was run under two rungs
    or more; only such settings get a line (a single rung is no ladder: it is in the tables and the SA-RA
    panels). Returns the files written."""
    written = []
    for dataset, panels in sorted(ladder_series(rows).items()):
        drawn = {
            key: {label: cells for label, cells in lines.items() if len(cells) > 1} for key, lines in panels.items()
        }
        keys = sorted(key for key, lines in drawn.items() if lines)
        if not keys:
            continue
        heights = [h for key in keys for h in (PANEL[1], 0.55 + 0.14 * len(drawn[key]))]  # panel, its legend
        fig, axes = plt.subplots(len(heights), 1, figsize=(PANEL[0], sum(heights)), squeeze=False,
                                 gridspec_kw={"height_ratios": heights})  # fmt: skip
        for k, key in enumerate(keys):
            panel, legend_area = axes[2 * k, 0], axes[2 * k + 1, 0]
            _ladder_panel(panel, key, drawn[key])
            legend_area.axis("off")
            legend_area.legend(*panel.get_legend_handles_labels(), loc="lower center", frameon=False, ncol=1)
        fig.suptitle(f"{dataset}: robust accuracy (correct clean and attacked) up the threat ladder", fontsize=8)
        written.append(_save(fig, inside(folder, folder / f"ladder_{safe_name(dataset)}.png")))
    return written


def _ladder_panel(ax: plt.Axes, key: tuple[str, str, str], lines: Series) -> None:
    rungs = rung_order({t for cells in lines.values() for t in cells})
    for k, (label, cells) in enumerate(sorted(lines.items())):
        run = [t for t in rungs if t in cells]
        shift = (k - (len(lines) - 1) / 2) * 0.05  # keep overlapping error bars apart
        errors = list(zip(*(_interval(cells[t], "ra") for t in run), strict=True))
        line = ax.errorbar([rungs.index(t) + shift for t in run], [float(cells[t]["ra"]) for t in run], yerr=errors,
                           marker="o", markersize=3, linewidth=1, capsize=2, label=label)  # fmt: skip
        ax.plot([-1 + shift], [float(cells[run[0]]["sa"])], marker="s", markersize=3, color=line[0].get_color())
    ax.axvline(-0.5, color="0.7", linewidth=0.6)
    ax.set_xticks(range(-1, len(rungs)), ["SA", *rungs], rotation=20)
    ax.set(xlim=(-1.5, len(rungs) - 0.5), ylim=(-2, 102), ylabel="RA % (95% CI)", title=", ".join(key))
    ax.grid(alpha=0.3)


@plt.rc_context(STYLE)
def sa_ra_scatter(rows: Sequence[dict[str, str]], path: Path) -> Path:
    """One panel per threat model: each defense's (SA, RA) with both intervals, named in a legend (rows
    without an RA are not drawn)."""
    rows = list(filter(has_ra, rows))
    threats = rung_order({r["threat_model"] for r in rows})
    columns = min(3, len(threats))
    n_rows = -(-len(threats) // columns)
    legend_height = 0.13 * -(-len({(setting_label(r), r["classifier"]) for r in rows}) // 2) + 0.1  # inches
    height = PANEL[1] * n_rows + legend_height
    fig, axes = plt.subplots(n_rows, columns, figsize=(PANEL[0] * columns, height), squeeze=False)
    labels = sorted({f"{setting_label(r)} / {r['classifier']}" for r in rows})
    markers = "osD^v<>pP*Xh"
    styles = {label: (markers[k % len(markers)], plt.cm.tab10(k % 10)) for k, label in enumerate(labels)}
    for ax, threat in zip(axes.flat, threats, strict=False):
        for row in (r for r in rows if r["threat_model"] == threat):
            marker, colour = styles[f"{setting_label(row)} / {row['classifier']}"]
            ax.errorbar(float(row["sa"]), float(row["ra"]), xerr=[[e] for e in _interval(row, "sa")],
                        yerr=[[e] for e in _interval(row, "ra")], marker=marker, color=colour, markersize=3,
                        linewidth=0.6, capsize=1.5, alpha=0.8)  # fmt: skip
        ax.set(xlim=(0, 100), ylim=(0, 100), xlabel="SA %", ylabel="RA %", title=f"threat model: {threat}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(threats) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker=m, color=c, linestyle="", markersize=4) for m, c in styles.values()]
    fig.legend(handles, list(styles), loc="lower center", ncol=2, frameon=False, fontsize=5)
    fig.tight_layout(rect=(0, legend_height / height, 1, 1))
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write the PNG whole or not at all, where a link at ``path`` leads (as the leaderboard's other files)."""
    with atomic_path(link_target(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=200, bbox_inches="tight")
    plt.close(fig)
    return path
