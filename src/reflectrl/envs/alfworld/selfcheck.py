"""Sanity checks of a game set: the oracle, a random player, and the oracle after random steps.

A usable game set shows the oracle winning every game, a random player
winning rarely, and the oracle still winning after a few random steps (which
needs the planner to re-plan from states off the optimal path, as data
generation with deliberate mistakes does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from reflectrl.envs.alfworld.env import ALFWorldEnv


@dataclass(frozen=True)
class CheckResult:
    """Wins out of games for each player."""

    games: int
    oracle_wins: int
    random_wins: int
    recovery_wins: int
    random_steps: int
    """Random steps taken before the oracle takes over in the recovery check."""
    seconds: float

    def rate(self, wins: int) -> float:
        return wins / self.games if self.games else 0.0


def play_episode(env: ALFWorldEnv, index: int, seed: int, rng: np.random.Generator, random_steps: int | None) -> bool:
    """One episode of game `index`: random moves for `random_steps` steps (None: all), then the oracle."""
    _, info = env.reset(seed=seed, options={"index": index})
    steps = 0
    while True:
        if random_steps is None or steps < random_steps:
            action = int(rng.integers(len(info["actions"])))
        else:
            action = env.oracle_index()
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            return bool(info["success"])


def run_checks(env: ALFWorldEnv, games: int, random_steps: int = 3, seed: int = 0) -> CheckResult:
    """Play the first `games` games of the env's split with each player."""
    start = time.monotonic()
    games = min(games, len(env.games))
    rng = np.random.default_rng(seed)
    oracle = sum(play_episode(env, i, seed + i, rng, 0) for i in range(games))
    random = sum(play_episode(env, i, seed + i, rng, None) for i in range(games))
    recovery = sum(play_episode(env, i, seed + i, rng, random_steps) for i in range(games))
    return CheckResult(games, oracle, random, recovery, random_steps, time.monotonic() - start)
