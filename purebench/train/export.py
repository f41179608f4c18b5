"""``python -m purebench.train.export SRC DST``: a training checkpoint made small enough to commit.

Keeps what evaluation and provenance need (the purifier's weights, ``purifier_config``, the
resolved training config and its hash, command, commit, data and history) and drops the
optimiser and discriminator states (about two thirds of the file). Writes DST atomically and
records it in ``manifest.json`` beside it (a DiffPure score network becomes a diffusers folder,
which ``defense.model`` loads): file, bytes, sha256, command, commit, data, the checkpoint
it continued (``init``), minutes of this stage's training, epochs and the last validation, so every
committed purifier says how it was made.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from purebench.classifiers.checkpoints import sha256_of
from purebench.errors import PurebenchError
from purebench.eval.atomic_files import atomic_path
from purebench.train import checkpoint

KEPT = ("purifier", "purifier_config", "config", "config_hash", "commit", "command", "data", "history", "epoch")
MAX_BYTES = 5 * 1024 * 1024  # the project's limit for a committed checkpoint


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
    the SHA-256 of its weights file. Written beside ``target`` and swapped in only when complete."""
    from diffusers import DDPMScheduler

    from purebench.train.diffpure import build_unet

    unet = build_unet(state["purifier_config"]["unet"])
    unet.load_state_dict(state["purifier"])
    staging = target.parent / f".{target.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    unet.save_pretrained(staging)
    DDPMScheduler().save_pretrained(staging)
    provenance = {k: state[k] for k in KEPT if k in state and k != "purifier"}
    (staging / "purebench.json").write_text(json.dumps(provenance, indent=1, default=str) + "\n")
    try:
        size = _within_limit(target, sum(f.stat().st_size for f in staging.iterdir()))
    except PurebenchError:
        shutil.rmtree(staging)
        raise
    retired = target.parent / f".{target.name}.old"
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
    return size, sha256_of(target / "diffusion_pytorch_model.safetensors")


def export(source: Path, target: Path) -> dict[str, Any]:
    """Write the slim checkpoint and its manifest entry; returns the entry."""
    state = checkpoint.load(source)
    missing = [k for k in ("purifier", "purifier_config", "history") if k not in state]
    if missing:
        raise PurebenchError(f"'{source}' is not a purebench training checkpoint (no {', '.join(missing)}).")
    if state.get("config", {}).get("defense", {}).get("name") == "diffpure":
        size, digest = _export_diffusers_folder(state, target)
    else:
        with atomic_path(target) as tmp:  # an oversized export never replaces the file already shipped
            torch.save({k: state[k] for k in KEPT if k in state}, tmp)
            size = _within_limit(target, tmp.stat().st_size)
        digest = sha256_of(target)
    history = state["history"]
    entry = {
        "file": target.name, "bytes": size, "sha256": digest, "command": state.get("command", ""),
        "commit": state.get("commit", ""), "data": state.get("data") or _data_from_config(state.get("config", {})),
        "init": state.get("config", {}).get("train", {}).get("init"),  # the stage this one continued (its own entry)
        "minutes": round(sum(h.get("seconds", 0.0) for h in history) / 60, 1), "epochs": len(history),
        "last_epoch": history[-1] if history else {},
    }  # fmt: skip
    manifest_path = target.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    manifest = [e for e in manifest if e["file"] != target.name] + [entry]
    with atomic_path(manifest_path) as tmp:
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
