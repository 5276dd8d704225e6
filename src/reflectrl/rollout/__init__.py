"""Rollouts: play batches of episodes with an agent and record what training needs.

The names below load on first use (PEP 562): a Ray environment actor imports
`reflectrl.rollout.environments` and `reflectrl.rollout.episode` without the
engines, and so without torch.
"""

from reflectrl.lazy_exports import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _HOMES)
