"""The lockstep rollout loop, whatever process the environments live in.

At every step all running episodes are handed to the agent as one batch
(one reflector call and one policy forward pass for the whole batch); then
every running environment steps once. Episodes end independently: a
finished episode frees its slot, which the next request takes at the
following step. The order in which requests start and steps are taken
depends only on the requests and the agent's choices, so a batch is
reproducible given the same seeds, and it is the same batch whether the
environments step in this process (`reflectrl.rollout.local`) or in Ray
actors (`reflectrl.rollout.ray_engine`): only the `EnvironmentHost` differs.

Two additions serve evaluation: a request's `options` reach `env.reset`
(to pick a fixed task of a split), and `on_episode_end` is called with each
finished episode (for a progress bar).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reflectrl.players.agents import Agent, StepRecord
from reflectrl.protocol import State
from reflectrl.rollout.engine import RolloutEngine
from reflectrl.rollout.environments import EnvironmentHost
from reflectrl.rollout.episode import TAG_KEYS, Batch, Episode, EpisodeRequest, Step

INVALID_ACTION = -1
"""Action index recorded (and played) when the agent gave no valid answer."""


@dataclass
class _Slot:
    index: int
    info: dict[str, Any]
    episode: Episode


class LockstepEngine(RolloutEngine):
    """Runs up to `max_concurrent` episodes at once with one agent on a host's environments (see the module docstring)."""

    def __init__(self, host: EnvironmentHost, agent: Agent, max_concurrent: int = 16):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.host = host
        self.agent = agent
        self.max_concurrent = int(max_concurrent)
        self.on_episode_end: Callable[[Episode], None] | None = None
        """Called with every finished episode, in the order they finish."""
        self.judge: Callable[[Any, str | None, str | None], dict[str, Any]] | None = None
        """Called as judge(env, reflection, played entry) before each environment steps, with the live
        environment (local hosts only); its answer is kept in `Step.judged`. Evaluation's diagnostics."""

    def collect(
        self,
        requests: Sequence[EpisodeRequest],
        greedy: bool = False,
        generator: torch.Generator | None = None,
        label_seed: int | None = None,
    ) -> Batch:
        if label_seed is not None:
            # A fresh seed per batch makes each batch reproducible on its own.
            self.agent.reseed(label_seed)
        timings = {"reflect": 0.0, "decide": 0.0, "environment": 0.0}
        pending = deque(enumerate(requests))
        running: list[_Slot] = []
        finished: dict[int, Episode] = {}
        while running or pending:
            start = time.perf_counter()
            starts = []
            while pending and len(running) + len(starts) < self.max_concurrent:
                starts.append(pending.popleft())
            if starts:
                running += [_start(index, request, info) for (index, request), info in zip(starts, self.host.reset(starts))]
            timings["environment"] += time.perf_counter() - start

            states = [State.from_info(slot.info) for slot in running]
            envs = self.host.local_envs([slot.index for slot in running])
            actions, records = self._act(states, envs, greedy, generator, timings)
            judged = self._judge(envs, running, actions, records)

            start = time.perf_counter()
            transitions = self.host.step([(slot.index, action) for slot, action in zip(running, actions)])
            still_running = []
            for slot, action, record, answer, judgement in zip(running, actions, records, transitions, judged):
                key = f"{slot.info['task']}\n{slot.info['observation']}"
                menu = slot.info["actions"]
                info = answer.info
                done = bool(answer.terminated or answer.truncated)
                step = _step(record, action, float(answer.reward), done, key, bool(info.get("invalid_action", False)), menu)
                step.judged = judgement
                slot.episode.steps.append(step)
                slot.info = info
                if done:
                    slot.episode.success = bool(info.get("success", False))
                    slot.episode.truncated = bool(answer.truncated and not answer.terminated)
                    slot.episode.tags = {k: info[k] for k in TAG_KEYS if info.get(k) is not None}
                    finished[slot.index] = slot.episode
                    self.host.finish(slot.index)
                    if self.on_episode_end is not None:
                        self.on_episode_end(slot.episode)
                else:
                    still_running.append(slot)
            running = still_running
            timings["environment"] += time.perf_counter() - start
        return Batch([finished[i] for i in range(len(requests))], timings)

    def close(self) -> None:
        self.host.close()

    def _judge(self, envs, running: list[_Slot], actions: list[int], records: list[StepRecord]) -> list[dict[str, Any] | None]:
        if self.judge is None or len(envs) != len(running):
            return [None] * len(running)
        judged = []
        for env, slot, action, record in zip(envs, running, actions, records):
            menu = slot.info["actions"]
            judged.append(self.judge(env, record.reflection, menu[action] if 0 <= action < len(menu) else None))
        return judged

    def _act(self, states, envs, greedy, generator, timings) -> tuple[list[int], list[StepRecord]]:
        """One agent call; its time is split into reflect (as the agent counts it) and decide."""
        before = self.agent.reflect_seconds
        start = time.perf_counter()
        actions, records = self.agent.act(states, envs=envs, greedy=greedy, generator=generator)
        elapsed = time.perf_counter() - start
        reflect = self.agent.reflect_seconds - before
        timings["reflect"] += reflect
        timings["decide"] += max(elapsed - reflect, 0.0)
        if len(actions) != len(states) or len(records) != len(states):
            raise RuntimeError(f"the agent returned {len(actions)} actions for {len(states)} states")
        # An agent that could not name an action (None) plays an out-of-range index: an invalid action.
        return [INVALID_ACTION if a is None else int(a) for a in actions], list(records)


def _start(index: int, request: EpisodeRequest, info: dict[str, Any]) -> _Slot:
    options = dict(request.options) if request.options is not None else None
    episode = Episode(int(request.seed), request.level, int(request.group), options=options, task=str(info["task"]))
    return _Slot(index, info, episode)


def _step(record: StepRecord, action: int, reward: float, done: bool, state_key: str, invalid: bool, menu: list[str]) -> Step:
    value = record.value
    # Labels and probabilities are for inspection only: a duck-typed record without them still plays.
    labels, probs = getattr(record, "labels", ()), getattr(record, "probs", None)
    return Step(
        prompt_ids=[int(t) for t in record.prompt_ids],
        label_ids=[int(t) for t in record.label_ids],
        action=int(action),
        log_prob=float(record.log_prob),
        entropy=float(record.entropy),
        value=None if value is None else float(value),
        reward=reward,
        done=done,
        state_key=state_key,
        reflection=record.reflection,
        invalid=invalid,
        action_text=menu[action] if 0 <= action < len(menu) else None,
        answer=record.answer,
        menu=list(menu),
        labels=list(labels) or None,
        probs=None if probs is None else [float(p) for p in probs],
        reflector_prompt=getattr(record, "reflector_prompt", None),
    )
