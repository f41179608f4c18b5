"""Cells of a protocol's matrix left out on purpose, listed in ``results_dir/left_out.csv`` with the reason.

A sweep leaves out the cells it cannot afford (AutoAttack through a purifier that costs hours per gradient
on a CPU); without this file such a cell reads ``not run`` as a queued one does, and a reader cannot tell a
gap that will close from one that will not. Each line names the protocol, the defense (its registry name: every
setting of it), the attack and the rung, and why; the matrix writes ``left out`` in the cell and the reason in
its caption. A row that is run later stands in the cell whatever the file says.
"""

from __future__ import annotations

import csv
from pathlib import Path

from purebench.defenses import DEFENSES
from purebench.errors import PurebenchError

FILE_NAME = "left_out.csv"
HEADER = ["protocol", "defense", "attack", "threat_model", "reason"]


def read_left_out(results_dir: Path, protocol: str, columns: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """(defense, column header) -> reason for ``protocol``'s lines of ``results_dir/left_out.csv`` (empty when
    there is no such file). ``columns`` maps (attack, threat_model) to the matrix's column header; a line naming
    a defense not registered or a pair the matrix has no column for is refused with the choices, one without a
    reason is refused."""
    path = results_dir / FILE_NAME
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != HEADER:
            raise PurebenchError(f"{path}: the header must be '{','.join(HEADER)}', got {reader.fieldnames}.")
        lines = [{key: (value or "").strip() for key, value in line.items()} for line in reader]
    left_out = {}
    for number, line in enumerate(lines, start=2):
        pair = (line["attack"], line["threat_model"])
        if pair not in columns:
            choices = ", ".join(f"{attack},{rung}" for attack, rung in columns)
            raise PurebenchError(f"{path}, line {number}: no matrix column for attack,threat_model={','.join(pair)}; "
                                 f"choose one of {choices}.")  # fmt: skip
        if not line["reason"]:
            raise PurebenchError(f"{path}, line {number}: say why the cell is left out (the reason column is empty).")
        try:
            DEFENSES.get(line["defense"])
        except PurebenchError as exc:
            raise PurebenchError(f"{path}, line {number}: {exc}") from None
        if line["protocol"] == protocol:
            left_out[line["defense"], columns[pair]] = line["reason"]
    return left_out
