"""Per-run result files and the shared leaderboard CSV.

Run files appear whole or not at all (:mod:`purebench.eval.atomic_files`). A leaderboard row is
added under an exclusive lock by rewriting the whole file through a temporary that replaces it,
so concurrent runs (a multirun on one machine, array jobs on a shared file system with lock
support) never lose a row, and a process killed at any instant leaves the old file or the new one,
never a torn line. Adding a row is idempotent by ``run_id``: a run killed after its row was written
and then re-run does not add it twice.

The file is never rewritten when its lines cannot be matched to its header (a hand edit): the
header migration would shift values into the wrong columns, so it refuses and names the line.
Readers skip malformed lines with a warning and build their tables from the rest.

A board behind a link (a group's shared leaderboard) is read, locked and rewritten where the link
leads, so the link stays a link. A ``run_id`` names its run file, ``runs/<run_id>.json``; an id
that is not a plain file name (a hand-edited or foreign CSV) is read as a row without run file,
with a warning, and never opens a path outside ``runs/``.

Robust accuracy counts an example only when its clean evaluation is correct too (issue 21): RA <= SA,
as AutoAttack and RobustBench count it. The accuracy on purified adversarial inputs alone, which
``ra`` held before, is the column ``acc_purified_adv``. Rows written before that column existed
still hold the old figure under ``ra``; the reader re-derives their bounded figures from the
per-example records of their run files and never rewrites their lines. A row whose records cannot
be found keeps its old figure only as ``acc_purified_adv``: its RA reads as empty, with a warning.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purebench.errors import PurebenchError
from purebench.eval.atomic_files import atomic_write_text, is_safe_name, link_target, locked, stale_temporaries
from purebench.eval.intervals import BOUNDED, row_bounds

log = logging.getLogger(__name__)

# Leaderboard columns, in order; a row may leave later (threat-specific) columns empty.
COLUMNS = [
    "run_id", "dataset", "classifier", "defense", "defense_params", "attack", "threat_model", "norm", "eps",
    "n_examples", "seed", "shard", "sa", "ra", "ra_worst", "ra_vote", "n_eval", "clean_acc_undefended", "adv_acc_undefended",
    "unperturbed", "attack_steps", "attack_params", "attack_eot_iter", "threat_eot_iter", "threat_backprop_steps", "adv_cache", "defense_randomized",
    "randomness_detected", "wall_s", "config_hash", "commit", "version", "data_source", "warnings", "finished_at",
    *(column for _, low, high in BOUNDED for column in (low, high)),  # 95% Wilson bounds, appended (issue 16)
    "acc_purified_adv",  # accuracy on purify(x_adv) alone, what ra was before it was bounded (issue 21)
    "threat_surrogate",  # threat.surrogate's defense settings (Lee & Kim 2023), empty for the real gradient (issue 25)
    "protocol",  # the recipe's protocol name (headline: the leaderboard's matrix), empty for other runs (issue 25)
]  # fmt: skip
SUPERSEDED_FILE = "superseded.csv"  # run_id,reason: rows later runs replace (never deleted)
# The figures that count an example only when its clean evaluation is correct (issue 21).
ROBUST = ("ra", "ra_worst", "ra_vote")
# What a row needs to be shown in a table: these columns non-empty, these parse as numbers.
_REQUIRED = ("run_id", "dataset", "classifier", "defense", "attack", "threat_model", "finished_at")
_NUMERIC = ("sa", "ra", "eps", "n_examples")


def _format_row(row: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n").writerow(row)
    return buf.getvalue()


def _parse(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line number, fields) of every non-blank line after it."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    lines = []
    for fields in reader:
        if fields:
            lines.append((reader.line_num, fields))
    return header, lines


def _problem(header: Sequence[str], fields: Sequence[str]) -> str | None:
    """Why a line cannot be a leaderboard row, or None."""
    if len(fields) != len(header):
        return f"{len(fields)} fields for {len(header)} header columns"
    row = dict(zip(header, fields, strict=True))
    for column in _REQUIRED:
        if column in row and not row[column].strip():
            return f"empty '{column}'"
    for column in _NUMERIC:
        try:
            float(row.get(column, "0"))
        except ValueError:
            return f"'{column}' is '{row[column]}', not a number"
    return None


def _line_list(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _migrated(csv_path: Path, header: list[str], lines: list[tuple[int, list[str]]]) -> str:
    """The file's rows under the current header; refuses when a line cannot be matched to its columns."""
    unknown = [c for c in header if c not in COLUMNS]
    mismatched = [n for n, fields in lines if len(fields) != len(header)]
    if unknown or mismatched:
        what = (
            f"its header names columns purebench does not know ({', '.join(unknown)})"
            if unknown
            else f"line(s) {_line_list(mismatched)} do not have the {len(header)} fields its header (line 1) names"
        )
        raise PurebenchError(
            f"{csv_path} cannot take a new row: {what}, so its values cannot be matched to the current columns and "
            "rewriting it would shift them into the wrong ones. The file was left as it is. This usually means the "
            "header or a line was edited by hand: restore it (the current header is purebench.eval.results.COLUMNS, "
            f"{len(COLUMNS)} columns starting with run_id,dataset,classifier), or move the file away to start a new "
            "leaderboard; then re-run the same command (work already finished is reused, not recomputed)."
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dict(zip(header, fields, strict=True)) for _, fields in lines)
    return buf.getvalue()


def check_leaderboard(csv_path: Path) -> None:
    """Fail when ``csv_path`` exists but could not take a row (checked before a run computes anything)."""
    csv_path = link_target(csv_path)
    if not csv_path.exists():
        return
    if not csv_path.is_file() or not os.access(csv_path, os.R_OK | os.W_OK):
        raise PurebenchError(
            f"{csv_path} is not a readable and writable file, so no row could be added to it. Fix its permissions, "
            "move it away, or point results_dir at another directory; nothing has been computed yet."
        )
    with locked(csv_path):
        header, lines = _parse(csv_path.read_text())
        if header and header != COLUMNS:
            _migrated(csv_path, header, lines)


def check_writable(folders: Sequence[Path], setting: str) -> None:
    """Create ``folders`` and write a probe file in each, so an unwritable output location fails
    before any compute rather than after the first batch."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
            reason = f"'{blocker}' is a file, not a directory" if blocker else f"'{folder}': {exc.strerror or exc}"
            raise PurebenchError(
                f"{setting}='{folders[0]}' cannot hold the output: {reason}. Point {setting} at a location you can "
                "write, or fix the permissions; nothing has been computed yet."
            ) from exc


def append_row(csv_path: Path, row: dict[str, Any]) -> bool:
    """Add ``row`` under the lock unless a row with its ``run_id`` is already there; returns whether
    it was added. Columns outside :data:`COLUMNS` are an error (the schema is fixed)."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"leaderboard row has unknown columns {sorted(unknown)}")
    csv_path = link_target(csv_path)  # a shared board behind a link is rewritten where it lives
    with locked(csv_path):
        for tmp in stale_temporaries(csv_path):  # left by a writer killed mid-write; we hold the lock
            tmp.unlink(missing_ok=True)
        text = csv_path.read_text() if csv_path.exists() else ""
        header, lines = _parse(text)
        if not header:
            text = ",".join(COLUMNS) + "\n"
        elif header != COLUMNS:
            text = _migrated(csv_path, header, lines)
            header = COLUMNS
        if "run_id" in header:
            at = header.index("run_id")
            if any(len(fields) > at and fields[at] == row["run_id"] for _, fields in lines):
                return False
        if not text.endswith("\n"):
            text += "\n"
        atomic_write_text(csv_path, text + _format_row(row))
    return True


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """The well-formed leaderboard rows (empty list when there is no leaderboard yet); malformed lines
    are skipped with one warning that names them, and columns missing from an older header read as ''."""
    if not csv_path.exists():
        return []
    with locked(csv_path):
        header, lines = _parse(csv_path.read_text())
    rows, skipped, underived, unsafe = [], [], [], []
    for number, fields in lines:
        problem = _problem(header, fields)
        if problem:
            skipped.append(f"line {number} ({problem})")
            continue
        row = {**dict.fromkeys(COLUMNS, ""), **dict(zip(header, fields, strict=True))}
        if not is_safe_name(row["run_id"]):
            unsafe.append(repr(row["run_id"]))
        if row["acc_purified_adv"] == "":  # written before RA was bounded: re-derived from its run file
            problem = _bound_old_row(row, csv_path.parent / "runs")
            if problem:
                underived.append(f"{row['run_id']} ({problem})")
        if row["sa_lo"] == "":  # written before the bounds existed: derived from its own n and figures
            row.update({k: str(v) for k, v in row_bounds(row).items()})
        rows.append(row)
    if skipped:
        log.warning(
            "%s: skipped %d malformed line(s): %s. Fix or delete them; the tables are built from the other %d rows.",
            csv_path, len(skipped), "; ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""), len(rows),
        )  # fmt: skip
    if underived:
        log.warning(
            "%s: %d row(s) written before RA was bounded by clean correctness cannot be bounded from the per-example "
            "records of their run files, so their RA, RA worst and RA vote are left empty (their old figure is "
            "acc_purified_adv): %s. Restore their run files under %s or re-run them.",
            csv_path, len(underived), "; ".join(underived[:10]) + (" ..." if len(underived) > 10 else ""),
            csv_path.parent / "runs",
        )  # fmt: skip
    if unsafe:
        log.warning(
            "%s: %d row(s) have a run_id that is not a plain file name, so they are read as rows without run file "
            "(nothing outside %s is opened for them): %s. Fix the run_id if the row came from a hand edit.",
            csv_path, len(unsafe), csv_path.parent / "runs",
            ", ".join(unsafe[:10]) + (" ..." if len(unsafe) > 10 else ""),
        )  # fmt: skip
    return rows


def _bound_old_row(row: dict[str, str], runs_dir: Path) -> str | None:
    """Replace an old row's unbounded RA figures (and their bounds) by the bounded ones recomputed from
    its run file, its old ``ra`` moving to ``acc_purified_adv``; returns why that failed, or None. A row
    whose run file is missing, lacks records, or whose records do not reproduce its SA and old RA gets
    empty robust figures instead: an unbounded figure must never be shown as RA."""
    old_ra = row["ra"]
    row.update({"acc_purified_adv": old_ra, **dict.fromkeys(ROBUST, "")})
    try:
        figures = summarise(run_records(run_file(runs_dir, row["run_id"])), int(row["n_eval"] or 1))
    except (OSError, ValueError, KeyError) as exc:
        problem = "run file missing" if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}: {exc}"
    else:
        if abs(figures["sa"] - float(row["sa"])) < 0.01 and abs(figures["acc_purified_adv"] - float(old_ra)) < 0.01:
            row.update({k: str(figures[k]) for k in ROBUST})
            problem = None
        else:
            problem = f"its records give SA {figures['sa']} and old RA {figures['acc_purified_adv']}"
    row.update({k: str(v) for k, v in row_bounds(row).items()})
    return problem


def read_superseded(results_dir: Path) -> dict[str, str]:
    """run_id -> reason from ``results_dir/superseded.csv`` (empty when there is no such file)."""
    path = results_dir / SUPERSEDED_FILE
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["run_id", "reason"]:
            raise PurebenchError(f"{path}: the header must be 'run_id,reason', got {reader.fieldnames}.")
        return {line["run_id"].strip(): line["reason"].strip() for line in reader if line["run_id"].strip()}


def finished_row(results_dir: Path, config_hash: str, shard: str, weights: dict[str, str]) -> dict[str, str] | None:
    """The newest current (not superseded) leaderboard row of this configuration and shard whose run file
    exists, if any: what ``skip_finished=true`` returns instead of evaluating again. The code version is not compared
    (config_hash leaves it out): a sweep resumed after an edit that changes no figure keeps its rows. The
    defense's checkpoints are (``weights``: the row's ``<key>_sha256`` entries): a retrained purifier is new."""
    reasons = read_superseded(results_dir)
    done = [
        row for row in read_rows(results_dir / "leaderboard.csv")
        if row["config_hash"] == config_hash and row["shard"] == shard and row["run_id"] not in reasons
        and run_file(results_dir / "runs", row["run_id"]).is_file()
        and {f"{key}={digest}" for key, digest in weights.items()} <= set(row["defense_params"].split(","))
    ]  # fmt: skip
    return max(done, key=lambda row: row["finished_at"]) if done else None


def has_ra(row: dict[str, str]) -> bool:
    """Whether a row read by :func:`read_rows` has an RA: not an old row its run file could not bound."""
    return row.get("ra", "") != ""


def run_file(runs_dir: Path, run_id: str) -> Path:
    """The run file of ``run_id`` in ``runs_dir``; a ValueError, which readers take for a row without run
    file, when the id is not a plain file name (``../../x`` must not open a file outside ``runs_dir``)."""
    if not is_safe_name(run_id):
        raise ValueError(f"run_id {run_id!r} is not a plain file name")
    return runs_dir / f"{run_id}.json"


def load_run_file(results_dir: Path, run_id: str) -> dict[str, Any]:
    """The run file of ``run_id`` (its row, config, per-example records, ...)."""
    return json.loads(run_file(results_dir / "runs", run_id).read_text())


def run_records(path: Path) -> list[dict[str, int]]:
    """The per-example records of a run file; a file without any is a ValueError."""
    examples = json.loads(path.read_text()).get("per_example")
    if not examples:
        raise ValueError("run file without per-example records")
    return examples


def per_example_worst(rows: Sequence[dict[str, str]], runs_dir: Path, common: bool = False) -> dict[int, float]:
    """Each example's lowest robust rate (:func:`robust_rates`) over the runs of ``rows``: an example
    broken by any of them counts as broken (the per-example worst case of an attack ensemble or a
    threat ladder). A ValueError when a row has no (bounded) RA, a run file has no records, or the
    runs do not cover the same examples (with ``common``: share none; the worst case is then taken over the
    examples every run evaluated, e.g. a 64-image rung beside 256-image ones); an OSError when a run file
    cannot be read."""
    rates: list[dict[int, float]] = []
    for row in rows:
        if not has_ra(row):
            raise ValueError(f"run {row['run_id']} has no robust accuracy")
        examples = run_records(run_file(runs_dir, row["run_id"]))
        n_eval = int(row.get("n_eval") or 1)
        rates.append({e["index"]: rate for e, rate in zip(examples, robust_rates(examples, n_eval), strict=True)})
    shared = set.intersection(*(set(r) for r in rates)) if rates else set()
    if not shared or (not common and any(r.keys() != rates[0].keys() for r in rates)):
        raise ValueError("the runs do not cover the same examples")
    return {i: min(r[i] for r in rates) for i in sorted(shared)}


def summarise(examples: Sequence[dict[str, int]], n_eval: int) -> dict[str, Any]:
    """The row's accuracies (percent, 2 decimals) and their 95% bounds, recomputed from per-example records:
    one code path for the runner and the shard merge, so a merged row equals the unsharded run's."""
    percent = lambda values: round(100.0 * float(np.mean(values)), 2)  # noqa: E731
    clean = [e["sa_correct"] for e in examples]  # the SA evaluation: classifier(purify(x)) correct
    voted = all("vote_correct" in e for e in examples)
    figures = {
        "n_examples": len(examples),
        "sa": percent(clean),
        "ra": percent(robust_rates(examples, n_eval)),
        "ra_worst": percent([c and ra_hits(e) == n_eval for c, e in zip(clean, examples, strict=True)]),
        "ra_vote": percent([c and e["vote_correct"] for c, e in zip(clean, examples, strict=True)]) if voted else "",
        "acc_purified_adv": percent([ra_hits(e) / n_eval for e in examples]),
        "clean_acc_undefended": percent([e["clean_correct"] for e in examples]),
        "adv_acc_undefended": percent([e["adv_correct"] for e in examples]),
        "unperturbed": unperturbed(examples),
    }
    return {**figures, **row_bounds(figures)}


def robust_rates(examples: Sequence[dict[str, int]], n_eval: int) -> list[float]:
    """Each example's robust accuracy: the fraction of its ``n_eval`` purified adversarial evaluations that
    are correct, times whether its clean evaluation is (AutoAttack's and RobustBench's robust accuracy, where
    an example the defended model gets wrong clean is never robust, whatever the attack did to it)."""
    return [e["sa_correct"] * ra_hits(e) / n_eval for e in examples]


def ra_hits(example: dict[str, int]) -> int:
    """Correct purifications of one adversarial example (records before repeated evaluation held
    ``ra_correct`` from their single evaluation)."""
    return example["ra_hits"] if "ra_hits" in example else example["ra_correct"]


def unperturbed(examples: Sequence[dict[str, int]]) -> int | str:
    """How many adversarial examples the attack returned unchanged (AutoAttack keeps x where its
    own check found the example misclassified or never broke it); their RA is the purifier's
    accuracy on a clean image. Empty for records written before the count existed."""
    if any("perturbed" not in e for e in examples):
        return ""
    return sum(1 - e["perturbed"] for e in examples)
