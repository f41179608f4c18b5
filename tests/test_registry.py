import pytest

from purebench.attacks import ATTACKS
from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.defenses import DEFENSES
from purebench.errors import PurebenchError
from purebench.eval.threats import THREATS
from purebench.registry import Registry


def test_unknown_name_lists_choices_and_close_match():
    with pytest.raises(PurebenchError) as err:
        DEFENSES.get("gausian_blur")
    message = str(err.value)
    assert "Did you mean 'gaussian_blur'" in message
    for name in ("none", "gaussian_blur", "median_blur"):
        assert name in message


def test_duplicate_registration_is_refused():
    registry: Registry[int] = Registry("thing")
    registry.register("a")(lambda name: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda name: 2)
    assert registry.build("a") == 1
    assert registry.list() == ["a"]


def test_builtin_registries_are_populated():
    assert {"cifar10", "cifar100", "imagenet", "imagenette", "synthetic"} <= set(DATASETS.list())
    assert {"resnet20", "resnet56", "resnet18", "resnet50", "wrn28_10", "timm:", "torchvision:"} <= set(
        CLASSIFIERS.list()
    )
    assert {
        "autoattack",
        "fgsm",
        "pgd",
        "pgdl2",
        "cw",
        "deepfool",
        "mifgsm",
        "difgsm",
        "apgd",
        "square",
        "eotpgd",
    } <= set(ATTACKS.list())
    assert "oblivious" in THREATS.list()


def test_prefixed_names_resolve_to_their_family():
    assert CLASSIFIERS.get("timm:resnet18") is CLASSIFIERS.get("timm:")


def test_timm_classifier_builds_offline():
    """The timm family without a network (pretrained=false), on the oldest timm pyproject.toml admits too
    (1.0.9, the one robustbench pins): list_models, create_model, pretrained_cfg, feature_info, get_classifier."""
    import torch

    classifier = CLASSIFIERS.build("timm:resnet18", num_classes=10, pretrained=False)
    logits, captured = classifier.features(torch.rand(2, 3, 32, 32), classifier.stages[-1:], embedding=True)
    assert logits.shape == (2, 10) and captured["embedding"].shape == (2, 512)
    assert classifier.stages[0] == "act1" and classifier.head == "fc"  # timm's feature_info, not the fallback
    with pytest.raises(PurebenchError, match="timm has no model"):
        CLASSIFIERS.build("timm:no_such_network", pretrained=False)


def test_plugins_register_through_entry_points(tmp_path, monkeypatch):
    """The entry-point path without building a package (tests/test_plugin_package.py builds one)."""
    import purebench.registry as registry_module

    (tmp_path / "pb_plugin_example.py").write_text(
        "from purebench.defenses import DEFENSES, Defense\n"
        "class Flip(Defense):\n"
        "    def purify(self, x):\n"
        "        return x.flip(-1)\n"
        "@DEFENSES.register('flip_example')\n"
        "def flip(name, classifier):\n"
        "    return Flip()\n"
    )
    dist = tmp_path / "pb_plugin_example-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pb-plugin-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[purebench.plugins]\nflip = pb_plugin_example\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_plugins_loaded", False)
    assert "flip_example" in DEFENSES.list()
    assert type(DEFENSES.build("flip_example", classifier=None)).__name__ == "Flip"
