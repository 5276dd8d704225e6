"""Corridor: a trivially learnable environment for checking the RL machinery.

The agent stands at the start of a straight corridor and must reach the exit
at its far end. Every step offers the same four actions, in a fixed order:

=======================  ==================================================
action                   effect
=======================  ==================================================
``wait``                 nothing happens (a wasted step)
``walk forward``         one cell closer to the exit; the last one exits
``walk back``            one cell back (at the start: bumps into the wall)
``open the side door``   falls through a trapdoor: the episode ends, failed
=======================  ==================================================

Rewards: ``+1`` for reaching the exit, ``+0.1`` for any other step forward,
``-0.1`` for a step back, ``-0.05`` for waiting or bumping into the wall, ``-1``
for the trapdoor. The progress reward makes every step's best choice visible
at once (without it, "wait until the time is up" is a safe local optimum that
a policy gradient can fall into before it ever sees the exit). The horizon
is twice the corridor length, so a uniformly
random policy succeeds only now and then (about 14% at ``short``, 5% at
``medium``, under 1% at ``long``), while "always walk forward" always wins.
A policy that learns this lifts success from about chance to 100% within a few
dozen updates, which is what the RL tests need from a tiny model.

Levels (easiest first): ``short`` (2 cells), ``medium`` (3), ``long`` (5).
"""

from __future__ import annotations

from typing import Any

from reflectrl.envs.base import Outcome, TextEnv

ACTIONS = ("wait", "walk forward", "walk back", "open the side door")
LENGTHS = {"short": 2, "medium": 3, "long": 5}
EXIT_REWARD = 1.0
PROGRESS_REWARD = 0.1
TRAP_REWARD = -1.0
IDLE_REWARD = -0.05


class CorridorEnv(TextEnv):
    """A corridor with distractor actions (see the module docstring)."""

    levels = ("short", "medium", "long")
    default_horizon = 2 * LENGTHS["long"]
    invalid_action_reward = TRAP_REWARD
    action_space_size = len(ACTIONS)

    def __init__(self, level: str | None = None, horizon: int | None = None, **kwargs: Any):
        level = level if level is not None else self.levels[-1]
        self._check_level(level)
        if horizon is None:
            horizon = 2 * LENGTHS[level]
        super().__init__(level=level, horizon=horizon, **kwargs)
        self._position = 0

    @property
    def length(self) -> int:
        """Number of cells to walk through to reach the exit at the current level."""
        return LENGTHS[self.level]

    def _reset(self, options: dict[str, Any]) -> None:
        # The corridor is the same for every seed; the seed still matters to
        # callers that shuffle labels or sample actions from `np_random`.
        self._position = 0

    def start_key(self) -> tuple[str]:
        # Every episode of a level starts in cell 0, and the corridor draws nothing at random.
        return (self.level,)

    def _task(self) -> str:
        return f"Walk to the exit at the end of the corridor ({self.length} cells long)."

    def _observation(self) -> str:
        left = self.length - self._position
        cells = "cell" if left == 1 else "cells"
        return f"You are in cell {self._position} of the corridor; the exit is {left} {cells} ahead."

    def _admissible(self) -> list[str]:
        return list(ACTIONS)

    def _apply(self, action: str) -> Outcome:
        if action == "walk forward":
            self._position += 1
            if self._position >= self.length:
                return Outcome(EXIT_REWARD, terminated=True, success=True, feedback="you reached the exit")
            return Outcome(PROGRESS_REWARD, feedback="you walked one cell forward")
        if action == "walk back":
            if self._position == 0:
                return Outcome(IDLE_REWARD, feedback="you bumped into the wall behind you")
            self._position -= 1
            return Outcome(-PROGRESS_REWARD, feedback="you walked one cell back")
        if action == "open the side door":
            return Outcome(TRAP_REWARD, terminated=True, feedback="you fell through a trapdoor")
        return Outcome(IDLE_REWARD, feedback="you waited")

    def oracle_action(self) -> str:
        return "walk forward"

    def _info_extra(self) -> dict[str, Any]:
        return {"position": self._position, "length": self.length}
