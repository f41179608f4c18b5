"""``python -m purebench`` / ``purebench``: the Hydra entry point of the evaluation runner.

User mistakes (:class:`PurebenchError`) print one paragraph and exit with status 2; Hydra
itself reports unknown config-group options with the list of available ones.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from purebench.errors import PurebenchError

log = logging.getLogger("purebench")
# The config tree lives at the repository top level (conf/), beside this package.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def print_summary(row: dict) -> None:
    """A readable end-of-run table: figures with their 95% intervals, the parameters changed from the
    defaults (the full row is in the leaderboard and the run file), and what RA counts, since papers
    report both it and the accuracy on purified adversarial inputs under the same name."""
    fields = [
        ("dataset", "dataset"), ("classifier", "classifier"), ("defense", "defense"), ("changed params", "defense_params"),
        ("attack", "attack"), ("threat model", "threat_model"), ("budget", None), ("examples", "n_examples"),
        ("clean acc (undefended)", "clean_acc_undefended"), ("adv acc (undefended)", "adv_acc_undefended"),
        ("left unperturbed", "unperturbed"),
        ("SA (defended)", "sa"), ("RA (defended)", "ra"), ("RA worst case", "ra_worst"),
        ("RA majority vote", "ra_vote"), ("acc on purified x_adv", "acc_purified_adv"), ("evaluations", "n_eval"),
        ("EOT draws", "threat_eot_iter"), ("wall time [s]", "wall_s"), ("run id", "run_id"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in fields)
    lines = ["", "purebench result", "-" * (width + 40)]
    from purebench.leaderboard.params import changed
    from purebench.leaderboard.table import with_interval

    for label, key in fields:
        value = f"{row['norm']} eps={row['eps']:.5g}" if key is None else row[key]
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


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    from purebench.eval.runner import evaluate

    try:
        row = evaluate(cfg)
    except PurebenchError as exc:
        log.error("%s", exc)
        print(f"purebench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print_summary(row)
    return row
