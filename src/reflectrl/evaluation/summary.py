"""Summaries of evaluated episodes: success with its Wilson interval, return, length, invalid actions, per group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from reflectrl.evaluation.stats import wilson_interval
from reflectrl.rollout.episode import Episode

GROUP_TAGS = ("depth", "kind", "task_type")
"""Episode tags that define groups (identifiers such as task_id would make one group per task)."""


def summarize(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Metrics over `episodes`, with a breakdown by group when there is more than one.

    Group keys are "level=<level>" plus one per `GROUP_TAGS` entry the
    episodes carry (e.g. "depth=2", "task_type=pick_and_place_simple").
    """
    summary = _metrics(episodes)
    by_group: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        for key in group_keys(episode):
            by_group[key].append(episode)
    if len(by_group) > 1:
        summary["groups"] = {key: _metrics(group) for key, group in sorted(by_group.items())}
    return summary


def group_keys(episode: Episode) -> list[str]:
    """The groups an episode counts towards."""
    tags = getattr(episode, "tags", None) or {}
    return [f"level={episode.level}"] + [f"{k}={tags[k]}" for k in GROUP_TAGS if k in tags]


def _metrics(episodes: Sequence[Episode]) -> dict[str, Any]:
    n = len(episodes)
    wins = sum(1 for e in episodes if e.success)
    steps = sum(e.length for e in episodes)
    invalid = sum(1 for e in episodes for s in e.steps if s.invalid)
    low, high = wilson_interval(wins, n)
    return {
        "episodes": n,
        "successes": wins,
        "success": wins / n if n else 0.0,
        "ci_low": low,
        "ci_high": high,
        "mean_return": sum(e.total_return for e in episodes) / n if n else 0.0,
        "mean_steps": steps / n if n else 0.0,
        "invalid_rate": invalid / steps if steps else 0.0,
    }
