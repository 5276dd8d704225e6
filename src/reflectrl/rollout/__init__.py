"""Rollouts: play batches of episodes with an agent and record what training needs.

The names below load on first use (PEP 562): a Ray environment actor imports
`reflectrl.rollout.environments` and `reflectrl.rollout.episode` without the
engines, and so without torch.
"""

import importlib

_HOMES = {
    "Agent": "reflectrl.rollout.engine",
    "RolloutEngine": "reflectrl.rollout.engine",
    "Batch": "reflectrl.rollout.episode",
    "Episode": "reflectrl.rollout.episode",
    "EpisodeRequest": "reflectrl.rollout.episode",
    "Step": "reflectrl.rollout.episode",
    "LocalRolloutEngine": "reflectrl.rollout.local",
    "RayRolloutEngine": "reflectrl.rollout.ray_engine",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'reflectrl.rollout' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
