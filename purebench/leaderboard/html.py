"""The self-contained HTML leaderboard: sortable tables, the figures embedded, each row linked to its run.

Rendered with Jinja2 (templates/leaderboard.html.j2, autoescaped): one table per (dataset, threat model)
with the Markdown tables' columns, each figure's 95% interval beside it, a click on a header sorts by
that column; the ladder plots, the SA-RA panels and the latest purification figure of each defense
setting are embedded as data URIs, so the one file can be mailed or attached to a paper's supplement.
The run id links to the run file (config, per-example records) relative to the results folder; an id or
config hash that is not a plain file name (a foreign or hand-edited CSV) gets no link and no figure.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from purebench.eval.atomic_files import is_safe_name
from purebench.leaderboard.params import legend, setting_label
from purebench.leaderboard.table import (
    INTERVAL_NOTE,
    SHOWN,
    by_dataset_threat,
    complete,
    interval,
    shown,
    with_interval,
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("purebench.leaderboard", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
)
_NUMERIC = {"n_examples", "sa", "ra", "ra_worst", "ra_vote", "n_eval", "threat_eot_iter"}


def _cell(row: dict[str, str], column: str) -> dict[str, Any]:
    bounded = column in ("sa", "ra", "ra_worst", "ra_vote") and row.get(column, "") != ""  # interval apart
    text = row[column] if bounded else shown(row, column)  # an RA that could not be bounded is marked
    cell: dict[str, Any] = {"text": text, "value": row.get(column, text), "numeric": column in _NUMERIC}
    if bounded:
        cell["interval"] = interval(row, column)
    if column == "run_id" and is_safe_name(row["run_id"]):
        cell["href"] = f"runs/{row['run_id']}.json"
    return cell


def _png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _purification_figures(rows: Sequence[dict[str, str]], results_dir: Path) -> list[dict[str, str]]:
    """The latest purification figure of each (defense setting, classifier): one per purifier, so the page stays
    a few MB (every run's figure is in ``figures/``)."""
    latest: dict[tuple[str, ...], dict[str, str]] = {}
    for row in sorted(rows, key=lambda r: r["finished_at"]):
        if is_safe_name(row["config_hash"]) and (results_dir / "figures" / f"{row['config_hash']}.png").is_file():
            latest[(setting_label(row), row["classifier"])] = row
    return [
        {
            "caption": f"{key[0]}, {key[1]}, {row['attack']}, threat model {row['threat_model']}: "
            f"RA {with_interval(row, 'ra')} "
            f"(n={row['n_examples']}); each row: true class, then the predictions on the clean, adversarial and "
            "purified image",
            "data": _png(results_dir / "figures" / f"{row['config_hash']}.png"),
        }
        for key, row in sorted(latest.items())
    ]


def html_leaderboard(rows: Sequence[dict[str, str]], results_dir: Path) -> str:
    """The page for ``rows`` (whole evaluations only), embedding the PNGs already in ``results_dir``."""
    done = complete(rows)
    sections = [
        {
            "anchor": f"{dataset}-{threat}",
            "title": f"{dataset} — threat model: {threat}",
            "rows": [[_cell(r, column) for _, column in SHOWN] for r in members],
        }
        for (dataset, threat), members in by_dataset_threat(done)
    ]
    plots = [
        {"caption": f"{path.stem.removeprefix('ladder_')}: RA up the threat ladder (95% intervals; SA at the left)",
         "data": _png(path)}
        for path in sorted(results_dir.glob("ladder_*.png"))
    ]  # fmt: skip
    if (results_dir / "sa_ra.png").is_file():
        plots.append({"caption": "SA vs RA, one panel per threat model", "data": _png(results_dir / "sa_ra.png")})
    return _TEMPLATES.get_template("leaderboard.html.j2").render(
        note=INTERVAL_NOTE, generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), n_rows=len(done),
        headers=[h for h, _ in SHOWN], sections=sections, plots=plots,
        purifications=_purification_figures(done, results_dir), legend=[line[2:] for line in legend(done)],
    )  # fmt: skip
