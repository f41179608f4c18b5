"""Where a number came from: code version, git commit and a hash of the experiment's config."""

from __future__ import annotations

import hashlib
import json
import os
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


WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"  # a diffusers folder's weights (what manifest.json hashes)
CHECKPOINT_KEYS = ("checkpoint", "model")  # defense keys that may name a trained purifier on disk


def file_identity(path: Path) -> str:
    """SHA-256 of a checkpoint file, of a diffusers folder's weights file (as results/checkpoints/
    manifest.json records them), or of any other folder's files with their relative names."""
    from purebench.classifiers.checkpoints import sha256_of

    if path.is_file():
        return sha256_of(path)
    if (path / WEIGHTS_FILE).is_file():
        return sha256_of(path / WEIGHTS_FILE)
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{file.relative_to(path).as_posix()}:{sha256_of(file)}\n".encode())
    return h.hexdigest()


def portable_path(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it (the repository, for runs
    started there), so one checkpoint is one setting on every machine; other paths stay as given."""
    absolute = Path(os.path.normpath(Path(path).expanduser().absolute()))
    cwd = Path.cwd().absolute()
    return absolute.relative_to(cwd).as_posix() if absolute.is_relative_to(cwd) else path


def record_checkpoints(defense: Any) -> dict[str, str]:
    """Rewrite the defense's on-disk checkpoint keys as :func:`portable_path` (in place, before the
    config is hashed) and return ``{key: sha256}`` for each: the row names a checkpoint by a path
    that means the same everywhere plus the digest of its content, so a retrained file at the same
    path is never mistaken for the old one."""
    digests = {}
    for key in CHECKPOINT_KEYS:
        value = defense.get(key)
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            defense[key] = portable_path(value)
            digests[key] = file_identity(Path(value).expanduser())
    return digests


SHA256_SHOWN = 16  # hex digits of a checkpoint's SHA-256 in the row (the run file keeps all 64)


def sha256_params(digests: dict[str, str]) -> dict[str, str]:
    """The row's ``defense_params`` entries for :func:`record_checkpoints`' digests."""
    return {f"{key}_sha256": digest[:SHA256_SHOWN] for key, digest in digests.items()}
