"""95% confidence intervals for the accuracies of a row.

Every SA/RA figure is a proportion of the n evaluated images, so its uncertainty is that of a
binomial proportion: purebench gives the Wilson score interval (Wilson 1927; Newcombe 1998,
method 3, no continuity correction), which keeps its coverage near 95% for the small n and the
proportions near 0 or 100% that robustness tables are full of, where the normal (Wald) interval
collapses to zero width. It covers the sampling of the n test images only: for a randomized
defense's mean RA each image contributes its mean over the ``n_eval`` purifications (0 when its
clean evaluation is wrong), and the interval is computed from that mean as if it were a proportion
of n images (the draws average out within an image; they do not add images). The worst-case and
vote RAs are plain proportions.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95% standard normal quantile

# (figure column, lower bound column, upper bound column): the bounds appended to the leaderboard CSV
BOUNDED = (("sa", "sa_lo", "sa_hi"), ("ra", "ra_lo", "ra_hi"), ("ra_worst", "ra_worst_lo", "ra_worst_hi"),
           ("ra_vote", "ra_vote_lo", "ra_vote_hi"))  # fmt: skip


def wilson(proportion: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (lower, upper) of a proportion in [0, 1] observed on n trials."""
    if n <= 0:
        raise ValueError(f"an interval needs n >= 1 trials, got {n}")
    if not 0 <= proportion <= 1:
        raise ValueError(f"a proportion must be in [0, 1], got {proportion}")
    z2 = z * z
    centre = (proportion + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(proportion * (1 - proportion) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def percent_bounds(percent: float | str, n: int | str) -> tuple[float, float] | None:
    """The 95% bounds (in percent, 2 decimals) of a percentage figure of a row; None when it is empty."""
    if percent in ("", None) or n in ("", None) or int(n) <= 0:
        return None
    low, high = wilson(float(percent) / 100, int(n))
    return round(100 * low, 2), round(100 * high, 2)


def row_bounds(row: dict) -> dict[str, float | str]:
    """The bound columns of a row (empty where its figure is empty); rows written before the columns
    existed get theirs from their own n and figures."""
    bounds: dict[str, float | str] = {}
    for figure, low, high in BOUNDED:
        interval = percent_bounds(row.get(figure, ""), row.get("n_examples", ""))
        bounds[low], bounds[high] = interval if interval else ("", "")
    return bounds
