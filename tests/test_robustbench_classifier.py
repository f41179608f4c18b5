"""``classifier=robustbench`` (issue 24, item 4) through robustbench's own ``load_model``, offline.

The checkpoint robustbench would download for ``Standard`` is replaced by random weights of its own
architecture, saved where ``load_model`` looks (``<model_dir>/cifar10/Linf/Standard.pt``), so the
real loading path runs without a network.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from purebench.classifiers import CLASSIFIERS
from purebench.classifiers.robustbench import WIDE_RESNET
from purebench.errors import PurebenchError
from purebench.eval.runner import evaluate

needs_robustbench = pytest.mark.skipif(
    importlib.util.find_spec("robustbench") is None,
    reason="the optional robustbench package is not installed (pip install --no-deps robustbench==1.1.1 "
    "and the extra's gdown, geotorch, torchdiffeq)",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A model_dir holding a WRN-28-10 of robustbench's own class, with random weights, as Standard."""
    from purebench.classifiers.robustbench import _importable

    with _importable():
        from robustbench.model_zoo.architectures.wide_resnet import WideResNet
    torch.manual_seed(0)
    weights = WideResNet(depth=28, widen_factor=10).state_dict()
    folder = tmp_path_factory.mktemp("robustbench")
    (folder / "cifar10" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": weights}, folder / "cifar10" / "Linf" / "Standard.pt")  # the zoo files' layout
    return folder, weights


@needs_robustbench
def test_standard_loads_through_robustbench_with_its_layers_and_no_normalisation(model_dir):
    folder, weights = model_dir
    before = {name for name in ("autoattack", "pkg_resources") if name in sys.modules}
    model = CLASSIFIERS.build("robustbench:Standard", dataset="cifar10", threat_model="Linf", model_dir=str(folder))
    assert type(model.net).__module__ == "robustbench.model_zoo.architectures.wide_resnet"
    assert all(torch.equal(model.net.state_dict()[k], v) for k, v in weights.items())
    assert (model.stages, model.head, model.num_classes, model.mean) == (*WIDE_RESNET, 10, None)
    x = torch.rand(2, 3, 32, 32)  # robustbench's models take [0, 1] images
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net(x))
    logits, features = model.features(x, model.stages, embedding=True)
    assert features["block3"].shape == (2, 640, 8, 8) and features["embedding"].shape == (2, 640)
    torch.testing.assert_close(model.net.fc(features["embedding"]), logits)
    # the import aliases were for robustbench's import only
    assert {name for name in ("autoattack", "pkg_resources") if name in sys.modules} == before


@needs_robustbench
def test_a_run_names_the_robustbench_classifier(make_cfg, data_root, model_dir):
    folder, _ = model_dir
    overrides = ["classifier=robustbench", f"classifier.model_dir={folder}", "defense=none", "attack=fgsm",
                 "attack.verbose=false", "n_examples=4", "batch_size=4", "figures=0", "threads=1"]  # fmt: skip
    row = evaluate(make_cfg(*overrides))
    assert row["classifier"] == "robustbench:Standard" and row["n_examples"] == 4
    moved = evaluate(make_cfg(*overrides, f"classifier.model_dir={folder}/../{folder.name}"))
    assert moved["config_hash"] == row["config_hash"]  # the weights are the identity, not where they lie


@needs_robustbench
def test_unknown_names_say_what_robustbench_has(model_dir):
    folder, _ = model_dir
    with pytest.raises(PurebenchError, match=r"zoo has no model 'Standrad' \(did you mean Standard\?\)"):
        CLASSIFIERS.build("robustbench:Standrad", model_dir=str(folder))
    with pytest.raises(PurebenchError, match=r"no zoo for classifier\.dataset='mnist'"):
        CLASSIFIERS.build("robustbench:Standard", dataset="mnist", model_dir=str(folder))


def test_without_robustbench_the_error_says_how_to_install_it(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "robustbench" else find_spec(name, *a)
    )
    with pytest.raises(
        PurebenchError, match=r"optional robustbench package, which is not installed: pip install --no-deps"
    ):
        CLASSIFIERS.build("robustbench:Standard")


@needs_robustbench
def test_a_missing_file_offline_says_where_it_belongs(tmp_path, monkeypatch):
    from purebench.classifiers.robustbench import _importable

    with _importable():
        import robustbench.utils

    def offline(gdrive_id: str, path: str) -> None:
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", offline)
    expected = tmp_path / "cifar10" / "Linf" / "Standard.pt"
    with pytest.raises(PurebenchError, match=rf"ConnectionError.*It reads {expected} and downloads it there"):
        CLASSIFIERS.build("robustbench:Standard", model_dir=str(tmp_path))
