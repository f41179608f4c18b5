"""Which images a trained purifier learnt from, and whether an evaluation runs on them.

A purifier that has seen the evaluated images (e.g. one pretrained with ``train.extra_images``
on CIFAR-100's test split, then evaluated with ``dataset=cifar100``) can rebuild them from memory,
so its accuracy there is no test result. Images are compared by identity, never by path: dataset
name, split and index in the official split (a verified subset's images keep their official
indices, so a checkpoint trained on the subset and an evaluation on the full split agree).

Checkpoints written by ``python -m purebench.train`` record ``training_data``: one entry per
source (``dataset``, ``split``, ``indices`` as ``[start, stop)`` runs), those of the ``train.init``
they continued included, each marked ``via`` that checkpoint. Older checkpoints record only their
training config: its ``dataset`` and ``train.extra_images`` splits count whole, and the
``train.init`` it names is followed (at its recorded path, under its name beside the checkpoint,
or at a path named in the ``init`` note of the manifest.json beside it).

Overlap is a warning in the result row, not a refusal: measuring a purifier on its own training
images (the train/test gap) is a legitimate experiment, a refusal would need an override key in
every run's hashed config, and the warning travels with the number into every leaderboard.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from purebench.defenses.checkpoint_config import stored_state, weights_path

log = logging.getLogger(__name__)

WHOLE = "all"  # an older checkpoint's source: the split is recorded, not which of its images


def index_runs(indices: Iterable[int]) -> list[list[int]]:
    """Indices as sorted ``[start, stop)`` runs: compact in a checkpoint and in JSON (a 90% random part of
    CIFAR-10's 50,000 training images is about 4,500 runs, not 45,000 numbers)."""
    runs: list[list[int]] = []
    for i in sorted({int(i) for i in indices}):
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return runs


def _legacy_init(path: Path, init: str) -> Path | None:
    """The checkpoint an older one continued: at the recorded path, under its name beside ``path``, or at a
    path named in the ``init`` note of the manifest beside ``path`` (e.g. 'a byte-identical copy of ...')."""
    try:
        entries = json.loads((path.parent / "manifest.json").read_text())
    except (OSError, ValueError):  # no manifest, or one this lookup cannot read: the other places still count
        entries = []
    entries = entries if isinstance(entries, list) else []
    notes = [str(e.get("init") or "") for e in entries if isinstance(e, dict) and e.get("file") == path.name]
    named = [init, *(m for note in notes for m in re.findall(r"[\w./-]+\.pt\b", note))]
    for candidate in named:
        for found in (Path(candidate).expanduser(), path.parent / Path(candidate).name):
            if found.is_file() and found.resolve() != path.resolve():
                return found
    return None


def training_sources(path: Path, _seen: frozenset[Path] = frozenset()) -> list[dict[str, Any]]:
    """Every image source the purifier stored at ``path`` (a checkpoint or an exported folder) learnt from,
    including those of the stages it continued; empty for weights purebench did not train."""
    state = stored_state(path)
    if state is None:
        return []
    if "training_data" in state:
        return list(state["training_data"])
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    dataset, train = config.get("dataset") or {}, config.get("train") or {}
    named = [(dataset.get("name"), dataset.get("split")), *((e.get("name"), e.get("split", "train"))
             for e in train.get("extra_images") or [])]  # fmt: skip
    sources = [{"dataset": name, "split": split, "indices": WHOLE} for name, split in named if name]
    if train.get("init"):
        init = _legacy_init(path, str(train["init"]))
        if init is None:
            log.warning(
                "%s continued training from %s, which is not here: the images it learnt from are not checked",
                path, train["init"],
            )  # fmt: skip
        elif init.resolve() not in _seen:
            sources += inherited_sources(init, _seen | {path.resolve()})
    return sources


def inherited_sources(init: Path, _seen: frozenset[Path] = frozenset()) -> list[dict[str, Any]]:
    """The sources of the checkpoint a stage continued, each marked ``via`` the checkpoint that learnt from it."""
    return [{**s, "via": s.get("via") or str(init)} for s in training_sources(init, _seen)]


def training_overlap(defense: DictConfig, dataset: str, split: str | None, indices: Sequence[int]) -> str | None:
    """A warning for the result row when the purifier of ``defense`` learnt from some of the evaluated images
    (``dataset`` ``split`` at ``indices``): how many, which checkpoint, what to do; None when it learnt from none
    of them or records nothing (no checkpoint, public weights, a hub id)."""
    weights = weights_path(defense)
    if not weights:
        return None
    sources = [s for s in training_sources(Path(weights).expanduser())
               if s["dataset"] == dataset and str(s.get("split")) == str(split)]  # fmt: skip
    whole = any(s["indices"] == WHOLE for s in sources)
    seen = {i for s in sources if s["indices"] != WHOLE for start, stop in s["indices"] for i in range(start, stop)}
    trained = len(indices) if whole else sum(int(i) in seen for i in indices)
    if not trained:
        return None
    via = sorted({s["via"] for s in sources if s.get("via")})
    return (
        f"the purifier '{weights}' was trained on {trained} of the {len(indices)} evaluated images ({dataset} {split}"
        + (f", learnt in the stage it continued: {', '.join(via)}" if via else "")
        + ("; its checkpoint records the split, not the images, so all of it counts" if whole else "")
        + "): its accuracy on them is not a test result; evaluate images it was not trained on (another split or "
        "dataset)"
    )
