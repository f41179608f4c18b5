"""The end-of-run summary the CLI prints: one row as a readable table, beside the leaderboard's tables.

It lives with the tables (it uses their intervals and parameter cells) rather than in the CLI, so the
layers run one way: the CLI calls the runner and this module, and nothing below the CLI imports it.
"""

from __future__ import annotations

from pathlib import Path

from purebench.eval.threats import SURROGATE_SUFFIX, base_rung
from purebench.leaderboard.params import changed
from purebench.leaderboard.table import eot_text, eps_text, with_interval

_FIELDS = [
    ("dataset", "dataset"), ("classifier", "classifier"), ("defense", "defense"), ("changed params", "defense_params"),
    ("attack", "attack"), ("threat model", "threat_model"), ("budget", None), ("examples", "n_examples"),
    ("clean acc (undefended)", "clean_acc_undefended"), ("adv acc (undefended)", "adv_acc_undefended"),
    ("left unperturbed", "unperturbed"),
    ("SA (defended)", "sa"), ("RA (defended)", "ra"), ("RA worst case", "ra_worst"),
    ("RA majority vote", "ra_vote"), ("acc on purified x_adv", "acc_purified_adv"), ("evaluations", "n_eval"),
    ("EOT draws", "threat_eot_iter"), ("wall time [s]", "wall_s"), ("run id", "run_id"),
]  # fmt: skip


# What a rung's RA means, and what to run before quoting it: the reader of a summary may not know the ladder.
# Every rung's RA is an upper bound on the defense's robustness; they differ in how loose it is.
RUNG_MEANING = {
    "oblivious": "the attacker does not see the purifier: the loosest upper bound on RA, not a robustness claim; "
    "run threat=bpda_eot and threat=adaptive before quoting it",
    "bpda": "gradients pass the purifier as the identity, no EOT: a weak white box; run threat=adaptive",
    "eot": "gradients through the purifier's differentiable parts, EOT over its randomness; run threat=adaptive",
    "bpda_eot": "the purifier in the forward pass, the identity backward, EOT over its randomness (the protocol of "
    "earlier purification papers, e.g. Yoon et al. 2021): loose where exact gradients exist; run threat=adaptive",
    "adaptive": "full white box: exact gradients through the purifier, EOT over its randomness; the strongest "
    "attacker here, still an upper bound: quote the worst over the white-box rungs run",
    "known_draws": "exact gradients through the very draws the evaluation makes: what is left is not owed to the "
    "defense's randomness",
}
# A surrogate rung (threat.surrogate, Lee & Kim 2023) takes its gradients from a cheaper copy of the purifier and
# scores on the real one: its own words, since "exact gradients through the purifier" would no longer be true.
SURROGATE_MEANING = {
    "adaptive": "exact gradients through a cheaper surrogate of the purifier (threat.surrogate, Lee & Kim 2023), EOT "
    "over its randomness, scored on the real purifier: not the purifier's own gradient, so read it as a looser "
    "upper bound than threat=adaptive until checked against that rung on a few images",
    "bpda_eot": "a cheaper surrogate of the purifier (threat.surrogate) in the forward pass, the identity backward, "
    "EOT over its randomness, scored on the real purifier: loose where exact gradients exist; run threat=adaptive",
}
_QUOTABLE = ("adaptive", "known_draws")  # rungs whose RA may be quoted (beside bpda_eot's, the worst of them)


def rung_meaning(threat: str) -> str:
    """What ``threat``'s RA means (a surrogate rung: gradients from a copy of the defense, evaluated on the real one;
    a rung without words of its own for that keeps its meaning with the surrogate named); a plugin's rung says
    nothing."""
    rung = base_rung(threat)
    meaning = RUNG_MEANING.get(rung, "")
    if threat.endswith(SURROGATE_SUFFIX) and meaning:
        meaning = SURROGATE_MEANING.get(rung) or (
            f"{meaning}; the attack saw a cheaper surrogate of the purifier (threat.surrogate), the score the real one"
        )
    return meaning


def quoted(row: dict) -> str:
    """Which RA figure to quote: the one figure of a deterministic defense (mean, worst case and vote agree); for
    a randomized one the mean over the purifications, as papers on randomized purification report it, beside
    its stricter worst case; from a white-box rung, never from a weaker one."""
    n_eval = int(row.get("n_eval") or 1)
    figure = "RA (defended)"
    if n_eval > 1:
        figure = (
            f"RA (defended), the mean over {n_eval} purifications, as papers on randomized purification report "
            f"it (Lee & Kim 2023 add the majority vote); RA worst case (robust under all {n_eval}) is stricter"
        )
    if base_rung(str(row.get("threat_model", ""))) in _QUOTABLE:
        return figure
    return f"{figure}: of a threat=adaptive run (worst with bpda_eot), not of this rung"


def print_summary(row: dict, results_dir: Path | None = None, figure: str | None = None, skipped: bool = False) -> None:
    """A readable end-of-run table: figures with their 95% intervals, the parameters changed from the
    defaults (the full row is in the leaderboard and the run file), what the rung means and which RA to
    quote, what RA counts, since papers report both it and the accuracy on purified adversarial inputs under
    the same name, and the files written under ``results_dir`` (``figure``: the run file's purification grid,
    relative to it; ``skipped``: skip_finished found the row there and wrote nothing)."""
    width = max(len(label) for label, _ in _FIELDS)
    lines = ["", "purebench result", "-" * (width + 40)]
    for label, key in _FIELDS:
        value = f"{row['norm']} eps={eps_text(float(row['eps']), row['norm'])}" if key is None else row[key]
        if key in ("sa", "ra", "ra_worst", "ra_vote"):
            value = with_interval(row, key)  # 95% Wilson interval over the n images
        elif key == "defense_params":
            value = f"{changed(str(row['defense']), str(row[key]))} (full list in the run file)"
        elif key == "threat_model" and (meaning := rung_meaning(str(value))):
            value = f"{value}: {meaning}"
        elif key == "threat_eot_iter":
            value = eot_text(row)  # AutoAttack rand averages its own draws: "20 (the attack's)", not the threat's 1
        elif key == "unperturbed":
            value = f"{value} (x_adv = x: the attack gave up or found the example misclassified; scored as purify(x))"
        lines.append(f"{label:<{width}}  {value}")
    pad = f"\n{'':<{width}}  "
    lines.append(
        f"{'quote':<{width}}  {quoted(row)}"
        f"{pad}RA counts an example only if SA got it right too (bounded by clean correctness, RA <= SA);"
        f"{pad}acc on purified x_adv counts every example, the figure some purification papers report"
    )
    if results_dir is not None and skipped:
        lines.append(f"{'written':<{width}}  nothing: skip_finished found this configuration as the run above")
    elif results_dir is not None:
        written = [results_dir / "runs" / f"{row['run_id']}.json", results_dir / "leaderboard.csv"]
        written += [results_dir / figure] if figure else []
        lines.append(f"{'written':<{width}}  " + pad.join(str(path) for path in written))
        merge = "merge " if row.get("shard") else ""  # a shard's row joins the tables once its set is merged
        lines.append(
            f"{'':<{width}}  tables and figures: python -m purebench.leaderboard {merge}results_dir={results_dir}"
        )
    if row.get("warnings"):
        lines.append(f"{'warnings':<{width}}  {row['warnings']}")
    print("\n".join(lines), flush=True)
