"""Reflector rows on the states a trained agent visits, labelled by the teacher (DAgger, Ross et al., 2011).

Why this exists: the SFT reflector learns from the teacher's own episodes, but at play time its
mistakes lead the agent into states the teacher seldom visits (on DangerousTaxi: a taxi that
goes up and down beside a wall because the reflector keeps recommending the blocked direct
route, experiments/taxi_seeds_v2), and there it is wrong again. The policy cannot repair this:
it follows its reflection, and RL moves the policy, not the reflector. Playing the SFT agent
(reflector and policy, greedy, exactly as evaluation plays) on train-split episodes and asking
the teacher what it would have written in every state the agent reached gives reflector rows on
those states; a further SFT round of the reflector on them (`SFTConfig.init_adapter`), mixed
with rows of the first round so that it keeps what it knew, is the reflector's correction.

The teacher reads the hidden state here, as in data generation: these rows are training data,
never what a player reads at play time. Each row's prompt is the reflector's prompt for that
state, its completion the teacher's reflection, which judges the move the *agent* made to get
there (not the teacher's), as the reflector must learn to do after its own mistakes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reflectrl.datagen.episodes import StepSample, sample_state
from reflectrl.datagen.rows import build_rows
from reflectrl.envs import make_env
from reflectrl.protocol import LabelSet, clean_reflection
from reflectrl.rollout.episode import Episode
from reflectrl.storage import atomic_write_bytes, atomic_write_json
from reflectrl.teachers.base import ReflectionRequest
from reflectrl.teachers.explainers import explainer_for

VISITED = "visited"
"""The ``source`` of a row on a state the agent visited."""
ROUND_FILE = "reflector.jsonl"
"""The round's training rows: the visited states' rows and the mixed-in rows of the first round."""
VISITED_FILE = "visited.jsonl"
"""The visited states' rows alone."""
STATS_FILE = "stats.json"


@dataclass(frozen=True)
class Visit:
    """A state the agent stood in, and the reflection it read there."""

    sample: StepSample
    reflection: str | None
    """The reflector's text at that step (None for an agent without a reflector)."""


def visited_states(env: str, episodes: Sequence[Episode], env_kwargs: dict[str, Any]) -> list[Visit]:
    """Every state of `episodes` where the agent chose an action, rebuilt by replaying its actions.

    `env_kwargs` are the keywords the episodes were played with (horizon, max_actions, split, ...);
    environments are deterministic under a seed, so the replay reaches the states the agent saw. An
    episode that repeats an earlier one move for move from the same first state (a greedy agent's
    start state drawn by several seeds: evaluation plays it once and copies it) is not replayed
    again: it holds no state the first did not. One environment per level serves every replay.
    """
    explainer = explainer_for(env)
    visits: list[Visit] = []
    games: dict[str, Any] = {}
    seen: set[tuple] = set()
    try:
        for number, episode in enumerate(episodes):
            played = (episode.level, episode.steps[0].state_key if episode.steps else "", tuple(s.action_text for s in episode.steps))
            if played in seen:
                continue
            seen.add(played)
            if episode.level not in games:
                games[episode.level] = make_env(env, level=episode.level, **env_kwargs)
            game = games[episode.level]
            _, info = game.reset(seed=episode.seed, options=dict(episode.options) if episode.options else None)
            taken: list[str] = []
            last = None
            for step in episode.steps:
                if step.action_text is None:  # an invalid answer: no state change to learn from beyond this one
                    break
                visits.append(Visit(sample_state(game, info, number, episode.seed, taken, last, explainer, VISITED), step.reflection))
                last = explainer.assess(game, step.action_text)
                taken.append(step.action_text)
                _, _, terminated, truncated, info = game.step(step.action_text)
                if terminated or truncated:
                    break
    finally:
        for game in games.values():
            game.close()
    return visits


def teacher_rows(
    env: str, visits: Sequence[Visit], teacher, *, level: str, label_set: LabelSet, count=None, budget: int | None = None
) -> list[dict[str, Any]]:
    """Reflector rows of `visits` with `teacher`'s reflections, one per distinct prompt (in first-seen order).

    A looping agent meets one state many times; one row each keeps the round from learning mostly
    the loop. The teacher is deterministic per state, so repeats would carry the same completion.
    Each row also keeps the reflection the agent read (``agent_reflection``) and whether it was the
    teacher's, word for word (``agreed``).
    """
    samples = [visit.sample for visit in visits]
    requests = [ReflectionRequest(env=env, state=s.state, best_action=s.best_action, last=s.last, facts=s.facts) for s in samples]
    reflections = [clean_reflection(text) for text in teacher.reflect(requests)] if requests else []
    rows = build_rows(
        samples, reflections, env=env, level=level, split="train", label_set=label_set, rng=None, count=count, budget=budget,
        roles=("reflector",),
    )["reflector"]
    # build_rows leaves out a state whose teacher reflection is empty: pair the rest by their texts' order.
    kept = [visit for visit, text in zip(visits, reflections) if text.strip()]
    distinct: dict[str, dict[str, Any]] = {}
    for row, visit in zip(rows, kept, strict=True):
        played = visit.reflection.strip() if visit.reflection is not None else None
        distinct.setdefault(row["prompt"], {**row, "agent_reflection": played, "agreed": played == row["completion"].strip()})
    return list(distinct.values())


def mix_rows(visited: list[dict[str, Any]], first_round: list[dict[str, Any]], share: float, seed: int) -> list[dict[str, Any]]:
    """`visited` plus round(`share` x len(visited)) rows drawn without replacement from `first_round` (all of them
    if there are fewer), in that order; the SFT trainer shuffles them."""
    if share < 0:
        raise ValueError("the share of first-round rows must be >= 0")
    wanted = min(len(first_round), round(share * len(visited)))
    picked = np.random.default_rng(seed).choice(len(first_round), wanted, replace=False) if wanted else []
    return list(visited) + [first_round[int(i)] for i in sorted(picked)]


@dataclass(frozen=True)
class VisitStats:
    """What the visited states say about the reflector that led the agent there."""

    episodes: int
    """Episodes played."""
    success: float
    """The agent's success rate on them."""
    states: int
    """States visited (with repeats)."""
    distinct: int
    """Distinct reflector prompts among them."""
    agreed: int
    """Of those, the ones where the agent read the teacher's reflection word for word."""
    rows: int
    """The round's new rows (the distinct ones, or only those without agreement: `DaggerSettings.disagreements_only`)."""
    advice_optimal: float | None
    """Share of visited states where the reflection recommended an optimal action (the evaluation's judge;
    None when the episodes were not judged)."""
    round_rows: int
    """Rows of the round: the new ones and the first round's mixed in."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def advice_share(episodes: Sequence[Episode]) -> float | None:
    """Share of judged steps whose reflection's advice was optimal (None: no judged step)."""
    judged = [s.judged for e in episodes for s in e.steps if s.judged and s.judged.get("recommended_ok") is not None]
    return sum(bool(j["recommended_ok"]) for j in judged) / len(judged) if judged else None


def write_round(folder: Path, visited: list[dict[str, Any]], mixed: list[dict[str, Any]], stats: VisitStats) -> Path:
    """The round's files in `folder` (each written whole or not at all); returns the training rows' file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in ((VISITED_FILE, visited), (ROUND_FILE, mixed)):
        atomic_write_bytes(folder / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    atomic_write_json(folder / STATS_FILE, stats.to_dict())
    return folder / ROUND_FILE
