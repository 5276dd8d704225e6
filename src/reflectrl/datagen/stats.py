"""Summary numbers of a generated dataset (written to stats.json)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any


def _spread(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": min(values), "mean": round(sum(values) / len(values), 1), "max": max(values)}


def token_lengths(rows: list[dict[str, Any]], encode_batch: Callable[[list[str]], list[list[int]]]) -> dict[str, Any]:
    """Prompt and completion lengths in tokens."""
    if not rows:
        return {"prompt": _spread([]), "completion": _spread([])}
    prompts = encode_batch([r["prompt"] for r in rows])
    completions = encode_batch([r["completion"] for r in rows])
    return {"prompt": _spread([len(p) for p in prompts]), "completion": _spread([len(c) for c in completions])}


def dataset_stats(
    files: dict[str, list[dict[str, Any]]],
    episodes: list[dict[str, Any]],
    encode_batch: Callable[[list[str]], list[list[int]]],
) -> dict[str, Any]:
    """Counts, token lengths, label/action distributions and the negative share."""
    reflector = files.get("reflector", [])
    plain = files.get("plain", [])
    negatives = sum(1 for r in plain if r["negative"])
    summaries = [e["summary"] for e in episodes]
    return {
        "rows": {name: len(rows) for name, rows in files.items()},
        "states": len(plain),
        "negative_rows": negatives,
        "negative_share": round(negatives / len(plain), 4) if plain else 0.0,
        "after_mistake_rows": sum(1 for r in plain if r["after_mistake"]),
        "empty_reflections": len(plain) - len(reflector),
        "label_distribution": dict(sorted(Counter(r["completion"] for r in plain).items())),
        "action_distribution": dict(Counter(r["oracle_action"] for r in plain).most_common()),
        "menu_size": _spread([len(r["labels"]) for r in plain]),
        "token_lengths": {name: token_lengths(rows, encode_batch) for name, rows in files.items()},
        "expert": {
            "episodes": len(summaries),
            "success_rate": round(sum(s["success"] for s in summaries) / len(summaries), 4) if summaries else 0.0,
            "mean_steps": round(sum(s["steps"] for s in summaries) / len(summaries), 2) if summaries else 0.0,
            "random_actions": sum(s["random_actions"] for s in summaries),
            "decoy_actions": sum(s.get("decoy_actions", 0) for s in summaries),  # journals written before decoys lack it
            "negatives_made": sum(s["negatives"] for s in summaries),
        },
    }
