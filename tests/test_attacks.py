import pytest
import torch

from purebench.attacks import ATTACKS, check_budget
from purebench.attacks.base import perturbation_norm, project
from purebench.errors import PurebenchError


def test_pgd_breaks_undefended_resnet20_within_budget(resnet20_batch):
    model, x, y = resnet20_batch
    eps = 8 / 255
    attack = ATTACKS.build("pgd", norm="Linf", eps=eps, seed=0, alpha=2 / 255, steps=10, random_start=True)
    x_adv = attack(model, x, y)
    assert perturbation_norm(x_adv - x, "Linf").max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == y).float().mean() < 0.05


def test_unbounded_attack_is_projected_to_budget(resnet20_batch):
    model, x, y = resnet20_batch
    attack = ATTACKS.build("deepfool", norm="L2", eps=0.1, seed=0, steps=5, overshoot=0.02)
    x_adv = attack(model, x[:8], y[:8])
    assert perturbation_norm(x_adv - x[:8], "L2").max() <= 0.1 + 1e-5


@pytest.mark.parametrize("eps", [0.0, -0.1, 1.5])
def test_bad_eps_is_rejected(eps):
    with pytest.raises(PurebenchError, match="outside"):
        ATTACKS.build("pgd", norm="Linf", eps=eps, seed=0)


def test_unknown_attack_parameter_lists_accepted_ones():
    with pytest.raises(PurebenchError, match=r"accepts: .*alpha"):
        ATTACKS.build("pgd", norm="Linf", eps=0.03, seed=0, stepz=3)


def test_unsupported_norm_is_rejected():
    with pytest.raises(PurebenchError, match="supports norm Linf"):
        ATTACKS.build("fgsm", norm="L2", eps=0.5, seed=0)


def test_budget_violations_are_errors():
    x = torch.full((2, 3, 4, 4), 0.5)
    with pytest.raises(PurebenchError, match="exceeded its budget"):
        check_budget(x + 0.1, x, "Linf", 0.05, "test")
    with pytest.raises(PurebenchError, match="outside"):
        check_budget(x + 0.6, x, "Linf", 1.0, "test")
    with pytest.raises(PurebenchError, match="shape"):
        check_budget(x[:1], x, "Linf", 0.05, "test")
    projected = project(x + torch.randn_like(x), x, "L2", 0.3)
    check_budget(projected, x, "L2", 0.3, "test")


def test_autoattack_step_size_checkpoints_follow_the_configured_iterations():
    attack = ATTACKS.build("autoattack", norm="Linf", eps=8 / 255, seed=0, version="standard", n_iter=10, verbose=False)
    aa = attack.build(torch.nn.Linear(2, 2), torch.device("cpu"))
    for apgd in (aa.apgd, aa.apgd_targeted):  # APGD checkpoints at 0.22 N, period -0.03 N, floor 0.06 N
        assert (apgd.n_iter, apgd.n_iter_2, apgd.size_decr, apgd.n_iter_min) == (10, 2, 1, 1)


def test_autoattack_rand_breaks_the_undefended_classifier(resnet20_batch):
    model, x, y = resnet20_batch
    attack = ATTACKS.build("autoattack", norm="Linf", eps=8 / 255, seed=0, version="rand", n_iter=5, verbose=False)
    x_adv = attack(model, x[:16], y[:16])
    assert perturbation_norm(x_adv - x[:16], "Linf").max() <= 8 / 255 + 1e-6
    info = attack.describe()
    assert info["attack_components"] == "apgd-ce+apgd-dlr" and info["attack_eot_iter"] == 1
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == y[:16]).float().mean() < 0.2


def test_autoattack_version_presets_win_unless_a_key_is_set():
    def built(**overrides):
        attack = ATTACKS.build("autoattack", norm="Linf", eps=8 / 255, seed=0, verbose=False, **overrides)
        return attack, attack.build(torch.nn.Identity(), torch.device("cpu"))

    plus, aa = built(version="plus")
    assert (aa.apgd.n_restarts, aa.fab.n_restarts, aa.apgd.n_iter) == (5, 5, 100)  # AutoAttack's plus preset
    info = plus.describe()
    assert info["attack_restarts"] == 5 and "restarts=5,fab_restarts=5" in info["attack_params"]
    _, aa = built(version="plus", restarts=2)
    assert (aa.apgd.n_restarts, aa.fab.n_restarts) == (2, 5)  # the key the user set wins, only that one
    rand, aa = built(version="rand")
    assert (aa.apgd.eot_iter, aa.apgd.n_restarts) == (20, 1) and rand.describe()["attack_eot_iter"] == 20
    standard, _ = built(version="standard")
    assert "restarts=1" in standard.describe()["attack_params"] and standard.describe()["attack_eot_iter"] == 1
    with pytest.raises(PurebenchError, match=r"attack\.restarts must be null"):
        built(version="plus", restarts=0)


class _Counting(torch.nn.Module):
    """A linear classifier on flattened images that counts its calls, optionally with input noise."""

    def __init__(self, noisy: bool) -> None:
        super().__init__()
        self.linear, self.noisy, self.calls = torch.nn.Linear(3 * 4 * 4, 10), noisy, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear((x + 0.1 * torch.randn_like(x) if self.noisy else x).flatten(1))


@pytest.mark.parametrize(("noisy", "draws"), [(False, 1), (True, 20)])
def test_autoattack_rand_eot_runs_every_draw_only_for_a_random_model(noisy, draws):
    torch.manual_seed(0)
    model, x = _Counting(noisy), torch.rand(4, 3, 4, 4)
    y = model.linear(x.flatten(1)).argmax(1)  # correctly classified without noise: APGD attacks them all
    attack = ATTACKS.build("autoattack", norm="Linf", eps=8 / 255, seed=0, version="rand", n_iter=3, verbose=False)
    attack(model, x, y)
    info = attack.describe()
    assert info["attack_eot_iter"] == draws and model.calls >= 3 * draws
    assert ("deterministic model" in info["attack_params"]) == (not noisy)
