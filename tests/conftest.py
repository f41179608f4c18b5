"""Shared fixtures: the real data root and a Hydra config composer.

Tests that need the real CIFAR data and weights skip with a reason when no data root is found;
with PUREBENCH_REQUIRE_DATA=1 (set by .ci/run) that skip becomes a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from purebench.classifiers import CLASSIFIERS, Classifier
from purebench.config_paths import CONF_DIR
from purebench.data import DATASETS
from purebench.defenses import DEFENSES, Defense

REPO = Path(__file__).resolve().parent.parent


def _data_root() -> Path | None:
    candidates = [os.environ.get("PUREBENCH_DATA"), str(REPO.parent / "shared" / "data")]
    for c in candidates:
        if c and (Path(c) / "cifar10-subsets").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        message = "real CIFAR data not found (set PUREBENCH_DATA to the folder of shared/data)"
        if os.environ.get("PUREBENCH_REQUIRE_DATA") == "1":
            pytest.fail(message + "; PUREBENCH_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(message)
    os.environ["PUREBENCH_DATA"] = str(root)
    return root


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the real config tree with overrides; results go to a temporary folder."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=[f"results_dir={tmp_path / 'results'}", *overrides])

    return _compose


@pytest.fixture(scope="session")
def resnet20_batch(data_root: Path) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    """The pretrained resnet20 and the first 64 real CIFAR-10 test images with labels."""
    x, y = DATASETS.build("cifar10", root=str(data_root)).load(range(64))
    return CLASSIFIERS.build("resnet20"), x, y


def zeropur_from_config(classifier: Classifier, **overrides: object) -> Defense:
    """ZeroPur with the shipped defaults of conf/defense/zeropur.yaml, plus overrides (``name`` included)."""
    params = {**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "defense" / "zeropur.yaml")), **overrides}
    return DEFENSES.build(params.pop("name"), classifier=classifier, **params)


@pytest.fixture
def zeropur() -> Callable[..., Defense]:
    return zeropur_from_config
