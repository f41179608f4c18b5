"""The end-of-run summary's words: what a rung's RA means and which RA figure to quote."""

from __future__ import annotations

from purebench.eval.threats import LADDER
from purebench.leaderboard.summary import RUNG_MEANING, quoted, rung_meaning


def test_every_rung_of_the_ladder_says_what_its_ra_means():
    assert set(RUNG_MEANING) == set(LADDER)
    assert "upper bound" in rung_meaning("oblivious") and "threat=adaptive" in rung_meaning("bpda")
    assert "still an upper bound: quote the worst over the white-box rungs" in rung_meaning("adaptive")


def test_a_surrogate_rung_says_its_gradients_came_from_a_copy_and_a_plugin_rung_says_nothing():
    # A surrogate rung does not claim exact gradients through the purifier, and says to check it against them.
    meaning = rung_meaning("adaptive_surrogate")
    assert "surrogate of the purifier" in meaning and "looser upper bound than threat=adaptive" in meaning
    assert "through the purifier, EOT" not in meaning and "scored on the real purifier" in meaning
    assert "surrogate of the purifier" in rung_meaning("bpda_eot_surrogate")
    eot = rung_meaning("eot_surrogate")  # a rung without words of its own keeps its meaning, the surrogate named
    assert eot.startswith(rung_meaning("eot")) and "surrogate of the purifier" in eot
    assert rung_meaning("my_plugin_rung") == ""


def test_a_randomized_defense_quotes_the_mean_beside_the_worst_case_a_deterministic_one_its_single_figure():
    assert quoted({"n_eval": 1, "threat_model": "adaptive"}) == "RA (defended)"
    randomized = quoted({"n_eval": 10, "threat_model": "adaptive_surrogate"})
    assert randomized.startswith("RA (defended), the mean over 10 purifications") and "RA worst case" in randomized


def test_below_the_white_box_rungs_the_quote_points_to_an_adaptive_run():
    for rung in ("oblivious", "bpda", "bpda_eot"):
        assert quoted({"n_eval": 1, "threat_model": rung}).endswith(
            "of a threat=adaptive run (worst with bpda_eot), not of this rung"
        )
