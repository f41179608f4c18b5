"""A trained purifier's checkpoint carries the config keys that define it.

Training writes ``purifier_config`` (transform, sizes, widths, ...) into every checkpoint. Before
a defense is built from ``defense.checkpoint`` (evaluation) or ``train.init`` (fine-tuning), those
keys are settled here: a key the user did not set takes the checkpoint's value, a key the user
set to the checkpoint's value is fine, and a key set to anything else is refused, so
``defense=atop defense.checkpoint=PATH`` needs no other key and can never run a purifier with
the wrong transform or width. Settling happens before the config is hashed, so result rows and
run files record the values actually used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from purebench.cli import CONF_DIR
from purebench.errors import PurebenchError

log = logging.getLogger(__name__)


def carried_config(checkpoint: str | Path) -> dict[str, Any] | None:
    """The ``purifier_config`` stored in a purebench checkpoint; None for other files (e.g. public weights)."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        return None  # the loader reports the missing file with its own message
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    carried = state.get("purifier_config") if isinstance(state, dict) else None
    return carried if isinstance(carried, dict) else None


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
    """
    carried = carried_config(checkpoint) if checkpoint else None
    if not carried:
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
