"""Confidence intervals for success rates."""

from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial rate (well-behaved at 0% and 100%, unlike the normal one)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs tested against a fair coin.

    Two agents that played the same seeds differ only on the seeds one won and
    the other lost; the exact binomial form is right for the few such seeds an
    evaluation has (the chi-square form is not). Written out because a
    binomial tail is four lines and scipy would be a dependency for them.
    """
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_mean_interval(values: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of `values` (seeded: the same values give the same interval)."""
    import numpy as np

    if not values:
        return (float("nan"), float("nan"))
    data = np.asarray(values, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    means = np.sort(data[picks].mean(axis=1))
    return (float(means[int(0.025 * resamples)]), float(means[int(0.975 * resamples) - 1]))
