"""Compact parameter cells: a defense's keys that differ from its config defaults.

Rows record every defense key (``defense_params``: ``key=value`` pairs, 17 of them for ZeroPur), which
made a table several screens wide. Tables show only the keys a run changed; a legend line per
defense lists the defaults once. The CSV and the run files keep the full list.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Sequence
from pathlib import Path

from purebench.errors import PurebenchError
from purebench.eval.threats import SURROGATE_SUFFIX

_PAIR_START = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]*=)")  # a comma that starts the next key=value pair


def split_params(text: str) -> dict[str, str]:
    """``"a=1,b=[1, 2],c={'x': 3}"`` -> {"a": "1", "b": "[1, 2]", "c": "{'x': 3}"} (values as recorded)."""
    pairs = [p for p in _PAIR_START.split(text) if p]
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def format_params(params: dict[str, object]) -> str:
    """The recorded form of a parameter dict (the runner's ``defense_params``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(params.items()))


@functools.cache
def defaults(defense: str) -> dict[str, str] | None:
    """The recorded form of conf/defense/<defense>.yaml's values, or None for a defense without a config file."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from purebench.config_paths import CONF_DIR
    from purebench.eval.runner import group_params

    overrides = [f"defense={defense}"]
    try:
        if GlobalHydra.instance().is_initialized():  # inside the CLI's Hydra app (the end-of-run summary)
            cfg = compose("config", overrides=overrides)
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose("config", overrides=overrides)
    except Exception:
        return None
    try:
        return split_params(format_params(group_params(cfg.defense)))
    except PurebenchError:
        return None


def changed(defense: str, recorded: str) -> str:
    """The ``key=value`` pairs of ``recorded`` that differ from the defense's defaults ("defaults" if none;
    everything when the defaults are unknown)."""
    base = defaults(defense)
    if base is None:
        return recorded
    pairs = []
    for key, value in split_params(recorded).items():
        if base.get(key) == value:
            continue
        inner, inner_base = _as_dict(value), _as_dict(base.get(key, ""))
        if inner is not None and inner_base is not None:  # a block (model={...}): only its changed keys
            pairs += [f"{key}.{k}={v}" for k, v in inner.items() if inner_base.get(k) != v]
        else:
            pairs.append(f"{key}={value}")
    return ", ".join(pairs) if pairs else "defaults"


def setting_label(row: dict[str, str]) -> str:
    """A defense setting's short name, the one the figures, the HTML page and the matrix use. A trained
    ``checkpoint`` names the setting by its file name alone (the keys beside it build the network the file
    needs); a ``model`` (weights a sampler runs, default or not: "diffpure (diffpure_small)" is not the paper's
    model) by its name and the keys changed from the defaults, as a setting without weights is named, so two
    samplers of one model never share a name. Digests (``model_sha256=...``) are left out: they tell weight
    files apart, not settings a reader chooses between."""
    params = split_params(row.get("defense_params", ""))
    checkpoint = params.get("checkpoint", "None")
    if checkpoint not in ("None", ""):
        return f"{row['defense']} ({Path(checkpoint).name})"
    model = params.get("model", "None")  # a block such as IMPure's model={...} is an architecture, not weights
    weights = [Path(model).name] if model not in ("None", "") and not model.startswith("{") else []
    parts = weights + [k for k in changed_keys(row) if not k.startswith("model=")]
    return f"{row['defense']} ({', '.join(parts)})" if parts else row["defense"]


def changed_keys(row: dict[str, str]) -> list[str]:
    """The ``key=value`` pairs a row's defense changed from its defaults, digests left out (empty at defaults)."""
    keys = changed(row["defense"], row.get("defense_params", "")).split(", ")
    return [k for k in keys if k and k != "defaults" and "_sha256=" not in k]


def _as_dict(value: str) -> dict | None:
    """A recorded block value (``{'dim': 64, ...}``) as a dict; None for anything else."""
    if not value.startswith("{"):
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    return parsed if isinstance(parsed, dict) else None


def legend(rows: Sequence[dict[str, str]]) -> list[str]:
    """One line per defense of ``rows``: its defaults, which the tables leave out."""
    lines = []
    for defense in sorted({r["defense"] for r in rows}):
        base = defaults(defense)
        if base:
            lines.append(f"- `{defense}` defaults: " + ", ".join(f"{k}={v}" for k, v in base.items()))
    return lines


# How every output names a rung of the threat ladder and an attack: the figures' ticks and legends, the HTML
# page's headers and section titles (the CSV and the run files keep the recorded names).
RUNG_NAMES = {
    "oblivious": "oblivious",
    "bpda": "BPDA",
    "eot": "EOT",
    "bpda_eot": "BPDA+EOT",
    "adaptive": "adaptive",
    "known_draws": "known draws",
}
ATTACK_NAMES = {
    "pgd": "PGD", "pgdl2": "PGD-L2", "eotpgd": "EOT-PGD", "apgd": "APGD", "fgsm": "FGSM", "mifgsm": "MI-FGSM",
    "difgsm": "DI-FGSM", "cw": "CW", "deepfool": "DeepFool", "square": "Square", "autoattack": "AutoAttack",
}  # fmt: skip


def rung_name(threat: str) -> str:
    """A threat model's display name: ``bpda_eot`` -> ``BPDA+EOT``, ``adaptive_surrogate`` -> ``adaptive
    (surrogate)``; a rung not in :data:`RUNG_NAMES` (a plugin's) keeps its recorded name."""
    if threat.endswith(SURROGATE_SUFFIX) and threat != SURROGATE_SUFFIX:
        return f"{rung_name(threat.removesuffix(SURROGATE_SUFFIX))} (surrogate)"
    return RUNG_NAMES.get(threat, threat)


def attack_name(attack: str, params: str = "") -> str:
    """An attack's display name: ``pgd`` -> ``PGD``; AutoAttack with its version, ``AutoAttack (rand)`` (the
    version the recorded ``params`` name, rand when they name none: the one the headline protocol runs)."""
    name = ATTACK_NAMES.get(attack, attack)
    if attack == "autoattack":
        return f"{name} ({split_params(params).get('version', 'rand')})"
    return name
