"""``python -m purebench.train.export SRC DST``: a training checkpoint made small enough to commit.

Keeps what evaluation and provenance need (the purifier's weights, ``purifier_config``, the
resolved training config and its hash, command, commit, data and history) and drops the
optimiser and discriminator states (about two thirds of the file). Writes DST atomically and
records it in ``manifest.json`` beside it (a DiffPure score network becomes a diffusers folder,
which ``defense.model`` loads): file, bytes, sha256, command, commit, data, the checkpoint
it continued (``init``), minutes of this stage's training, epochs and the last validation, so every
committed purifier says how it was made.

DST is the path written, never a folder to write into (unlike ``cp FILE DIR``): an existing plain
folder, the training checkpoint itself (under any spelling or link), the manifest and anything that
is not an earlier export of the same defense are refused, and nothing the command did not write is
ever removed. New files and folders get the modes the umask gives (diffusers writes its weights 0600).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from purebench.classifiers.checkpoints import sha256_of
from purebench.defenses.checkpoint_config import stored_state, trained_for
from purebench.errors import PurebenchError
from purebench.eval.atomic_files import atomic_path
from purebench.train import checkpoint

KEPT = (
    "purifier", "purifier_config", "config", "config_hash", "commit", "command", "data", "training_data", "history",
    "epoch",
)  # fmt: skip
MAX_BYTES = 5 * 1024 * 1024  # the project's limit for a committed checkpoint
MANIFEST = "manifest.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"  # the file a diffusers folder's UNet2DModel is saved in


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _as_umask_allows(path: Path) -> None:
    """Give ``path`` (and all under it) the modes the umask gives a file or folder: diffusers writes its weights
    0600 and mkdtemp makes folders 0700, which would leave a shared checkpoint unreadable to the group."""
    mask = _umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """``atomic_path``, a new file taking its mode from the umask (``atomic_path`` gives it 0644 whatever the
    umask); a replaced file keeps its own mode."""
    new = not path.exists()
    with atomic_path(path) as tmp:
        if new:
            _as_umask_allows(tmp)
        yield tmp


def _export_kind(path: Path) -> str | None:
    """The defense whose export ``path`` is (a slim checkpoint file, or a diffusers folder with purebench.json);
    None for anything else (a training checkpoint, a plain folder, a foreign file), which export never replaces."""
    state = stored_state(path)
    if state is None:
        return None
    # a folder: with its weights; a file: without optimiser or discriminator states (those are training's)
    recognised = (path / WEIGHTS).is_file() if path.is_dir() else "purifier" in state and set(state) <= set(KEPT)
    return trained_for(state) if recognised else None


def _check_target(source: Path, target: Path, kind: str | None) -> None:
    """Refuse a target whose replacement would destroy what this command did not write."""
    if target.resolve() == source.resolve():
        raise PurebenchError(
            f"'{target}' is the training checkpoint itself ('{source}'): exporting onto it would drop the optimiser "
            "state, so its training could no longer resume. Name the export another path, e.g. "
            f"results/checkpoints/NAME{'' if kind == 'diffpure' else '.pt'}."
        )
    if target.name == MANIFEST:
        raise PurebenchError(
            f"'{target}' is named {MANIFEST}, the file in which export records what it wrote: name the export "
            "another path."
        )
    if not (target.exists() or target.is_symlink()):
        return
    found = _export_kind(target)
    if found is not None and found == kind:
        return  # an earlier export of the same defense: replaced
    if target.is_dir():
        example = target / f"{source.stem}{'' if kind == 'diffpure' else '.pt'}"
        raise PurebenchError(
            f"'{target}' is an existing folder{f' holding a defense={found} export' if found else ''}, and export "
            f"writes the path it is given, not into a folder as cp would: name the export itself, e.g. '{example}'. "
            "Nothing was written."
        )
    raise PurebenchError(
        f"'{target}' exists and is not an export of defense={kind}"
        f"{f' (it is one of defense={found})' if found else ''}; export replaces only an earlier export of the same "
        "defense. Move it away or name another path. Nothing was written."
    )


def _data_from_config(config: dict[str, Any]) -> list[str]:
    """What a checkpoint written before purebench stored its data sources trained on, from its config."""
    dataset, train = config.get("dataset", {}), config.get("train", {})
    described = [f"{dataset.get('name')}:{dataset.get('split')} under {dataset.get('root')}"]
    return described + [f"{e['name']}:{e.get('split', 'train')} (extra images)" for e in train.get("extra_images", [])]


def _within_limit(target: Path, size: int) -> int:
    if size > MAX_BYTES:
        raise PurebenchError(
            f"'{target}' would be {size / 2**20:.1f} MB, over the 5 MB limit: train a smaller purifier."
        )
    return size


def _export_diffusers_folder(state: dict[str, Any], target: Path) -> tuple[int, str]:
    """A DiffPure score network as a diffusers folder (what ``defense.model`` loads): the UNet2DModel,
    the DDPM scheduler config and ``purebench.json`` with the provenance. Returns the folder's bytes and
    the SHA-256 of its weights file. Written into a new temporary folder beside ``target`` and renamed
    into place only when complete."""
    from diffusers import DDPMScheduler

    from purebench.train.diffpure import build_unet

    unet = build_unet(state["purifier_config"]["unet"])
    unet.load_state_dict(state["purifier"])
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        unet.save_pretrained(staging)
        DDPMScheduler().save_pretrained(staging)
        provenance = {k: state[k] for k in KEPT if k in state and k != "purifier"}
        (staging / "purebench.json").write_text(json.dumps(provenance, indent=1, default=str) + "\n")
        size = _within_limit(target, sum(f.stat().st_size for f in staging.iterdir()))
        _as_umask_allows(staging)
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # only ever this command's folder (gone once swapped in)
    return size, sha256_of(target / WEIGHTS)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an earlier export there (checked by ``_check_target``) is moved into a
    new temporary folder first and deleted only once the new one is in place (put back if that fails)."""
    if not (target.exists() or target.is_symlink()):
        staging.rename(target)
        return
    holder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    try:
        target.rename(holder / target.name)
        try:
            staging.rename(target)
        except OSError:
            (holder / target.name).rename(target)
            raise
    finally:
        shutil.rmtree(holder)


def export(source: Path, target: Path) -> dict[str, Any]:
    """Write the slim checkpoint and its manifest entry; returns the entry."""
    state = checkpoint.load(source)
    missing = [k for k in ("purifier", "purifier_config", "history") if k not in state]
    if missing:
        raise PurebenchError(f"'{source}' is not a purebench training checkpoint (no {', '.join(missing)}).")
    kind = trained_for(state)
    _check_target(source, target, kind)
    if kind == "diffpure":
        size, digest = _export_diffusers_folder(state, target)
    else:
        with _atomic(target) as tmp:  # an oversized export never replaces the file already shipped
            torch.save({k: state[k] for k in KEPT if k in state}, tmp)
            size = _within_limit(target, tmp.stat().st_size)
        digest = sha256_of(target)
    history, train = state["history"], state.get("config", {}).get("train", {})
    entry = {
        "file": target.name, "bytes": size, "sha256": digest, "command": state.get("command", ""),
        "commit": state.get("commit", ""), "data": state.get("data") or _data_from_config(state.get("config", {})),
        "stage": train.get("stage"),  # what the leaderboard calls the file
        "init": train.get("init"),  # the stage this one continued (its own entry)
        "minutes": round(sum(h.get("seconds", 0.0) for h in history) / 60, 1), "epochs": len(history),
        "last_epoch": history[-1] if history else {},
    }  # fmt: skip
    manifest_path = target.parent / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    manifest = [e for e in manifest if e["file"] != target.name] + [entry]
    with _atomic(manifest_path) as tmp:
        tmp.write_text(json.dumps(sorted(manifest, key=lambda e: e["file"]), indent=1) + "\n")
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="training checkpoint (train.out)")
    parser.add_argument(
        "target", type=Path, help="slim checkpoint to write, e.g. results/checkpoints/NAME.pt (DiffPure: a folder)"
    )
    args = parser.parse_args(argv)
    try:
        entry = export(args.source, args.target)
    except PurebenchError as exc:
        print(f"purebench.train.export: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
