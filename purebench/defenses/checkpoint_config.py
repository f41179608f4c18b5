"""A trained purifier's checkpoint carries the config keys that define it.

Training writes ``purifier_config`` (transform, sizes, widths, ...) into every checkpoint. Before
a defense is built from ``defense.checkpoint`` (evaluation) or ``train.init`` (fine-tuning), those
keys are settled here: a key the user did not set takes the checkpoint's value, a key the user
set to the checkpoint's value is fine, and a key set to anything else is refused, so
``defense=atop defense.checkpoint=PATH`` needs no other key and can never run a purifier with
the wrong transform or width. Settling happens before the config is hashed, so result rows and
run files record the values actually used. A checkpoint trained for another defense (its training
config's ``defense.name``) is refused first, naming the defense it belongs to.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from purebench.config_paths import CONF_DIR
from purebench.errors import PurebenchError

log = logging.getLogger(__name__)


def stored_state(checkpoint: str | Path) -> dict[str, Any] | None:
    """What purebench stored with a purifier: a checkpoint file's dict, or the ``purebench.json`` of an exported
    DiffPure folder. None for anything else (a missing path, a hub id, a file that is not a dict): the loaders
    report those with their own messages."""
    path = Path(checkpoint).expanduser()
    try:
        if path.is_dir():
            state = json.loads((path / "purebench.json").read_text())
        elif path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            return None
    except Exception:  # torch and json raise several types for foreign or truncated files
        return None
    return state if isinstance(state, dict) else None


def trained_for(state: dict[str, Any]) -> str | None:
    """The defense a stored purifier was trained for: its training config's ``defense.name``."""
    config = state.get("config")
    defense = config.get("defense") if isinstance(config, dict) else None
    return defense.get("name") if isinstance(defense, dict) else None


def weights_path(defense: DictConfig) -> str | None:
    """The file or folder a defense loads its purifier from: ``defense.checkpoint``, or DiffPure's ``defense.model``
    (the only defense whose ``model`` is a path rather than an architecture block)."""
    for key in ("checkpoint", "model"):
        value = defense.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _refuse_another_defenses(defense: DictConfig, weights: str | Path, state: dict[str, Any]) -> None:
    """A purifier trained for another defense cannot run in this one (its keys are not even this defense's keys):
    say whose it is and what to do, before any key is adopted."""
    owner, name = trained_for(state), str(defense.name)
    foreign = [k for k in state.get("purifier_config") or {} if k not in defense]
    if owner == name or (owner is None and not foreign):
        return
    if owner is None:
        whose = (
            f"a checkpoint of another defense (its purifier keys {', '.join(foreign)} are not keys of defense={name})"
        )
        use = ""
    else:
        whose = f"a checkpoint of defense={owner} (its training config says so)"
        if owner != "diffpure":
            use = f" It runs with defense={owner} defense.checkpoint={weights};"
        elif Path(weights).expanduser().is_dir():
            use = f" It runs with defense=diffpure defense.model={weights};"
        else:
            use = (
                " It runs with defense=diffpure defense.model=FOLDER once exported (python -m "
                f"purebench.train.export {weights} FOLDER);"
            )
    needs = (
        "a diffusers folder (e.g. results/checkpoints/diffpure_small) or a hub id"
        if name == "diffpure"
        else f"a checkpoint trained with python -m purebench.train defense={name}"
    )
    raise PurebenchError(f"'{weights}' is {whose}, not of defense={name}.{use} defense={name} needs {needs}.")


def _shipped_defaults(name: str) -> dict[str, Any]:
    path = CONF_DIR / "defense" / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}


def _command_line_keys() -> set[str] | None:
    """The ``defense.*`` keys set on the Hydra command line (None outside a Hydra run: tests, the compose API)."""
    if not HydraConfig.initialized():
        return None
    keys = set()
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("defense."):
            keys.add(key.removeprefix("defense.").split(".", 1)[0])
    return keys


def settle(defense: DictConfig, checkpoint: str | Path | None) -> list[str]:
    """Set the checkpoint's purifier keys in ``defense`` (in place); returns the keys it changed.

    A key counts as set by the user when it is on the command line (in a Hydra run), else when it
    differs from conf/defense/<name>.yaml. A stored block (e.g. ``unet``) is merged over the shipped
    one, so a key added to the config after the checkpoint was written keeps its default.
    A checkpoint trained for another defense is refused first. ``checkpoint`` None checks the defense's own
    weights (DiffPure's ``defense.model``) for their owner only.
    """
    weights = checkpoint or weights_path(defense)
    state = stored_state(weights) if weights else None
    if state is None:
        return []
    _refuse_another_defenses(defense, weights, state)
    carried = state.get("purifier_config") if checkpoint and Path(checkpoint).expanduser().is_file() else None
    if not isinstance(carried, dict):  # a folder's config.json defines its network: its record is not adopted
        return []
    defaults = _shipped_defaults(str(defense.name))
    explicit = _command_line_keys()
    adopted, conflicts = [], []
    for key, stored in carried.items():
        if isinstance(stored, dict) and isinstance(defaults.get(key), dict):
            stored = {**defaults[key], **stored}
        current = OmegaConf.to_container(defense[key]) if OmegaConf.is_config(defense.get(key)) else defense.get(key)
        if current == stored:
            continue
        user_set = key in explicit if explicit is not None else (key not in defaults or current != defaults[key])
        if user_set:
            conflicts.append(f"defense.{key}={current} (checkpoint: {stored})")
        else:
            defense[key] = stored
            adopted.append(key)
    if conflicts:
        raise PurebenchError(
            f"'{checkpoint}' was trained with different purifier settings: {'; '.join(conflicts)}. Drop these keys "
            "(the checkpoint supplies them) or point at a checkpoint trained with them."
        )
    if adopted:
        log.info("from checkpoint %s: %s", checkpoint, ", ".join(f"{k}={carried[k]}" for k in adopted))
    return adopted
