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
    with pytest.raises(RuntimeError, match="exceeded its budget"):
        check_budget(x + 0.1, x, "Linf", 0.05, "test")
    with pytest.raises(RuntimeError, match="outside"):
        check_budget(x + 0.6, x, "Linf", 1.0, "test")
    with pytest.raises(RuntimeError, match="shape"):
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
