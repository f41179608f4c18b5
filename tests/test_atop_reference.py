"""purebench's AToP against the authors' code (glin2022/atop), run by tests/reference/make_atop_reference.py:
the RT2 (logged notebook) and RT1 generator inputs for the same 256-px images, mask and noise, the two
DeepFill stages of their generator module with purebench's weights on the same inputs, and one fine-tuning
step (losses and generator gradient) of the logged and the cleaned notebook."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from purebench.defenses.atop.deepfill import DeepFillGenerator
from purebench.defenses.atop.transforms import RandomTransform, TransformDraws, resize

REFERENCE = Path(__file__).parent / "reference" / "atop_reference.npz"
TOLERANCE = 1e-5  # float32; measured max |difference|: 0 for the generator inputs, 3.6e-7 for DeepFill
RESIZE_TOLERANCE = 1 / 255 + 1e-6  # their Resize(256) runs on uint8 PIL images, rounded to k/255 (measured: 1/255)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def maker() -> ModuleType:
    """The reference script (shared helpers: the seeded DeepFill weights and inputs; it imports no authors' code)."""
    spec = importlib.util.spec_from_file_location("make_atop_reference", REFERENCE.with_name("make_atop_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _at_256(crop: np.ndarray, top: int, left: int) -> torch.Tensor:
    """A 256-px batch holding ``crop`` at (top, left) and zeros elsewhere (the transform is per pixel)."""
    full = torch.zeros(*crop.shape[:2], 256, 256)
    full[..., top : top + crop.shape[-2], left : left + crop.shape[-1]] = torch.from_numpy(crop)
    return full


@pytest.mark.parametrize("kind", ["rt2", "rt1"])
def test_generator_input_equals_the_notebooks(reference, kind):
    """Their mask (one 8x8 block draw) and noise injected into purebench's transform at the 256-px work size."""
    top, left = (int(v) for v in reference[f"{kind}/crop"])
    crop = (..., slice(top, top + 64), slice(left, left + 64))
    hidden = torch.from_numpy(reference[f"{kind}/blocks"]).flatten() == 1
    n = len(reference[f"{kind}/image"])
    noise = _at_256(reference["rt2/noise"], top, left) if kind == "rt2" else None
    draws = TransformDraws(torch.where(hidden, 0, -1).repeat(n, 1), noise)
    transform = RandomTransform(kind, 0.25, 8, 0.25, 4, work_size=256)
    # the RT2 (logged) notebook builds x from the clean image and adv_x from x'; the RT1 notebook both from x'
    sources = {"x": "image" if kind == "rt2" else "adv", "adv_x": "adv"}
    for theirs, image in sources.items():
        [(x_t, m)] = transform.apply(_at_256(reference[f"{kind}/{image}"], top, left), draws)
        x_in, _ = DeepFillGenerator.generator_input(x_t, m)
        difference = (x_in[crop] - torch.from_numpy(reference[f"{kind}/{theirs}"])).abs().max().item()
        assert difference <= TOLERANCE, (kind, theirs, difference)


def test_resize_to_the_work_size_matches_their_pipeline_up_to_uint8_rounding(reference):
    """purebench resizes float tensors bilinearly; their Resize(256) does the same on uint8 PIL images."""
    top, left = (int(v) for v in reference["rt2/crop"])
    ours = resize(torch.from_numpy(reference["images32"]).float() / 255, 256)[..., top : top + 64, left : left + 64]
    assert (ours - torch.from_numpy(reference["rt2/image"])).abs().max().item() <= RESIZE_TOLERANCE


def test_deepfill_stages_equal_their_generator(reference, maker):
    """Coarse and refined outputs of their model/networks.py Generator with purebench's weights (cnum 8, 64 px,
    a different mask per image); purebench returns [0, 1], their generator [-1, 1]."""
    generator = maker.seeded_deepfill()
    x_t, m = maker.deepfill_inputs(reference["images32"], reference["deepfill/blocks"])
    with torch.no_grad():
        stages = generator.stages(x_t, m)
    for name, ours in zip(("coarse", "refined"), stages, strict=True):
        theirs = (torch.from_numpy(reference[f"deepfill/{name}"]) + 1) / 2
        assert theirs.std() > 0.05  # the weights carry signal through every layer
        assert (ours - theirs).abs().max().item() <= TOLERANCE, name


def test_reference_records_the_snapshot():
    with np.load(REFERENCE) as data:
        assert len(str(data["commit"])) == 40 and all(":" in entry for entry in data["sources_sha256"])


@pytest.mark.parametrize("objective", ["logged", "eq9"])
def test_a_fine_tuning_step_equals_the_notebooks(reference, maker, data_root, tmp_path, objective):
    """Third epoch, the notebook each train.objective follows (logged: L1 of a clean pass g(t(x)), CE of g(t(x'))
    with the same mask and noise; eq9, cifar-miss-gau-adv.ipynb: both from x'): L1 on both stages, CE, and the
    gradient of their G loss (their GAN term is computed on a detached output: no gradient)."""
    from hydra import compose, initialize_config_dir

    from purebench.config_paths import CONF_DIR
    from purebench.train.atop import AToPTrainer

    overrides = [
        "defense=atop", f"defense.deepfill.cnum={maker.CNUM}", f"train.discriminator_cnum={maker.CNUM}",
        "train.n_train=8", "train.stage=finetune", "train.init=unused", f"train.out={tmp_path / 's.pt'}",
        f"train.objective={objective}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        trainer = AToPTrainer(compose("train", overrides=overrides))
    theirs = {k.split("/")[-1]: v for k, v in reference.items() if k.startswith(f"step/{objective}/")}
    trainer.purifier.load_state_dict(maker.seeded_deepfill().state_dict())
    trainer.classifier = maker.stand_in_head()
    x = resize(torch.from_numpy(reference["images32"]).float() / 255, 256)
    trainer.adversary = lambda classifier, images, labels: maker.adversarial(x)
    torch.manual_seed(maker.SEED)
    noise = torch.normal(0, 1, x.shape)  # their draw, regenerated: the stored corner says it is the same
    assert torch.equal(noise[..., :8, :8], torch.from_numpy(theirs["noise_crop"]))
    hidden = torch.from_numpy(theirs["blocks"]).flatten() == 1
    trainer.transform.draw = lambda images: TransformDraws(torch.where(hidden, 0, -1).repeat(len(images), 1), noise)
    losses = trainer.step((x, torch.arange(len(x))), epoch=2)
    assert losses["rec"] == pytest.approx(float(theirs["ae_loss"]), rel=1e-5)
    assert losses["ce"] == pytest.approx(float(theirs["cls_loss"]), rel=1e-5)
    grad_sq = [float((p.grad**2).sum()) for _, p in sorted(trainer.purifier.named_parameters())]
    assert grad_sq == pytest.approx(theirs["grad_sq"].tolist(), rel=1e-4)  # measured: 1.4e-6 logged, 1.6e-5 eq9
