"""Join the shards of one configuration into one leaderboard row.

Shards are grouped by config hash, code version (:func:`purebench.provenance.row_code_version`: the
hash of the code that computed them; the commit for older rows) and shard count N. Shards of one config
computed by different code are never one set, whatever their commit says (outside git it is ``unknown``
for all): each version is merged only once it has all its shards, and merge names the shards of each
version. A 2-way and a 4-way set of one config are two sets; a re-run shard replaces its older row, and
a set is complete once it covers shards 0..N-1. SA/RA are recomputed from the per-example records of
the shards' run files (never averaged from their percentages), so the merged row equals the row of an
unsharded run, RA bounded by clean correctness as the runner's is (``summarise``). Shard rows stay in
the leaderboard, marked by their ``shard`` column.

A run file is checked before it is trusted (:func:`_checked_examples`): it must exist and hold the
config and per-example records; every example index appears once within and across the shards; shard
I holds exactly batches I, I+N, ... of the config's subset cut into its ``batch_size``, together
``n_examples`` of them (for ``dataset.sample=random`` the subset cannot be redrawn without the data, so
the shards' own indices stand for it and only the cut is checked); and each shard's figures recomputed
from its records equal its own CSV row. A set that fails is refused with the shard to re-run; the other
sets are merged all the same.

When a config and version has several complete sets (say a 2-way and a 4-way run), only the set whose
last shard finished latest is merged, as a re-run shard replaces its older row, and the others are
reported: they evaluate the same examples with the same code, so a second merged row would repeat the
first in every table. Once a config and version has a merged row, nothing more is merged for it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from purebench.errors import PurebenchError
from purebench.eval.atomic_files import inside, safe_name, write_json
from purebench.eval.results import append_row, read_rows, run_file, summarise
from purebench.provenance import row_code_version

MERGED = "merged"
# The figures a shard row holds that its records must reproduce (summarise's, without the bounds derived from them).
_CHECKED = ("n_examples", "sa", "ra", "ra_worst", "ra_vote", "acc_purified_adv", "clean_acc_undefended",
            "adv_acc_undefended", "unperturbed")  # fmt: skip

ShardSet = dict[int, dict[str, str]]  # shard index -> its latest row


def _shard(label: str) -> tuple[int, int] | None:
    """``"I/N"`` as (I, N), None when it is no shard label (a hand edit)."""
    match = re.fullmatch(r"(\d+)/(\d+)", label.strip())
    i, n = (int(match[1]), int(match[2])) if match else (-1, 0)
    return (i, n) if 0 <= i < n else None


def unmerged(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Shard rows of configs (and versions) without a merged row: in no table or figure until merged."""
    merged = {_key(r) for r in rows if r.get("shard", "").startswith(MERGED)}
    shards = [r for r in rows if r.get("shard") and not r["shard"].startswith(MERGED)]
    return [r for r in shards if _key(r) not in merged]


def _key(row: dict[str, str]) -> tuple[str, str]:
    """What a set of shards shares: the config and the code that computed it."""
    return row["config_hash"], row_code_version(row)


def merge_shards(results_dir: Path) -> list[dict[str, Any]]:
    """Append one merged row per config and version with a complete set of shards and no merged row yet
    (the choice among several sets and the checks are in the module docstring); returns the new rows.
    Raises a PurebenchError naming the shards to re-run when a set was refused, after merging the others."""
    rows = read_rows(results_dir / "leaderboard.csv")
    sets: dict[tuple[str, str], dict[int, ShardSet]] = defaultdict(lambda: defaultdict(dict))
    for row in sorted(unmerged(rows), key=lambda r: r["finished_at"]):  # a re-run shard replaces the older row
        shard = _shard(row["shard"])
        if shard is None:
            print(f"purebench.leaderboard merge: row {row['run_id']} has shard '{row['shard']}', not I/N; skipped.")
            continue
        sets[_key(row)][shard[1]][shard[0]] = row
    versions: dict[str, list[str]] = defaultdict(list)
    for chash, version in sorted(sets):
        labels = sorted(f"{i}/{n}" for n, shards in sets[(chash, version)].items() for i in shards)
        versions[chash].append(f"{', '.join(labels)} by code {version}")
    for chash, described in sorted(versions.items()):
        if len(described) > 1:
            print(
                f"purebench.leaderboard merge: shards of config {chash} were computed by {len(described)} different "
                f"code versions ({'; '.join(described)}), so they are not one set: each version is merged only when "
                "it has all its shards. Re-run the shards of the older code with the current code to complete a set."
            )
    new_rows, refused = [], []
    for (chash, _commit), by_n in sorted(sets.items()):
        full = {n: shards for n, shards in by_n.items() if sorted(shards) == list(range(n))}
        for n, shards in sorted(by_n.items()):
            if n not in full:
                ids = [f"{i}/{n}" for i in sorted(shards)]
                print(
                    f"purebench.leaderboard merge: config {chash} has shards {ids}, not all of 0..{n - 1}/{n}; skipped."
                )
        if not full:
            continue
        n = max(full, key=lambda k: max(r["finished_at"] for r in full[k].values()))
        for other in sorted(set(full) - {n}):
            print(
                f"purebench.leaderboard merge: config {chash} also has a complete {other}-way set; only the latest, "
                f"{n}-way, is merged (the same examples and code: a second merged row would repeat it)."
            )
        try:
            examples = _checked_examples(results_dir / "runs", full[n])
        except PurebenchError as exc:
            refused.append(str(exc))
            continue
        new_rows.append(_merge(results_dir, full[n], examples))
    if refused:
        merged = f" The other {len(new_rows)} complete set(s) were merged." if new_rows else ""
        raise PurebenchError(" ".join(refused) + merged)
    return new_rows


def _merge(results_dir: Path, by_index: ShardSet, examples: list[dict[str, int]]) -> dict[str, Any]:
    """Write the merged run file and append the merged row of a checked set of shards."""
    shards = [by_index[i] for i in sorted(by_index)]
    chash = shards[0]["config_hash"]
    finished = dt.datetime.now(dt.UTC)
    row = {
        **shards[0],
        "run_id": f"{finished:%Y%m%dT%H%M%S}-{safe_name(chash)[:8]}-{uuid.uuid4().hex[:6]}",
        "shard": f"{MERGED} {len(shards)}",
        **summarise(examples, int(shards[0]["n_eval"] or 1)),
        "wall_s": round(sum(float(r["wall_s"]) for r in shards), 2),
        "warnings": " | ".join(sorted({w for r in shards for w in r["warnings"].split(" | ") if w})),
        "finished_at": finished.isoformat(timespec="seconds"),
    }
    runs = results_dir / "runs"
    write_json(
        inside(runs, run_file(runs, row["run_id"])),
        {"row": row, "shards": [r["run_id"] for r in shards], "per_example": examples},
    )
    append_row(results_dir / "leaderboard.csv", row)
    print(f"merged {len(shards)} shards of {chash}: SA {row['sa']} RA {row['ra']}")
    return row


def _refusal(by_index: ShardSet, culprits: Sequence[int], what: str) -> PurebenchError:
    """The error for a set of shards whose ``culprits`` cannot be trusted: which, why, and the re-run."""
    n, chash = len(by_index), by_index[culprits[0]]["config_hash"]
    labels = " and ".join(f"{i}/{n}" for i in culprits)
    commands = ", ".join(f"`python -m purebench <the overrides of this config> shard={i}/{n}`" for i in culprits)
    return PurebenchError(
        f"Shard {labels} of config {chash} cannot be merged: {what}. Nothing was merged for this config. Re-run "
        f"{'it' if len(culprits) == 1 else 'them'} with the same settings as the other shards ({commands}; a "
        "re-run shard's row replaces the old one), then run `python -m purebench.leaderboard merge` again."
    )


def _read_shard(runs_dir: Path, by_index: ShardSet, i: int) -> tuple[Path, dict[str, Any], list[dict[str, int]]]:
    """Shard ``i``'s run file, the config keys that fix its batches, and its per-example records."""
    try:
        path = run_file(runs_dir, by_index[i]["run_id"])
    except ValueError as exc:
        raise _refusal(by_index, [i], f"{exc}, so it has no run file") from None
    try:
        content = json.loads(path.read_text())
        config = content["config"]
        cut = {"n_examples": int(config["n_examples"]), "batch_size": int(config["batch_size"]),
               "sample": config.get("dataset", {}).get("sample", "first")}  # fmt: skip
        if min(cut["n_examples"], cut["batch_size"]) < 1:
            raise ValueError(f"its config has n_examples={cut['n_examples']}, batch_size={cut['batch_size']}")
        examples = content["per_example"]
        for e in examples:
            e["index"] = int(e["index"])
    except FileNotFoundError:
        raise _refusal(by_index, [i], f"its run file {path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        what = f"{path} is not a run file with a config and per-example records ({type(exc).__name__}: {exc})"
        raise _refusal(by_index, [i], what) from None
    return path, cut, examples


def _checked_examples(runs_dir: Path, by_index: ShardSet) -> list[dict[str, int]]:
    """The per-example records of a complete set of shards, sorted by index, once their run files are
    checked against their configs and their own rows (the checks are in the module docstring)."""
    n = len(by_index)
    shards = {i: _read_shard(runs_dir, by_index, i) for i in sorted(by_index)}
    cut = shards[0][1]
    if any(c != cut for _, c, _ in shards.values()):
        raise _refusal(by_index, sorted(shards), "their run files hold different n_examples, batch_size or sample")
    owner: dict[int, int] = {}  # example index -> the shard holding it
    for i, (path, _, examples) in shards.items():
        indices = [e["index"] for e in examples]
        if len(set(indices)) != len(indices):
            raise _refusal(by_index, [i], f"{path} holds some examples more than once")
        for index in indices:
            if owner.setdefault(index, i) != i:
                raise _refusal(by_index, [owner[index], i], f"both hold example {index}")
    subset = list(range(cut["n_examples"])) if cut["sample"] == "first" else sorted(owner)
    if len(subset) != cut["n_examples"]:  # a random sample; a first-n subset is checked batch by batch below
        raise _refusal(
            by_index, sorted(shards), f"together they hold {len(subset)} examples, their config {cut['n_examples']}"
        )
    batches = [subset[k : k + cut["batch_size"]] for k in range(0, len(subset), cut["batch_size"])]
    for i, (path, _, examples) in shards.items():
        if sorted(e["index"] for e in examples) != sorted(index for batch in batches[i::n] for index in batch):
            raise _refusal(by_index, [i], f"{path} does not hold batches {i}, {i + n}, ... of its config's subset")
        row = by_index[i]
        try:
            figures = summarise(examples, int(row["n_eval"] or 1))
        except (KeyError, TypeError, ValueError) as exc:
            raise _refusal(by_index, [i], f"the per-example records of {path} are incomplete ({exc!r})") from None
        differ = [f"{k} {row[k] or 'empty'} (records: {figures[k]})" for k in _CHECKED if not _same(row[k], figures[k])]
        if differ:
            raise _refusal(by_index, [i], f"the records of {path} do not give its row's figures: {', '.join(differ)}")
    return sorted((e for _, _, examples in shards.values() for e in examples), key=lambda e: e["index"])


def _same(cell: str, figure: object) -> bool:
    """Whether a row's cell shows ``figure`` (both empty, or equal to the 2 decimals rows are written with)."""
    if cell == "" or figure == "":
        return cell == figure
    try:
        return abs(float(cell) - float(figure)) < 0.01
    except ValueError:  # a cell that is no number (a hand edit) shows no figure
        return False
