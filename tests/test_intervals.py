"""Wilson intervals against published values (Newcombe 1998, Table I, method 3)."""

import pytest

from purebench.eval.intervals import percent_bounds, row_bounds, wilson


@pytest.mark.parametrize(
    "k,n,low,high",
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe(k, n, low, high):
    assert wilson(k / n, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_is_symmetric_and_never_degenerate():
    low, high = wilson(0.3, 100)
    assert wilson(0.7, 100) == pytest.approx((1 - high, 1 - low))
    assert wilson(0.0, 128)[1] > 0.02 and wilson(1.0, 128)[0] < 0.98  # unlike the Wald interval at 0% and 100%


def test_row_bounds_are_percent_and_empty_where_the_figure_is():
    bounds = row_bounds({"sa": "40.55", "ra": "0.0", "ra_worst": "", "ra_vote": "50", "n_examples": "128"})
    assert bounds["sa_lo"] < 40.55 < bounds["sa_hi"] and bounds["sa_hi"] - bounds["sa_lo"] == pytest.approx(
        16.9, abs=0.2
    )
    assert bounds["ra_lo"] == 0.0 and bounds["ra_hi"] == pytest.approx(2.91, abs=0.01)
    assert bounds["ra_worst_lo"] == bounds["ra_worst_hi"] == ""
    assert percent_bounds("", 10) is None
    with pytest.raises(ValueError):
        wilson(0.5, 0)
