"""Training checkpoints: written atomically with their config, resumable, refused when they do not match.

A checkpoint is a plain dict readable with ``torch.load(weights_only=True)``: the purifier's
state dict under ``purifier`` (so ``defense.checkpoint=PATH`` loads it directly), the
discriminator and optimiser states, the finished epoch, the validation history, the resolved
config with its hash and the images trained on (``training_data``). Re-running the same command continues from the last finished epoch; a
different config pointed at the same file is an error, never a silent overwrite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from purebench.classifiers.checkpoints import safe_load
from purebench.errors import PurebenchError
from purebench.eval.atomic_files import atomic_path


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` so that ``path`` holds the old checkpoint or the new one, never a torn file."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path) -> dict[str, Any]:
    state = safe_load(path, "training checkpoint")
    if not isinstance(state, dict):
        raise PurebenchError(f"Training checkpoint '{path}' does not hold a dict; it was not written by purebench.")
    return state


def resume_state(path: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None for a fresh run; a foreign checkpoint is refused."""
    if not path.exists():
        return None
    state = load(path)
    if state.get("config_hash") != config_hash:
        raise PurebenchError(
            f"train.out='{path}' holds a checkpoint of a different training config (hash {state.get('config_hash')}, "
            f"this run {config_hash}). Pick another train.out, or delete the file to start over."
        )
    return state
