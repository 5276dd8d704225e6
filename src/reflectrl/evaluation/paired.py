"""Paired comparison of two agents that played the same episodes (an RL run against its SFT start).

Two Wilson intervals of 100 episodes each overlap unless the rates differ by
about 25 points; comparing seed by seed is far more precise, because most
seeds are won (or lost) by both agents and say nothing about the difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reflectrl.evaluation.stats import bootstrap_mean_interval, mcnemar_exact


class UnpairedEpisodes(ValueError):
    """The two evaluations did not play the same episodes."""


@dataclass(frozen=True)
class PairedComparison:
    """`after` against `before` over the same episodes."""

    episodes: int
    """Episodes both agents played."""
    success_before: float
    """Success rate of the first agent."""
    success_after: float
    """Success rate of the second agent."""
    won: int
    """Episodes the second agent won and the first lost."""
    lost: int
    """Episodes the first agent won and the second lost."""
    mcnemar_p: float
    """Two-sided exact McNemar p-value of won against lost."""
    return_difference: float
    """Mean return of the second agent minus the first's, per episode."""
    return_ci_low: float
    """Lower end of the 95% bootstrap interval of `return_difference`."""
    return_ci_high: float
    """Upper end of that interval."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(episode: Mapping[str, Any]) -> tuple:
    return (episode["seed"], episode.get("level"))


def compare_paired(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], *, resamples: int = 10_000, seed: int = 0
) -> PairedComparison:
    """Compare two lists of evaluated episodes (`success`, `return`, `seed`, `level` each) seed by seed."""
    first = {_key(e): e for e in before}
    second = {_key(e): e for e in after}
    if not first or set(first) != set(second) or len(first) != len(before) or len(second) != len(after):
        raise UnpairedEpisodes("the two evaluations did not play the same seeds and levels once each")
    keys = [_key(e) for e in before]
    won = sum(bool(second[k]["success"]) and not bool(first[k]["success"]) for k in keys)
    lost = sum(bool(first[k]["success"]) and not bool(second[k]["success"]) for k in keys)
    differences = [float(second[k]["return"]) - float(first[k]["return"]) for k in keys]
    low, high = bootstrap_mean_interval(differences, resamples=resamples, seed=seed)
    return PairedComparison(
        episodes=len(keys),
        success_before=sum(bool(first[k]["success"]) for k in keys) / len(keys),
        success_after=sum(bool(second[k]["success"]) for k in keys) / len(keys),
        won=won,
        lost=lost,
        mcnemar_p=mcnemar_exact(lost, won),
        return_difference=sum(differences) / len(differences),
        return_ci_low=low,
        return_ci_high=high,
    )
