"""The threat-model ladder on real models and data (small n)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from purebench.attacks import ATTACKS
from purebench.defenses import DEFENSES, Defense
from purebench.errors import PurebenchError
from purebench.eval.runner import evaluate
from purebench.eval.threats import THREATS
from purebench.seeding import seed_everything

PGD = ["attack=pgd", "attack.verbose=false"]


def test_blur_survives_the_oblivious_attacker_and_falls_to_the_adaptive_one(make_cfg, data_root):
    common = ["defense=gaussian_blur", *PGD, "n_examples=64", "batch_size=64"]
    oblivious = evaluate(make_cfg(*common, "threat=oblivious"))
    adaptive = evaluate(make_cfg(*common, "threat=adaptive"))
    assert oblivious["ra"] >= 25, oblivious
    assert adaptive["ra"] <= 5, adaptive
    assert oblivious["sa"] == adaptive["sa"]  # same images, same deterministic purifier
    assert adaptive["threat_eot_iter"] == 1 and adaptive["n_eval"] == 1  # deterministic: EOT collapses


def test_bpda_over_no_defense_is_the_plain_attack(resnet20_batch):
    model, x, y = resnet20_batch
    attack = ATTACKS.build("pgd", norm="Linf", eps=8 / 255, seed=0, verbose=False, alpha=2 / 255, steps=5)
    none = DEFENSES.build("none", classifier=model)
    wrapped = THREATS.build("bpda").attacked_model(model, none, randomized=False)
    seed_everything(3)
    plain = attack(model, x[:16], y[:16])
    seed_everything(3)
    through_bpda = attack(wrapped, x[:16], y[:16])
    assert torch.equal(plain, through_bpda)


def _input_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> torch.Tensor:
    grads = []
    for _ in range(repeats):
        z = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(z), y, reduction="sum").backward()
        grads.append(z.grad)
    return torch.stack(grads)


def test_eot_reduces_gradient_variance_on_a_randomized_defense(resnet20_batch):
    model, x, y = resnet20_batch
    noise = DEFENSES.build("gaussian_noise", classifier=model, sigma=0.05)
    threat = THREATS.build("eot", eot_iter=16)
    one_draw = THREATS.build("bpda").attacked_model(model, noise, randomized=True)
    averaged = threat.attacked_model(model, noise, randomized=True)
    torch.manual_seed(0)
    variance_1 = _input_gradients(one_draw, x[:4], y[:4], repeats=6).var(0).mean()
    variance_16 = _input_gradients(averaged, x[:4], y[:4], repeats=6).var(0).mean()
    assert variance_16 < variance_1 / 4, (variance_1, variance_16)
    assert threat.describe(randomized=True)["threat_eot_iter"] == 16
    assert threat.describe(randomized=False)["threat_eot_iter"] == 1


def test_randomized_defense_is_evaluated_repeatedly_and_worst_case_is_below_mean(make_cfg, data_root, tmp_path):
    row = evaluate(
        make_cfg("defense=gaussian_noise", "attack=fgsm", "attack.verbose=false", "n_examples=32", "threat.n_eval=6")
    )
    assert row["n_eval"] == 6 and row["defense_randomized"]
    assert row["ra_worst"] <= row["ra"] <= 100
    record = json.loads((tmp_path / "results" / "runs" / f"{row['run_id']}.json").read_text())
    hits = [e["ra_hits"] for e in record["per_example"]]
    robust = [e["ra_hits"] * e["sa_correct"] for e in record["per_example"]]  # clean-correct examples only (issue 21)
    assert all(0 <= h <= 6 for h in hits)
    assert row["ra_worst"] == pytest.approx(100 * sum(h == 6 for h in robust) / 32, abs=0.01)
    assert row["ra"] == pytest.approx(100 * sum(robust) / 6 / 32, abs=0.01) and row["ra"] <= row["sa"]
    assert row["acc_purified_adv"] == pytest.approx(100 * sum(hits) / 6 / 32, abs=0.01)  # every example


class _SneakyNoise(Defense):
    """Random, but declares itself deterministic."""

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.02 * torch.randn_like(x)).clamp(0, 1)


class _Opaque(Defense):
    differentiable = False

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 255).round() / 255


class _InPlace(Defense):
    """Edits the caller's tensor (the runner reuses x for the attack and for predictions)."""

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(0.5)


DEFENSES.register("test_sneaky_noise")(lambda name, classifier: _SneakyNoise())
DEFENSES.register("test_in_place")(lambda name, classifier: _InPlace())
DEFENSES.register("test_opaque")(lambda name, classifier: _Opaque())


def test_undeclared_randomness_is_detected_flagged_and_treated_as_random(make_cfg, data_root):
    row = evaluate(make_cfg("defense=none", "defense.name=test_sneaky_noise", "attack=fgsm", "n_examples=8"))
    assert row["randomness_detected"] and not row["defense_randomized"]
    assert row["n_eval"] == 10 and "does not declare" in row["warnings"]


def test_a_purifier_that_edits_its_input_in_place_is_refused(make_cfg, data_root):
    with pytest.raises(PurebenchError, match="modified its input in place"):
        evaluate(make_cfg("defense=none", "defense.name=test_in_place", "attack=fgsm", "n_examples=4"))


def test_inference_tensors_pass_the_in_place_check():
    from purebench.eval.checks import checked_purify

    with torch.inference_mode():
        x = torch.rand(2, 3, 8, 8)
    assert checked_purify(DEFENSES.build("gaussian_blur", classifier=None), x, "gaussian_blur").shape == x.shape


def test_threats_that_differentiate_the_purifier_refuse_an_opaque_defense(make_cfg, data_root):
    with pytest.raises(PurebenchError, match="threat=bpda"):
        evaluate(make_cfg("defense=none", "defense.name=test_opaque", "attack=fgsm", "n_examples=4", "threat=eot"))


TINY_ZEROPUR = ["defense=zeropur", "defense.gs_steps=2", "defense.ap_steps=3", "attack=pgd", "attack.steps=2"]
TINY_RUN = ["n_examples=4", "attack.verbose=false", "threat.n_eval=2"]


@pytest.mark.parametrize("threat", ["bpda", "bpda_eot", "eot", "adaptive"])
def test_zeropur_runs_under_every_informed_threat_and_writes_rows(make_cfg, data_root, tmp_path, threat):
    extra = [] if threat == "bpda" else ["threat.eot_iter=2"]
    row = evaluate(make_cfg(*TINY_ZEROPUR, *TINY_RUN, f"threat={threat}", *extra))
    assert row["threat_model"] == threat and row["n_eval"] == 2
    assert row["threat_eot_iter"] == (1 if threat == "bpda" else 2)
    assert Path(tmp_path / "results" / "leaderboard.csv").read_text().count(f",{threat},") == 1


def test_zeropur_adaptive_gradient_is_the_identity_cut_by_its_clamps(resnet20_batch, zeropur):
    model, x, _ = resnet20_batch
    zeropur = zeropur(model, gs_steps=2, ap_steps=2, gs_random_start=False)

    def gradient(backprop_steps: int | None) -> torch.Tensor:
        z = x[:2].clone().requires_grad_(True)
        zeropur.adaptive_purify(z, backprop_steps).sum().backward()
        return z.grad

    straight_through = gradient(0)
    assert torch.equal(straight_through, torch.ones_like(straight_through))
    # Sign steps: through them the exact gradient is the identity, cut where a step clamps a pixel to [0, 1].
    exact = gradient(None)
    assert torch.equal(gradient(4), exact) and (exact == 0).any() and ((exact >= 0) & (exact <= 1)).all()
    last = gradient(1)  # only the last step unrolled: its own cut, straight-through before it
    assert (last >= exact).all() and (last < 1).any()


def test_known_draws_fix_the_defense_to_the_draws_the_evaluation_makes(resnet20_batch):
    from purebench.seeding import attack_draws, per_example

    classifier, x, _ = resnet20_batch
    defense = DEFENSES.build("gaussian_noise", classifier=classifier)
    threat = THREATS.build("known_draws")
    attacked = threat.attacked_model(classifier, defense, randomized=True)
    with attack_draws(0, [5, 6], "purify-adv"):
        first, second = attacked(x[:2]), attacked(x[:2])
        with pytest.raises(PurebenchError, match="query the whole batch"):
            attacked(x[:1])  # an attack that queries a subset (AutoAttack) cannot be given the draws
    with per_example(0, [5, 6], "purify-adv"), torch.no_grad():
        evaluated = classifier(defense.purify(x[:2]))
    assert torch.equal(first, second) and torch.allclose(first, evaluated, atol=1e-5)
    assert threat.describe(randomized=True)["threat_n_eval"] == 1


def test_known_draws_rung_and_majority_vote_in_the_row(make_cfg, data_root, tmp_path):
    common = ["defense=gaussian_noise", "attack=pgd", "attack.steps=3", "attack.verbose=false", "n_examples=16"]
    known = evaluate(make_cfg(*common, "threat=known_draws"))
    assert (known["n_eval"], known["threat_eot_iter"]) == (1, 1) and "without EOT" not in known["warnings"]
    assert known["ra_vote"] == known["ra"] == known["ra_worst"]  # one evaluation: every score agrees
    fresh = evaluate(make_cfg(*common, "threat=adaptive", "threat.eot_iter=2", "threat.n_eval=5"))
    record = json.loads((tmp_path / "results" / "runs" / f"{fresh['run_id']}.json").read_text())
    for e in record["per_example"]:  # the vote's label has the most votes: more than half of 5 wins it
        assert (e["ra_hits"] >= 3) <= bool(e["vote_correct"]) <= (e["ra_hits"] >= 1)
    assert fresh["ra_worst"] <= fresh["ra_vote"] and 0 <= fresh["ra_vote"] <= 100


def _eot_logits_and_gradients(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(11)  # the attack's global state: each forward's draw seeds come from it
    z = x.clone().requires_grad_(True)
    logits = model(z)
    torch.nn.functional.cross_entropy(logits, y, reduction="sum").backward()
    return logits.detach(), z.grad


@pytest.mark.parametrize("threat_name", ["eot", "bpda_eot"])
def test_batched_eot_draws_equal_the_loop(resnet20_batch, threat_name):
    model, x, y = resnet20_batch
    noise = DEFENSES.build("gaussian_noise", classifier=model, sigma=0.05)
    x, y = x[:6], y[:6]
    results = {
        eot_batch: _eot_logits_and_gradients(
            THREATS.build(threat_name, eot_iter=5, eot_batch=eot_batch).attacked_model(model, noise, randomized=True),
            x,
            y,
        )
        for eot_batch in (1, 2, None)  # the loop, uneven chunks, all five draws in one batch
    }
    loop_logits, loop_grad = results[1]
    for logits, grad in (results[2], results[None]):
        torch.testing.assert_close(logits, loop_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, loop_grad, rtol=1e-4, atol=1e-6)
    one_draw = THREATS.build(threat_name, eot_iter=1).attacked_model(model, noise, randomized=True)
    torch.manual_seed(11)
    assert not torch.allclose(one_draw(x), loop_logits, atol=1e-3)  # five different draws were averaged


def test_stacked_draws_give_each_row_its_own_draw():
    from purebench.seeding import draw_generators, randn_like, row_generators

    x = torch.zeros(3, 2, 4, 4)
    torch.manual_seed(5)
    draws = draw_generators(4, batch_size=3)
    torch.manual_seed(5)
    alone = [None] * 4
    for j, gens in enumerate(draw_generators(4, batch_size=3)):
        with row_generators(gens):
            alone[j] = randn_like(x)
    with row_generators([g for draw in draws for g in draw]):
        stacked = randn_like(x.repeat(4, 1, 1, 1))
    assert torch.equal(stacked, torch.cat(alone))
    assert len({float(d[0, 0, 0, 0]) for d in alone}) == 4  # the draws differ from each other


def test_stacked_repeated_evaluations_equal_one_at_a_time(make_cfg, data_root, tmp_path):
    common = ["defense=gaussian_noise", *PGD, "attack.steps=2", "n_examples=16", "threat.n_eval=5"]
    rows = {b: evaluate(make_cfg(*common, f"threat.eot_batch={b}")) for b in ("1", "2", "null")}
    records = {
        b: json.loads((tmp_path / "results" / "runs" / f"{row['run_id']}.json").read_text())["per_example"]
        for b, row in rows.items()
    }
    assert records["1"] == records["2"] == records["null"]
    assert 0 < rows["1"]["ra_worst"] < rows["1"]["ra"]  # the draws differ: some examples survive some of them


def test_draws_per_call_fills_the_pixel_budget_and_obeys_eot_batch():
    from purebench.eval.threats import draws_per_call

    cifar = torch.zeros(128, 3, 32, 32)
    assert draws_per_call(None, 20, cifar) == 2  # 256 CIFAR images per call on CPU
    assert draws_per_call(None, 20, cifar[:8]) == 20  # all draws of a small batch at once
    assert draws_per_call(None, 20, torch.zeros(512, 3, 64, 64)) == 1  # never less than one draw
    assert draws_per_call(None, 20, torch.zeros(128, 3, 32, 32, device="meta")) == 20  # accelerators: 16x
    assert draws_per_call(3, 20, cifar) == 3 and draws_per_call(50, 20, cifar) == 20
    with pytest.raises(PurebenchError, match="eot_batch"):
        THREATS.build("eot", eot_batch=0)


def test_a_surrogate_steers_the_attack_while_the_real_defense_is_evaluated(make_cfg, data_root):
    """threat.surrogate (Lee & Kim 2023): the attacker differentiates a copy built with other settings. A copy
    equal to the defense is the plain adaptive attack; a copy that hardly blurs misleads it, and the
    evaluation still purifies with the real blur (same SA)."""
    common = ["defense=gaussian_blur", *PGD, "attack.steps=5", "n_examples=32", "batch_size=32", "threat=adaptive"]
    real = evaluate(make_cfg(*common))
    same = evaluate(make_cfg(*common, "threat.surrogate={sigma:1.0}"))
    weak = evaluate(make_cfg(*common, "threat.surrogate={sigma:0.3}"))
    assert (same["threat_model"], same["threat_surrogate"]) == ("adaptive_surrogate", "sigma=1.0")
    assert real["threat_model"] == "adaptive" and real["threat_surrogate"] == ""
    assert same["ra"] == real["ra"] and same["sa"] == weak["sa"] == real["sa"]
    assert weak["ra"] >= real["ra"] + 15, (weak["ra"], real["ra"])


@pytest.mark.parametrize("threat", ["oblivious", "known_draws"])
def test_a_surrogate_is_refused_where_the_attacker_does_not_differentiate_a_copy(threat):
    with pytest.raises(PurebenchError, match=r"threat\.surrogate"):
        THREATS.build(threat, surrogate={"steps": 10})
