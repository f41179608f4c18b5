"""Where a number came from: code version, git commit and a hash of the experiment's config."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import torch

import purebench

# Keys that change where or how fast a run goes, not what it computes.
_NOT_HASHED = ("results_dir", "device", "threads", "shard", "figures", "logger")


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 (16 hex digits) of the experiment-defining part of a resolved config."""
    relevant = {k: v for k, v in config.items() if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit() -> str:
    """The commit of the purebench checkout, suffixed ``-dirty`` with uncommitted changes; ``unknown`` outside git."""
    repo = Path(purebench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def code_version(commit: str) -> str:
    """``commit`` (from :func:`git_commit`), with a hash of the uncommitted diff when the tree is
    dirty (two different dirty states never share resumable work)."""
    if not commit.endswith("-dirty"):
        return commit
    repo = Path(purebench.__file__).resolve().parent.parent
    diff = subprocess.run(["git", "diff", "HEAD"], cwd=repo, capture_output=True, check=False).stdout
    return f"{commit}-{hashlib.sha256(diff).hexdigest()[:8]}"


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights: the cache key follows the weights, not a file name."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
