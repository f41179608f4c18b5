"""purebench's RIAE against the authors' code (NoWindButRain/IMPure), run by
tests/reference/make_impure_reference.py: their model's weights mapped into purebench's module, fed
the same images, patch division, Gaussian noise, noise steps and position windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import purebench.defenses.impure.riae as riae_module
from purebench.defenses.impure.authors import riae_state_from_authors
from purebench.defenses.impure.riae import RIAE
from purebench.defenses.vit import sincos_position_embedding

REFERENCE = Path(__file__).parent / "reference" / "impure_reference.npz"
TOLERANCE = 1e-5  # float32 through 5 transformer blocks; measured max |difference| about 1e-6
CASES = [
    ("occlusion", "eval"), ("image_noise", "eval"), ("feature_noise", "eval"), ("image_feature_noise", "eval"),
    ("image_feature_noise", "train"),
]  # fmt: skip


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


def _riae(reference: dict[str, np.ndarray]) -> RIAE:
    """The reference's size (make_impure_reference.SIZE) with the authors' weights mapped in, strictly."""
    riae = RIAE(16, 4, 4, 32, 3, 4, 32, 2, 4, out_indices=[0, 1])
    weights = {k[2:]: torch.from_numpy(v) for k, v in reference.items() if k.startswith("w/")}
    riae.load_state_dict(riae_state_from_authors(weights, patch_size=4))
    return riae


def _predict(riae: RIAE, reference: dict[str, np.ndarray], masking: str, mode: str, monkeypatch) -> torch.Tensor:
    """purebench's prediction (normalised units, as their ``pred``) with the draws their code made."""
    case = {k.split("/")[-1]: torch.from_numpy(v) for k, v in reference.items() if k.startswith(f"{masking}/{mode}/")}
    draws = [case[k] for k in ("eps_image", "eps_feature") if k in case]

    def replay(like: torch.Tensor) -> torch.Tensor:
        draw = draws.pop(0)
        assert draw.shape == like.shape
        return draw

    monkeypatch.setattr(riae_module, "randn_like", replay)
    riae.train(mode == "train")
    positions = case["positions"] if mode == "train" else None  # eval: purebench's own centred window
    if mode == "eval":
        assert torch.equal(riae.positions(case["positions"].shape[0], torch.device("cpu")), case["positions"])
    with torch.no_grad():
        out = riae.predict(
            torch.from_numpy(reference["x"]), case["subsets"], masking, case["t_image"], case["t_feature"], positions
        )
    assert not draws  # every draw of their code was used
    return out


def test_the_reference_records_its_source(reference):
    assert len(str(reference["commit"])) == 40 and len(reference["sources_sha256"]) == 3


def test_position_tables_are_the_codes(reference):
    """MAE's get_2d_sincos_pos_embed of the 2g x 2g grid (columns first), class slot zero (head token)."""
    riae = _riae(reference)
    for ours, theirs in (
        (riae.pos_table, reference["pos_embed"]),
        (riae.decoder_pos_table, reference["decoder_pos_embed"]),
    ):
        assert np.abs(theirs[0]).max() == 0
        np.testing.assert_allclose(ours.numpy(), theirs[1:], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("masking", "mode"), CASES)
def test_riae_matches_the_authors_code(reference, masking, mode, monkeypatch):
    theirs = torch.from_numpy(reference[f"{masking}/{mode}/pred"])
    ours = _predict(_riae(reference), reference, masking, mode, monkeypatch)
    difference = float((ours - theirs).abs().max())
    assert difference < TOLERANCE, f"max |purebench - authors| = {difference:.2e} ({masking}, {mode})"
    assert float(theirs.abs().max()) > 0.5  # a real signal, not a vanishing output


def test_the_comparison_detects_the_old_position_table(reference, monkeypatch):
    """The test can fail: purebench's former rows-first layout of the same table is far off."""
    riae = _riae(reference)
    riae.pos_table = sincos_position_embedding(2 * riae.grid, 32)  # rows first
    ours = _predict(riae, reference, "occlusion", "eval", monkeypatch)
    assert float((ours - torch.from_numpy(reference["occlusion/eval/pred"])).abs().max()) > 100 * TOLERANCE
