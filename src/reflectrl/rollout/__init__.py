"""Rollouts: play batches of episodes with an agent and record what training needs."""

from reflectrl.rollout.engine import Agent, RolloutEngine
from reflectrl.rollout.episode import Batch, Episode, EpisodeRequest, Step
from reflectrl.rollout.local import LocalRolloutEngine
from reflectrl.rollout.timing import TimedReflector

__all__ = ["Agent", "Batch", "Episode", "EpisodeRequest", "LocalRolloutEngine", "RolloutEngine", "Step", "TimedReflector"]
