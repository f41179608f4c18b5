"""The self-contained HTML leaderboard: the headline matrix first, then every run in sortable tables.

Rendered with Jinja2 (templates/leaderboard.html.j2, autoescaped). The page leads with what the benchmark
found: the finding sentence and the headline matrix (:mod:`purebench.leaderboard.matrix`), then the ladder
figure. Below them, collapsed, one table per (dataset, threat model), strongest rung first and ``oblivious``
last, with the Markdown tables' columns, each figure's 95% interval under it (in every table, so columns
align); a click on a header sorts by that column, select boxes above keep only one classifier, budget or n (the
values of current rows), the section counts follow them and a table they empty says so. Superseded rows are in
the tables but hidden until "show superseded rows" is ticked, each with the reason it was superseded. Long cells
(parameters, run ids, commits) are cut short with the full text on hover, so every column fits a 1400 px window;
the attack's steps lead its parameters, so PGD-10 and PGD-20 rows differ at a glance. Rungs and attacks carry
their display names (:func:`purebench.leaderboard.params.rung_name`, ``attack_name``). The other
figures, the latest purification figure of each defense setting and the defaults close the page; figures
are embedded as data URIs, so the one file can be mailed or attached to a paper's supplement. The run id
links to the run file (config, per-example records) relative to the results folder; an id or config hash
that is not a plain file name (a foreign or hand-edited CSV) gets no link and no figure.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from purebench.eval.atomic_files import is_safe_name
from purebench.leaderboard.matrix import finding, lead, matrix_table, protocol_caption, protocol_lines
from purebench.leaderboard.params import attack_name, legend, rung_name, setting_label, split_params
from purebench.leaderboard.table import (
    INTERVAL_NOTE,
    SHOWN,
    budget,
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
_CODE_SPAN = re.compile(r"`([^`]+)`")


def code_spans(text: str) -> markupsafe.Markup:
    """Markdown's `code` spans of a caption item (shared with leaderboard.md) as <code>, the rest escaped."""
    return markupsafe.Markup(_CODE_SPAN.sub(r"<code>\1</code>", str(markupsafe.escape(text))))


_TEMPLATES.filters["code_spans"] = code_spans
_NUMERIC = {"n_examples", "sa", "ra", "ra_worst", "ra_vote", "n_eval", "threat_eot_iter"}
# Characters a long cell keeps before "…" (the full text is its title): what a 1400 px window has room for.
_ABBREVIATED = {"defense_params": 40, "attack_params": 24, "run_id": 15}
_CHECKPOINT_FOLDER = re.compile(r"(?<![^ ,])checkpoint=[^,]*/")  # a checkpoint shown by its file name
# Headers the page words apart from the Markdown tables' (column -> header).
HEADERS = {"clean_acc_undefended": "undefended: clean / adv %"}
# A matrix cell: the figure, its interval, and what follows (fewer images, a surrogate).
_FIGURE = re.compile(r"(?P<text>-?\d+(?:\.\d+)?) (?P<interval>\[[^\]]*\])(?: (?P<note>.+))?")
# (label, how a row reads it) of the select boxes above the per-threat tables.
FILTERS = [("classifier", lambda r: r["classifier"]), ("budget", budget), ("n", lambda r: r["n_examples"])]
# What the tables' and the matrix's abbreviations mean (the page's legend); rungs and attacks by their display names.
TERMS = [
    ("SA", "standard accuracy: the defended model (purify, then classify) on the clean images."),
    ("RA", "robust accuracy: the share of images classified correctly both clean and after the attack; for a "
           "randomized defense the mean over its evaluations."),
    ("worst", "RA worst: an image counts only if it is robust in every one of the n_eval evaluations."),
    ("vote", "RA vote: the majority vote of the predictions over the evaluations decides."),
    ("evals", "n_eval: how many times each adversarial image is purified and classified (randomized defenses)."),
    ("EOT", "draws of the defense's randomness averaged per attack gradient (expectation over transformation; "
            "\"the attack's\" where the attack averages them itself, as AutoAttack rand does); as a rung: gradients "
            "through the defense's differentiable parts, EOT over its randomness."),
    (rung_name("oblivious"), "the attacker attacks the classifier alone, then the defense purifies its adversarial "
                             "image (the papers' protocol)."),
    (rung_name("bpda"), "backward pass differentiable approximation: the gradient passes through the purifier as "
                        "if it were the identity."),
    (rung_name("bpda_eot"), "BPDA, with EOT over the defense's randomness."),
    (rung_name("adaptive"), "gradients through the real purifier (its inner steps unrolled), EOT over its "
                            "randomness: the full white box."),
    (rung_name("known_draws"), "the attacker knows the random draws the evaluation makes and attacks through "
                               "exactly those: what a defense keeps here is not owed to its randomness (n/a for a "
                               "deterministic defense)."),
    ("surrogate", "\"<rung> (surrogate)\": gradients through a cheaper copy of the defense (fewer steps), the "
                  "attack then evaluated on the real one (Lee & Kim 2023)."),
    (attack_name("pgd"), "projected gradient descent; the attack parameters start with its steps (PGD-20: steps=20)."),
    (attack_name("autoattack", "version=rand"), "AutoAttack's version for randomized defenses: APGD-CE + APGD-DLR, "
                                                "EOT over 20 draws per gradient."),
    ("<paper>_floor", "the paper's corruption step (noise, masking) with a classical fill instead of the learned "
                      "network (impure_floor, atop_floor): what the learned part has to beat."),
    ("worst over rungs", "the matrix's last column: each image counts with its lowest RA over every rung run for "
                         "that defense, so an image broken by any attacker counts as broken."),
]  # fmt: skip


def _cell(row: dict[str, str], column: str) -> dict[str, Any]:
    """A table cell: its text (a long one cut short, the full text its title), the value it sorts by, its
    interval and link."""
    bounded = column in ("sa", "ra", "ra_worst", "ra_vote") and row.get(column, "") != ""  # interval apart
    full = row[column] if bounded else shown(row, column)  # an RA that could not be bounded is marked
    text = _CHECKPOINT_FOLDER.sub("checkpoint=", full) if column == "defense_params" else full
    if column == "attack_params":
        text = attack_params_text(row)
    elif column == "attack":
        text = attack_name(row["attack"], row.get("attack_params", ""))
    limit = _ABBREVIATED.get(column)
    text = text[:limit] + "…" if limit and len(text) > limit else text
    cell: dict[str, Any] = {"text": text, "value": row.get(column, full)}
    cell["class"] = "long" if limit else "num" if column in _NUMERIC else ""  # a long cell may break anywhere
    if text != full or column == "commit":
        cell["title"] = row.get("commit", "") if column == "commit" else full
    if bounded:
        cell["interval"] = interval(row, column)
    if column == "run_id" and is_safe_name(row["run_id"]):
        cell["href"] = f"runs/{row['run_id']}.json"
    return cell


def attack_params_text(row: dict[str, str]) -> str:
    """The attack parameters as the page shows them: the steps first (``steps=20, alpha=0.00784, ...``, from the
    row's ``attack_steps`` where the parameters name none), so rows of PGD-10 and PGD-20 differ at a glance."""
    params = split_params(row.get("attack_params", ""))
    steps = params.pop("steps", row.get("attack_steps", ""))
    return ", ".join([*([f"steps={steps}"] if steps else []), *(f"{k}={v}" for k, v in params.items())])


def figure_cell(text: str) -> dict[str, str]:
    """A matrix cell laid out as the tables' figures: ``{"text": "39.45", "interval": "[33.7, 45.5]", "note":
    "(n=128)"}``; a cell without a figure (``not run``) is its text alone."""
    match = _FIGURE.fullmatch(text)
    return {k: v for k, v in match.groupdict().items() if v} if match else {"text": text}


def _row(row: dict[str, str], superseded: str | None) -> dict[str, Any]:
    """A table row: its cells, what the filters read, and why it was superseded (None for a current row)."""
    return {
        "cells": [_cell(row, column) for _, column in SHOWN],
        "filters": {name: read(row) for name, read in FILTERS},
        "superseded": superseded,
    }


def _natural(value: str) -> tuple[bool, int, str]:
    """Sort key of a select box's options: numbers by value (n: 64 before 128), then names."""
    return (not value.isdigit(), int(value) if value.isdigit() else 0, value)


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
            "caption": f"{key[0]}, {key[1]}, {attack_name(row['attack'], row.get('attack_params', ''))}, threat "
            f"model {rung_name(row['threat_model'])}: "
            f"RA {with_interval(row, 'ra')} "
            f"(n={row['n_examples']}); each row: true class, then the predictions on the clean, adversarial and "
            "purified image",
            "data": _png(results_dir / "figures" / f"{row['config_hash']}.png"),
        }
        for key, row in sorted(latest.items())
    ]


def _figures(results_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(the ladder figures, the others) already drawn in ``results_dir``."""
    ladders = [
        {"caption": f"{path.stem.removeprefix('ladder_')}: RA up the threat ladder (95% intervals; SA at the left; "
                    "each defense's markers a little apart from the others' at every rung)",
         "data": _png(path)}
        for path in sorted(results_dir.glob("ladder_*.png"))
    ]  # fmt: skip
    others = []
    if (results_dir / "sa_ra.png").is_file():
        others.append({"caption": "SA vs RA, one colour per defense setting, one marker per rung",
                       "data": _png(results_dir / "sa_ra.png")})  # fmt: skip
    return ladders, others


def html_leaderboard(
    rows: Sequence[dict[str, str]],
    results_dir: Path,
    superseded: Sequence[dict[str, str]] = (),
    reasons: Mapping[str, str] | None = None,
) -> str:
    """The page for the current ``rows`` (whole evaluations only) and the ``superseded`` ones (hidden until
    asked for, each with its entry of ``reasons``), embedding the PNGs already in ``results_dir``. The matrix,
    the figures and the defaults are the current rows' alone."""
    done, old = complete(rows), complete(superseded)
    why = {row["run_id"]: (reasons or {}).get(row["run_id"], "") for row in old}  # a current row has none
    lines = protocol_lines(done, results_dir / "runs")
    headers, table = matrix_table(lines)
    answer = lead(lines)  # the finding's first sentence, set apart on the page
    sections = [
        {
            "anchor": f"{dataset}-{threat}",
            "title": f"{dataset} — threat model: {rung_name(threat)}",
            "rows": [_row(r, why.get(r["run_id"])) for r in members],
            "n_superseded": sum(r["run_id"] in why for r in members),
            "columns": len(SHOWN),
        }
        for (dataset, threat), members in by_dataset_threat([*done, *old])
    ]
    filters = [{"name": name, "options": sorted({read(r) for r in done}, key=_natural)} for name, read in FILTERS]
    ladders, plots = _figures(results_dir)
    return _TEMPLATES.get_template("leaderboard.html.j2").render(
        lead=answer, finding=finding(lines).removeprefix(answer), matrix_headers=headers, matrix=[[figure_cell(c) for c in line] for line in table],
        matrix_caption=protocol_caption(lines, results_dir),
        ladders=ladders, terms=TERMS, note=INTERVAL_NOTE, filters=filters, n_superseded=len(old),
        headers=[HEADERS.get(column, header) for header, column in SHOWN], sections=sections, plots=plots,
        purifications=_purification_figures(done, results_dir), legend=[line[2:] for line in legend([*done, *old])],
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), n_rows=len(done),
    )  # fmt: skip
