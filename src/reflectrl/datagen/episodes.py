"""Expert rollouts and negative examples, as lists of `StepSample` (no text generation here).

Every sample records the actions taken since `reset(seed)`. Environments are
deterministic under a seed, so any sample can be rebuilt (and checked) by
replaying those actions; negative examples are made exactly that way: replay
an expert episode up to some step, take a wrong admissible action that does
not end the episode, and the state after it is the example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflectrl.envs.base import TextEnv
from reflectrl.protocol import State
from reflectrl.teachers.base import Assessment
from reflectrl.teachers.explainers import Explainer, oracle_menu_choice

EXPERT = "expert"
NEGATIVE = "negative"


class ReplayError(RuntimeError):
    """Replaying recorded actions did not reproduce the episode (the environment is not deterministic)."""


@dataclass
class StepSample:
    """One state to write rows for."""

    episode: int
    seed: int
    state: State
    best_action: str
    """The menu entry the oracle chooses here (the policy's target)."""
    taken: list[str]
    """Actions from `reset(seed)` to this state."""
    last: Assessment | None
    """Judgement of the action that led here."""
    facts: dict[str, Any]
    source: str
    """`EXPERT` (on the expert's rollout) or `NEGATIVE` (right after a deliberate wrong action)."""

    @property
    def step(self) -> int:
        return len(self.taken)


@dataclass
class EpisodeSummary:
    """What happened in one expert rollout."""

    steps: int = 0
    success: bool = False
    random_actions: int = 0
    decoy_actions: int = 0
    negatives: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def replay(env: TextEnv, seed: int, actions: list[str]) -> dict[str, Any]:
    """Reset with `seed`, take `actions`, return the last info; `ReplayError` if the episode diverges."""
    _, info = env.reset(seed=seed)
    for i, action in enumerate(actions):
        _, _, terminated, truncated, info = env.step(action)
        if info["invalid_action"] or ((terminated or truncated) and i < len(actions) - 1):
            raise ReplayError(f"replaying seed {seed}: action {i} ({action!r}) did not apply as recorded")
    return info


def sample_state(env: TextEnv, info, episode: int, seed: int, taken: list[str], last, explainer: Explainer, source: str) -> StepSample:
    """The state `env` stands in (its last `info`), with the oracle's choice and the facts the teacher writes from."""
    return StepSample(
        episode=episode,
        seed=seed,
        state=State.from_info(info),
        best_action=oracle_menu_choice(env),
        taken=list(taken),
        last=last,
        facts=explainer.facts(env),
        source=source,
    )


def expert_episode(
    env: TextEnv, episode: int, seed: int, rng: np.random.Generator, random_prob: float, explainer: Explainer,
    decoy_prob: float = 0.0,
) -> tuple[list[StepSample], EpisodeSummary]:
    """Roll out the oracle, taking a uniformly random menu action with probability `random_prob`, else the
    environment's decoy (`TextEnv.decoy_action`) with probability `decoy_prob` where it has one."""
    _, info = env.reset(seed=seed)
    samples: list[StepSample] = []
    summary = EpisodeSummary()
    taken: list[str] = []
    last: Assessment | None = None
    while True:
        sample = sample_state(env, info, episode, seed, taken, last, explainer, EXPERT)
        samples.append(sample)
        menu = info["actions"]
        if rng.random() < random_prob:
            action = menu[int(rng.integers(len(menu)))]
            summary.random_actions += 1
        elif decoy_prob > 0 and rng.random() < decoy_prob and (decoy := env.decoy_action(rng)) is not None:
            action = decoy
            summary.decoy_actions += 1
        else:
            action = sample.best_action
        last = explainer.assess(env, action)
        taken.append(action)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    summary.steps = len(taken)
    summary.success = bool(info["success"])
    return samples, summary


def negative_samples(
    env: TextEnv, expert: list[StepSample], count: int, rng: np.random.Generator, explainer: Explainer
) -> list[StepSample]:
    """Up to `count` negatives, each stepping off the expert's path at a different step."""
    made: list[StepSample] = []
    if count <= 0 or not expert:
        return made
    for j in rng.permutation(len(expert)):
        if len(made) == count:
            break
        base = expert[int(j)]
        info = replay(env, base.seed, base.taken)
        # The expert's own (random) move from here is already a sample; do not repeat it.
        followed = expert[int(j) + 1].taken[-1] if int(j) + 1 < len(expert) else None
        wrong = [a for a in info["actions"] if a != followed and explainer.assess(env, a).mistake]
        # Known crashes end the episode: no state to learn from after them.
        wrong = [a for a in wrong if not explainer.assess(env, a).details.get("crash")]
        fresh = True
        for k in rng.permutation(len(wrong)):
            action = wrong[int(k)]
            if not fresh:
                info = replay(env, base.seed, base.taken)
            verdict = explainer.assess(env, action)
            _, _, terminated, truncated, after = env.step(action)
            fresh = False
            if terminated or truncated or after["invalid_action"]:
                continue
            made.append(sample_state(env, after, base.episode, base.seed, base.taken + [action], verdict, explainer, NEGATIVE))
            break
    return made
