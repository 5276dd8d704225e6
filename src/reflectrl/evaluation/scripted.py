"""Scripted reference players: the oracle (an upper bound) and uniform random (chance level).

Every environment should show oracle success near 100% and random success
near 0%; the gap is the room a learned agent has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reflectrl.envs import make_env
from reflectrl.envs.base import run_policy
from reflectrl.evaluation.stats import wilson_interval

PLAYERS = ("oracle", "random")


@dataclass(frozen=True)
class ScriptedResult:
    env: str
    level: str
    player: str
    episodes: int
    successes: int
    mean_return: float
    mean_steps: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)


def evaluate_scripted(env_name: str, player: str, episodes: int, level: str | None = None, seed: int = 0, **env_kwargs) -> ScriptedResult:
    """Play `episodes` episodes (seeds seed, seed+1, ...) with a scripted player."""
    if player not in PLAYERS:
        raise ValueError(f"unknown player {player!r}; choose from {', '.join(PLAYERS)}")
    env = make_env(env_name, level=level, **env_kwargs)
    rng = np.random.default_rng(seed)

    def choose(env, info):
        if player == "oracle":
            return env.oracle_index()
        return int(rng.integers(len(info["actions"])))

    runs = [run_policy(env, choose, seed=seed + i) for i in range(episodes)]
    return ScriptedResult(
        env=env_name,
        level=env.level,
        player=player,
        episodes=episodes,
        successes=sum(1 for _, ok, _ in runs if ok),
        mean_return=float(np.mean([r for r, _, _ in runs])) if runs else 0.0,
        mean_steps=float(np.mean([s for _, _, s in runs])) if runs else 0.0,
    )
