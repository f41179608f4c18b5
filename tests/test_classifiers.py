import copy
import shutil

import pytest
import torch
import torch.nn.functional as F

from purebench.classifiers import CLASSIFIERS
from purebench.data import DATASETS
from purebench.errors import PurebenchError


def _accuracy(model, data, n: int) -> float:
    x, y = data.load(range(n))
    with torch.no_grad():
        return (torch.cat([model(x[i : i + 128]).argmax(1) for i in range(0, n, 128)]) == y).float().mean().item()


@pytest.mark.slow
def test_pretrained_resnet20_reaches_known_accuracy(data_root):
    data = DATASETS.build("cifar10", root=str(data_root))
    assert _accuracy(CLASSIFIERS.build("resnet20"), data, 256) >= 0.88


@pytest.mark.slow
def test_pretrained_resnet18_reaches_known_accuracy(data_root):
    data = DATASETS.build("cifar10", root=str(data_root))
    assert _accuracy(CLASSIFIERS.build("resnet18"), data, 256) >= 0.90


def test_features_expose_layers_and_embedding(data_root):
    model = CLASSIFIERS.build("resnet20")
    x = torch.rand(2, 3, 32, 32)
    logits, feats = model.features(x, ["layer2", "layer3"], embedding=True)
    assert feats["layer2"].shape == (2, 32, 16, 16) and feats["layer3"].shape == (2, 64, 8, 8)
    # logits = g(f(x)): the decision layer applied to the embedding.
    torch.testing.assert_close(model.net.linear(feats["embedding"]), logits)
    assert model.stages == ["layer1", "layer2", "layer3"] and "layer3.2.conv2" in model.layer_names()
    with pytest.raises(PurebenchError, match="Unknown layer"):
        model.features(x, ["layer9"])


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(PurebenchError, match="Checkpoint not found"):
        CLASSIFIERS.build("resnet20", checkpoint=str(tmp_path / "missing.th"))


def test_corrupt_checkpoint_is_reported(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(PurebenchError, match="corrupt"):
        CLASSIFIERS.build("resnet20", checkpoint=str(bad))


def test_mismatching_checkpoint_names_the_keys(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(CLASSIFIERS.build("resnet56", pretrained=False).net.state_dict(), path)
    with pytest.raises(PurebenchError, match="does not match"):
        CLASSIFIERS.build("resnet20", checkpoint=str(path))


def test_wrong_hash_is_reported(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet20-12fca82f.th").write_bytes(b"truncated")
    monkeypatch.setenv("PUREBENCH_DATA", str(tmp_path))
    with pytest.raises(PurebenchError, match="SHA-256"):
        CLASSIFIERS.build("resnet20")


def test_checkpoint_round_trip_for_random_init_architectures(tmp_path):
    model = CLASSIFIERS.build("wrn28_10", pretrained=False)
    path = tmp_path / "wrn.pt"
    torch.save(model.net.state_dict(), path)
    again = CLASSIFIERS.build("wrn28_10", checkpoint=str(path))
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model(x), again(x))


def test_channels_last_and_amp_switches_keep_the_results(resnet20_batch):
    from purebench.attacks import ATTACKS

    plain, x, y = resnet20_batch
    fast_layout = CLASSIFIERS.build("resnet20").accelerate(amp=False, channels_last=True)
    autocast = CLASSIFIERS.build("resnet20").accelerate(amp=True, channels_last=False)
    with torch.no_grad():
        reference, layout, mixed = plain(x), fast_layout(x), autocast(x)
    assert torch.allclose(reference, layout, atol=1e-4)  # same numbers, other memory layout
    assert mixed.dtype == torch.float32 and (mixed.argmax(1) == reference.argmax(1)).float().mean() >= 0.97
    attack = ATTACKS.build("pgd", norm="Linf", eps=8 / 255, seed=0, verbose=False, alpha=2 / 255, steps=3)
    x_adv = attack(autocast, x[:16], y[:16])  # gradients flow through autocast
    with torch.no_grad():
        assert (autocast(x_adv).argmax(1) == y[:16]).float().mean() < 0.3


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_compile_switch_keeps_logits_gradients_features_and_weights(resnet20_batch, backend):
    if backend == "inductor" and not shutil.which("cc"):
        pytest.skip("inductor on the CPU needs a C compiler")
    plain, x, y = resnet20_batch
    compiled = CLASSIFIERS.build("resnet20").accelerate(amp=False, channels_last=False, compile_backend=backend)
    assert list(compiled.state_dict()) == list(plain.state_dict())  # checkpoints and weight digests unchanged
    images = x[:16].clone().requires_grad_(True)
    reference = plain(images)
    (reference_grad,) = torch.autograd.grad(F.cross_entropy(reference, y[:16]), images)
    logits = compiled(images)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y[:16]), images)
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)  # the attack sees the same model
    torch.testing.assert_close(grad, reference_grad, atol=1e-5, rtol=1e-3)
    _, feats = compiled.features(x[:4], [compiled.stages[0]], embedding=True)  # hooks still fire (eager path)
    _, reference_feats = plain.features(x[:4], [plain.stages[0]], embedding=True)
    torch.testing.assert_close(feats["embedding"], reference_feats["embedding"])


def test_unknown_compile_backend_lists_the_choices():
    with pytest.raises(PurebenchError, match=r"Unknown torch.compile backend 'bogus'.*inductor"):
        CLASSIFIERS.build("resnet20").accelerate(amp=False, channels_last=False, compile_backend="bogus")


def test_a_copy_of_a_compiled_classifier_runs_its_own_weights(resnet20_batch):
    _, x, _ = resnet20_batch
    compiled = CLASSIFIERS.build("resnet20").accelerate(amp=False, channels_last=False, compile_backend="aot_eager")
    reference = compiled(x[:4])
    twin = copy.deepcopy(compiled)
    for p in twin.parameters():
        p.data.mul_(0.5)
    assert not torch.allclose(twin(x[:4]), reference)  # not the original's compiled graph and weights
    torch.testing.assert_close(compiled(x[:4]), reference)
    plain_again = compiled.accelerate(amp=False, channels_last=False, compile_backend=None)
    assert plain_again._compiled_net() is plain_again.net  # compile=false undoes an earlier compile
