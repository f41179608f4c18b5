"""Safe checkpoint loading.

A leaderboard tool loads other people's files, so checkpoints are read with
``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused rather than
executed. Wrapping conventions of common trainers (``state_dict``/``model`` keys, DataParallel's
``module.`` prefix) are unwrapped here so architectures stay free of loading logic.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from purebench.errors import PurebenchError

# Where common trainers keep the weights: plain conventions, purebench's own training checkpoints
# ("purifier") and DeepFill v2 ports ("G", the generator).
_WRAPPER_KEYS = ("state_dict", "model", "net", "model_state_dict", "purifier", "G")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, streamed (checkpoints may be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_load(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load`` of tensors and plain containers only: a file that carries pickled code or
    objects is refused before anything in it runs, with a message that says how to re-save it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        raise PurebenchError(
            f"Refusing to load {what} '{path}': it carries pickled code or objects"
            f"{f' ({found.group(1)})' if found else ''}, which purebench never executes (it loads weights only). "
            "If you trust the file, re-save its tensors as a plain dict, e.g. torch.save(model.state_dict(), path), "
            "and point the config at that."
        ) from exc
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise PurebenchError(
            f"Cannot read {what} '{path}' ({type(exc).__name__}: {exc}). The file is corrupt or not a torch "
            "checkpoint: re-create or re-download it."
        ) from exc


def read_state_dict(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` safely, verifying its hash when one is known."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PurebenchError(
            f"Checkpoint not found: '{path}'. Point the config at an existing file "
            "(e.g. classifier.checkpoint=/path/to/weights.pt) or set PUREBENCH_DATA to the folder that holds 'weights/'."
        )
    if expected_sha256:
        actual = sha256_of(path)
        if not actual.startswith(expected_sha256):
            raise PurebenchError(
                f"Checkpoint '{path}' has SHA-256 {actual[:16]}…, expected {expected_sha256[:16]}…: "
                "the file is corrupt or a different model. Re-download it or point the config at the right file."
            )
    obj = safe_load(path)
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PurebenchError(f"Checkpoint '{path}' does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(
    model: nn.Module,
    path: str | Path,
    expected_sha256: str | None = None,
    hint: str = "Choose the classifier that the checkpoint was trained as.",
    prefix: str = "",
) -> None:
    """Load ``path`` into ``model`` strictly; a mismatch says which keys differ. When some keys start with
    ``prefix``, only those are loaded, prefix removed: files that keep the model beside other networks
    (e.g. ``generator.*`` beside ``res.*``) are read without re-saving."""
    state = read_state_dict(path, expected_sha256)
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise PurebenchError(
            f"Checkpoint '{path}' does not match the {type(model).__name__} architecture: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}, "
            f"{len(shapes)} shape mismatches {shapes[:3]}. {hint}"
        )
    model.load_state_dict(state, strict=False)


def load_trained_weights(net: nn.Module, name: str, checkpoint: str | None, pretrained: bool) -> None:
    """Weights for an architecture purebench publishes none for (WRN-28-10, CIFAR ResNet-50):
    ``checkpoint`` is required unless the user says ``pretrained=false`` and means random weights.
    Random init used to run silently and gave the DiffPure recipes 0 % clean accuracy."""
    if checkpoint:
        load_weights(net, checkpoint)
    elif pretrained:
        raise PurebenchError(
            f"classifier '{name}' has no weights: purebench ships none for this architecture. Pass "
            f"classifier.checkpoint=PATH (e.g. RobustBench's Standard WRN-28-10 for wrn28_10, or your own trained "
            "weights), or classifier.pretrained=false to evaluate a randomly initialised network on purpose."
        )
