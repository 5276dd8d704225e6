"""Scripted reference players as rollout agents, so the evaluation harness plays them like any model.

* `OracleAgent`: the environment's optimal next action (an upper bound). It
  reads the running environments, which `LocalRolloutEngine` hands to every
  agent's `act` (`envs=`).
* `RandomAgent`: a uniformly random admissible action (chance level), drawn
  from its `rng`, which the engine reseeds per batch (`label_seed`), so a
  batch is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from reflectrl.players.agents import SeededAgent, StepRecord
from reflectrl.protocol import State


def _record(action: int, log_prob: float, entropy: float) -> StepRecord:
    return StepRecord(
        prompt="",
        prompt_ids=[],
        label_ids=[],
        action=action,
        log_prob=log_prob,
        entropy=entropy,
        value=None,
        reflection=None,
    )


class OracleAgent(SeededAgent):
    """Plays `env.oracle_index()` of every running environment."""

    deterministic = True

    def act(self, states: Sequence[State], *, envs=(), greedy: bool = True, generator=None):
        if len(envs) != len(states):
            raise ValueError(f"the oracle needs one environment per state, got {len(envs)} for {len(states)}")
        actions = [int(env.oracle_index()) for env in envs]
        return actions, [_record(a, 0.0, 0.0) for a in actions]


class RandomAgent(SeededAgent):
    """Picks a uniformly random admissible action (whether or not `greedy` is asked for)."""

    def act(self, states: Sequence[State], *, greedy: bool = False, generator=None, envs=()):
        actions, records = [], []
        for state in states:
            n = len(state.actions)
            if n == 0:
                raise ValueError("a state has no actions (the episode is over); act only on running episodes")
            action = int(self.rng.integers(n))
            actions.append(action)
            records.append(_record(action, -math.log(n), math.log(n)))
        return actions, records
