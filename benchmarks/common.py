"""Shared helpers of the benchmark scripts: compose a config, time with warm-up, report medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from purebench.config_paths import CONF_DIR


def config(*overrides: str, name: str = "config") -> DictConfig:
    """The composed config tree (``name="train"``: the training entry point's)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def interleaved_median_seconds(fns: Sequence[Callable[[], object]], repeats: int = 5) -> list[float]:
    """Median wall time of each of ``fns``, timed in turns (A, B, A, B, ...) after one warm-up round,
    so that a slow phase of a shared machine hits every contender alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def median_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``fn`` after one untimed call (cold CPU processes swing up to 3x)."""
    return interleaved_median_seconds([fn], repeats)[0]


def scratch(name: str) -> Path:
    path = Path("/tmp") / "purebench-bench" / name
    path.mkdir(parents=True, exist_ok=True)
    return path
