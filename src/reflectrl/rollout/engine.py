"""The rollout interface the trainers use.

Trainers only ever call `RolloutEngine.collect(requests, ...)`; the local
engine (`reflectrl.rollout.local`) steps environments in lockstep in this
process, and a distributed backend (Ray actors, remote servers) can implement
the same method without any trainer change.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
import torch

from reflectrl.players.agents import Agent
from reflectrl.rollout.episode import Batch, EpisodeRequest


class RolloutEngine(abc.ABC):
    """Plays batches of episodes with the current policy."""

    agent: Agent
    """The agent that plays (the trainer reads its `shuffle_labels` and `label_after` to save them with the policy)."""

    @abc.abstractmethod
    def collect(
        self,
        requests: Sequence[EpisodeRequest],
        greedy: bool = False,
        generator: torch.Generator | None = None,
        label_seed: int | None = None,
    ) -> Batch:
        """Play one episode per request and return them in request order.

        `greedy` takes the most likely label instead of sampling; `generator`
        drives sampling; `label_seed` reseeds the agent's own random
        choices (`Agent.reseed`) so that a batch is reproducible on its own (exact resume).
        """

    def close(self) -> None:
        """Release environments and workers (nothing to do for the local engine)."""
