"""Where a number came from: the code version, the git commit and a hash of what decided it.

The code version is a hash of the code itself, not of git's state: the package's source files and
package data (:data:`SOURCE_SUFFIXES`) and the Hydra configs (conf/ with the experiments/ recipes),
each named by its path relative to its root. It is therefore the same in a checkout, an editable
install and an installed wheel (which carries the configs as ``purebench/conf/``), it does not move
when results, outputs or any other file beside the code change (the committed
``results/leaderboard.csv`` made every row of a checkout ``-dirty`` with a new diff hash), and it
does not collapse to ``unknown`` outside git, where shards of different code would look alike. Rows
keep the git commit too, for people to find the code in history (:func:`git_commit`).

A row's config hash (:func:`evaluation_hash`) covers what decides its numbers and nothing that only
says where the inputs and outputs are: the data path is replaced by the digest of the evaluated
images and labels, a classifier's checkpoint path by its weights' digest, and output locations,
loggers and verbosity are left out, so the same job hashes the same on every machine and resume
files and caches carry over between users. Settings that change numerics (amp, compile,
channels_last, batch_size) are hashed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import purebench
from purebench.config_paths import CONF_DIR

PACKAGE_DIR = Path(purebench.__file__).resolve().parent  # the running package, wherever it is installed

# Keys that change where or how fast a run goes, not what it computes.
NOT_HASHED = ("results_dir", "device", "threads", "shard", "figures", "logger", "skip_finished")
# Keys of a config group that locate an input or set what a run prints, not what it computes; the
# inputs they locate are hashed by content instead (the evaluated images, the classifier's weights).
NOT_DECISIVE = {
    "dataset": ("root", "download"),
    "classifier": ("checkpoint", "model_dir", "download"),
    "attack": ("verbose",),
}
# The package's files that decide what it computes: its source and the package data it reads
# (pyproject's package-data); bytecode caches and editor files beside them do not count.
SOURCE_SUFFIXES = (".py", ".j2")
CONFIG_SUFFIXES = (".yaml",)
VERSION_DIGITS = 16
_SOURCE_HASH = re.compile(rf"[0-9a-f]{{{VERSION_DIGITS}}}")


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 (16 hex digits) of a resolved config without its run-only top-level keys (a cache key, a
    training config)."""
    relevant = {k: v for k, v in config.items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluation_hash(config: dict[str, Any], images: Mapping[int, str], classifier_weights: str) -> str:
    """A row's ``config_hash``: :func:`config_hash` of the evaluation config without the keys of
    :data:`NOT_DECISIVE`, plus the digests of what those keys located: ``images`` (each batch's
    :meth:`~purebench.data.EvalDataset.digest` by its first index, the whole subset even for a shard)
    and the classifier's weights."""
    decisive = {
        group: {k: v for k, v in values.items() if k not in NOT_DECISIVE.get(group, ())}
        if isinstance(values, dict)
        else values
        for group, values in config.items()
    }
    return config_hash({**decisive, "_images": dict(images), "_classifier_weights": classifier_weights})


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def git_commit() -> str:
    """The commit of the purebench checkout, for people to find the code in history: suffixed
    ``-dirty`` when the package or the configs differ from it (results and outputs do not count);
    ``unknown`` outside a checkout of purebench (an installed copy, even one inside another
    repository). Which code computed a number is :func:`code_version`, which needs no git."""
    repo = PACKAGE_DIR.parent
    code = {PACKAGE_DIR, CONF_DIR.resolve(), (CONF_DIR / "experiment").resolve()}
    try:
        if Path(_git(repo, "rev-parse", "--show-toplevel")).resolve() != repo:
            return "unknown"
        commit = _git(repo, "rev-parse", "--short=12", "HEAD")
        paths = sorted(str(p.relative_to(repo)) for p in code if p.is_relative_to(repo))
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _files(root: Path, suffixes: tuple[str, ...], skip: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """(path relative to ``root``, path) of the files under ``root`` with ``suffixes``, through
    links (conf/experiment is a link to experiments/), leaving out the folders ``skip`` and bytecode caches."""
    found = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and Path(folder, d).resolve() not in skip)
        found += [
            (Path(folder, n).relative_to(root).as_posix(), Path(folder, n)) for n in names if n.endswith(suffixes)
        ]
    return sorted(found)


def source_digest(package_dir: Path, conf_dir: Path, leave_out: Sequence[str] = ()) -> str:
    """SHA-256 (16 hex digits) of the package's source files and package data under ``package_dir``
    and the configs under ``conf_dir``, each with its path relative to its root, so a checkout and an
    installed copy of the same code agree (the wheel's ``purebench/conf/`` is hashed as the configs,
    not as package files); ``leave_out`` names subpackages not to hash."""
    h = hashlib.sha256()
    skipped = [conf_dir.resolve(), *((package_dir / name).resolve() for name in leave_out)]
    roots = [("package", package_dir, SOURCE_SUFFIXES, skipped), ("conf", conf_dir, CONFIG_SUFFIXES, [])]
    for label, root, suffixes, skip in roots:
        for name, path in _files(root, suffixes, skip):
            h.update(f"{label}/{name}\0".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:VERSION_DIGITS]


@functools.cache
def code_version() -> str:
    """:func:`source_digest` of the running package and its configs: the ``version`` of every row and
    part of every resume and cache key. Computed once per process (it is read for every run of a
    sweep), as the code a process runs is the code it imported."""
    return source_digest(PACKAGE_DIR, CONF_DIR)


# Subpackages that never change a figure: the tables, plots and pages drawn from finished rows.
NOT_COMPUTING = ("leaderboard",)


@functools.cache
def compute_version() -> str:
    """:func:`code_version` without :data:`NOT_COMPUTING`: the key of resume files and of cached adversarial
    examples, so that editing how the leaderboard draws a table does not recompute an attack."""
    return source_digest(PACKAGE_DIR, CONF_DIR, NOT_COMPUTING)


def row_code_version(row: Mapping[str, str]) -> str:
    """The code a leaderboard row's numbers came from: its ``version``, the :func:`code_version`
    source hash; rows written before that held the package version there (the same for every
    commit), so their ``commit`` stands for their code."""
    version = row.get("version", "")
    return version if _SOURCE_HASH.fullmatch(version) else row.get("commit", "")


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
