"""Local rollout engine: the lockstep loop (`reflectrl.rollout.lockstep`) on environments in this process.

Every agent gets the running environments (`act(states, envs=...)`); only a
scripted oracle reads them.
"""

from __future__ import annotations

from typing import Any

from reflectrl.players.agents import Agent
from reflectrl.rollout.environments import LocalEnvironments
from reflectrl.rollout.lockstep import INVALID_ACTION, LockstepEngine

__all__ = ["INVALID_ACTION", "LocalRolloutEngine"]


class LocalRolloutEngine(LockstepEngine):
    """Runs up to `max_concurrent` episodes at once with one agent, environments in this process."""

    def __init__(self, env_name: str, agent: Agent, max_concurrent: int = 16, env_kwargs: dict[str, Any] | None = None):
        super().__init__(LocalEnvironments(env_name, env_kwargs), agent, max_concurrent)
        self.env_name = env_name
        self.env_kwargs = dict(env_kwargs or {})
