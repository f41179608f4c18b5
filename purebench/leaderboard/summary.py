"""The end-of-run summary the CLI prints: one row as a readable table, beside the leaderboard's tables.

It lives with the tables (it uses their intervals and parameter cells) rather than in the CLI, so the
layers run one way: the CLI calls the runner and this module, and nothing below the CLI imports it.
"""

from __future__ import annotations

from purebench.leaderboard.params import changed
from purebench.leaderboard.table import eps_text, with_interval

_FIELDS = [
    ("dataset", "dataset"), ("classifier", "classifier"), ("defense", "defense"), ("changed params", "defense_params"),
    ("attack", "attack"), ("threat model", "threat_model"), ("budget", None), ("examples", "n_examples"),
    ("clean acc (undefended)", "clean_acc_undefended"), ("adv acc (undefended)", "adv_acc_undefended"),
    ("left unperturbed", "unperturbed"),
    ("SA (defended)", "sa"), ("RA (defended)", "ra"), ("RA worst case", "ra_worst"),
    ("RA majority vote", "ra_vote"), ("acc on purified x_adv", "acc_purified_adv"), ("evaluations", "n_eval"),
    ("EOT draws", "threat_eot_iter"), ("wall time [s]", "wall_s"), ("run id", "run_id"),
]  # fmt: skip


def print_summary(row: dict) -> None:
    """A readable end-of-run table: figures with their 95% intervals, the parameters changed from the
    defaults (the full row is in the leaderboard and the run file), and what RA counts, since papers
    report both it and the accuracy on purified adversarial inputs under the same name."""
    width = max(len(label) for label, _ in _FIELDS)
    lines = ["", "purebench result", "-" * (width + 40)]
    for label, key in _FIELDS:
        value = f"{row['norm']} eps={eps_text(float(row['eps']), row['norm'])}" if key is None else row[key]
        if key in ("sa", "ra", "ra_worst", "ra_vote"):
            value = with_interval(row, key)  # 95% Wilson interval over the n images
        elif key == "defense_params":
            value = f"{changed(str(row['defense']), str(row[key]))} (full list in the run file)"
        lines.append(f"{label:<{width}}  {value}")
    lines.append(
        f"{'':<{width}}  RA counts an example only if SA got it right too (bounded by clean correctness, RA <= SA);"
        f"\n{'':<{width}}  acc on purified x_adv counts every example, the figure some purification papers report"
    )
    if row.get("warnings"):
        lines.append(f"{'warnings':<{width}}  {row['warnings']}")
    print("\n".join(lines), flush=True)
