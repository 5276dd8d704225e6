"""A small replay buffer of successful episodes, mixed into each update as in the paper.

Only successful episodes are kept (first in, first out, up to `capacity`), so
replay reminds the policy of what worked while successes are still rare.

How replayed data is weighted: its steps were sampled by earlier policies, so
they are off-policy. They do not enter the algorithm's own loss (whose
advantages and PPO ratios assume on-policy data); instead the trainer adds
`replay_weight * losses.replay_loss(...)`, a self-imitation term in which each
replayed step is weighted by its truncated importance ratio min(1, pi/mu),
with mu the behaviour policy's stored log-probability (see
`reflectrl.trainers.losses.replay_loss`). The buffer is cleared at every
curriculum switch, because successes of an easier level teach the wrong
lengths and goals for the next one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from reflectrl.rollout.episode import Episode


class ReplayBuffer:
    """FIFO store of successful episodes (see the module docstring)."""

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f"replay capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self._episodes: deque[Episode] = deque(maxlen=self.capacity or None)

    def __len__(self) -> int:
        return len(self._episodes)

    @property
    def episodes(self) -> list[Episode]:
        return list(self._episodes)

    def add(self, episodes: Iterable[Episode]) -> int:
        """Keep the successful ones among `episodes`; returns how many were added."""
        if self.capacity == 0:
            return 0
        added = 0
        for episode in episodes:
            if episode.success and episode.steps:
                self._episodes.append(episode)
                added += 1
        return added

    def sample(self, count: int, rng: np.random.Generator) -> list[Episode]:
        """Up to `count` distinct episodes drawn uniformly with `rng` (all of them if fewer are stored)."""
        if count <= 0 or not self._episodes:
            return []
        if count >= len(self._episodes):
            return list(self._episodes)
        picks = rng.choice(len(self._episodes), size=count, replace=False)
        return [self._episodes[int(i)] for i in sorted(picks)]

    def clear(self) -> None:
        self._episodes.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "episodes": [e.to_dict() for e in self._episodes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"checkpoint replay capacity {state['capacity']} differs from the configured {self.capacity}")
        self._episodes.clear()
        self._episodes.extend(Episode.from_dict(e) for e in state["episodes"])
