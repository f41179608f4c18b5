"""Training checkpoints: written atomically with their config, resumable, refused when they do not match.

A checkpoint is a plain dict readable with ``torch.load(weights_only=True)``: the purifier's
state dict under ``purifier`` (so ``defense.checkpoint=PATH`` loads it directly), the
discriminator and optimiser states, the finished epoch, the validation history, the resolved
config with its hash and the images trained on (``training_data``). Re-running the same command continues from the last finished epoch; a
different config pointed at the same file is an error, never a silent overwrite.
"""

from __future__ import annotations

import json
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
    path: Path,
    config: dict[str, Any],
    resume_view: Callable[[dict[str, Any]], dict[str, Any]],
    training_data: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None for a fresh run. Refused, naming what differs: a stored config
    that differs from ``config`` in ``resume_view`` (compared through the stored config, never its stored hash,
    so a checkpoint written before a key left the view, ``Trainer.evaluation_keys``, still resumes), and
    training images that differ from ``training_data`` by identity (dataset, split, indices: the view leaves
    out where the data lie, so a root holding other images must be caught here; the same identities at another
    root are taken to be the same images)."""
    if not path.exists():
        return None
    state = load(path)
    stored = state.get("config")
    if not isinstance(stored, dict) or not all(
        isinstance(stored.get(k), dict) for k in ("train", "dataset", "defense")
    ):
        differing = ["the checkpoint stores no training config"]
    else:
        differing = _differences(resume_view(config), resume_view(stored))
    if "training_data" in state and state["training_data"] != training_data:
        differing.append(
            f"the training images ({_images(training_data)}; checkpoint: {_images(state['training_data'])})"
        )
    if differing:
        more = f" and {len(differing) - 8} more" if len(differing) > 8 else ""
        raise PurebenchError(
            f"train.out='{path}' holds a checkpoint of a different training run: {', '.join(differing[:8])}{more}. "
            "Run with the checkpoint's values (and data) to resume it, pick another train.out, or delete the file "
            "to start over."
        )
    return state


def _yaml(value: Any) -> str:
    """A config value as it is typed on the command line (null, true, [a, b])."""
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def _differences(config: dict[str, Any], stored: dict[str, Any], prefix: str = "") -> list[str]:
    """``key=this run's value (checkpoint: its value)`` for every leaf where the two configs differ."""
    out = []
    for key in sorted(set(config) | set(stored), key=str):
        if key not in stored:
            out.append(f"{prefix}{key}={_yaml(config[key])} (checkpoint: absent)")
        elif key not in config:
            out.append(f"{prefix}{key} absent (checkpoint: {_yaml(stored[key])})")
        elif isinstance(config[key], dict) and isinstance(stored[key], dict):
            out += _differences(config[key], stored[key], f"{prefix}{key}.")
        elif config[key] != stored[key]:
            out.append(f"{prefix}{key}={_yaml(config[key])} (checkpoint: {_yaml(stored[key])})")
    return out


def _images(sources: list[dict[str, Any]]) -> str:
    """``cifar10 train: 1047 images, ...``: training images by identity, in a line."""

    def count(runs: Any) -> int:
        return sum(int(stop) - int(start) for start, stop in runs) if isinstance(runs, list) else 0  # [start, stop)

    return ", ".join(f"{s.get('dataset')} {s.get('split')}: {count(s.get('indices'))} images" for s in sources)
