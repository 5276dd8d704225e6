"""Where a rollout's environments live: the `EnvironmentHost` interface and the in-process host.

A host owns the environments of a lockstep engine (`reflectrl.rollout.lockstep`);
a slot is the index of the request it plays. `LocalEnvironments` keeps one
environment per running slot in this process and reuses a finished one for
the next episode of the same level (a reset with the request's seed fully
restarts it). The Ray actors (`reflectrl.rollout.env_worker`) hold the same
class, so an environment steps the same way wherever it lives. This module
does not import torch: an environment actor only loads the environments.
"""

from __future__ import annotations

import abc
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reflectrl.envs import make_env
from reflectrl.envs.base import TextEnv
from reflectrl.rollout.episode import EpisodeRequest


@dataclass(frozen=True)
class Transition:
    """What an environment answered to one action (its text observation is also in `info`)."""

    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class EnvironmentHost(abc.ABC):
    """Owns the environments of a lockstep engine; a slot is the index of the request it plays."""

    @abc.abstractmethod
    def reset(self, starts: Sequence[tuple[int, EpisodeRequest]]) -> list[dict[str, Any]]:
        """Start one episode per (slot, request); returns each reset's `info`, in order."""

    @abc.abstractmethod
    def step(self, moves: Sequence[tuple[int, int]]) -> list[Transition]:
        """Play one action per (slot, action index); returns the transitions in order."""

    @abc.abstractmethod
    def finish(self, slot: int) -> None:
        """The slot's episode is over: its environment may serve another request."""

    def local_envs(self, slots: Sequence[int]) -> Sequence[Any]:
        """The slots' environment objects when they live in this process (scripted oracles read them), else ()."""
        return ()

    def close(self) -> None:
        """Release the environments."""


class LocalEnvironments(EnvironmentHost):
    """Environments of one process, one per running slot (see the module docstring)."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any] | None = None):
        self.env_name = env_name
        self.env_kwargs = dict(env_kwargs or {})
        self._running: dict[int, tuple[str, TextEnv]] = {}
        self._free: dict[str, list[TextEnv]] = defaultdict(list)

    def reset(self, starts: Sequence[tuple[int, EpisodeRequest]]) -> list[dict[str, Any]]:
        return [self.reset_one(slot, request) for slot, request in starts]

    def reset_one(self, slot: int, request: EpisodeRequest) -> dict[str, Any]:
        if slot in self._running:
            self.finish(slot)  # a slot restarted from its seed (recovery after a lost worker)
        pool = self._free[request.level]
        env = pool.pop() if pool else make_env(self.env_name, level=request.level, **self.env_kwargs)
        options = dict(request.options) if request.options is not None else None
        _, info = env.reset(seed=int(request.seed), options=options)
        self._running[slot] = (request.level, env)
        return info

    def step(self, moves: Sequence[tuple[int, int]]) -> list[Transition]:
        answers = []
        for slot, action in moves:
            _, reward, terminated, truncated, info = self._running[slot][1].step(int(action))
            answers.append(Transition(float(reward), bool(terminated), bool(truncated), info))
        return answers

    def finish(self, slot: int) -> None:
        level, env = self._running.pop(slot)
        self._free[level].append(env)

    def local_envs(self, slots: Sequence[int]) -> list[TextEnv]:
        return [self._running[slot][1] for slot in slots]

    def close(self) -> None:
        envs = [env for _, env in self._running.values()] + [env for pool in self._free.values() for env in pool]
        self._running.clear()
        self._free.clear()
        for env in envs:
            env.close()
