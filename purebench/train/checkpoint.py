"""Training checkpoints: written atomically with their config, resumable, refused when they do not match.

A checkpoint is a plain dict readable with ``torch.load(weights_only=True)``: the purifier's
state dict under ``purifier`` (so ``defense.checkpoint=PATH`` loads it directly), the
discriminator and optimiser states, the finished epoch, the validation history, the resolved
config with its hash and the images trained on (``training_data``). Re-running the same command continues from the last finished epoch; a
different config pointed at the same file is an error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Callable
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


def resume_state(
    path: Path, config: dict[str, Any], resume_view: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None for a fresh run; a checkpoint whose stored config differs from
    ``config`` in ``resume_view`` is refused, naming the keys that differ. Compared through the stored config,
    not its stored hash, so a checkpoint written before a key left the view (``Trainer.evaluation_keys``) still
    resumes."""
    if not path.exists():
        return None
    state = load(path)
    stored = state.get("config")
    if not isinstance(stored, dict):
        differing = ["the checkpoint stores no config"]
    else:
        differing = _differences(resume_view(config), resume_view(stored))
    if differing:
        raise PurebenchError(
            f"train.out='{path}' holds a checkpoint of a different training config: {', '.join(differing[:8])}"
            f"{' ...' if len(differing) > 8 else ''}. Run with the checkpoint's values to resume it, pick another "
            "train.out, or delete the file to start over."
        )
    return state


def _differences(config: dict[str, Any], stored: dict[str, Any], prefix: str = "") -> list[str]:
    """``key=this run's value (checkpoint: its value)`` for every leaf where the two configs differ."""
    out = []
    for key in sorted(set(config) | set(stored), key=str):
        mine, theirs = config.get(key, "<absent>"), stored.get(key, "<absent>")
        if isinstance(mine, dict) and isinstance(theirs, dict):
            out += _differences(mine, theirs, f"{prefix}{key}.")
        elif mine != theirs:
            out.append(f"{prefix}{key}={mine} (checkpoint: {theirs})")
    return out
