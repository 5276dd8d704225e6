"""The body of a Ray environment actor, and the group of actors a run steps its environments in.

An actor (`EnvWorker`) holds `LocalEnvironments`, one set per engine that
uses it (the training and the validation engine share the actors), and
answers batched calls: all the slots it hosts are reset or stepped in one
remote call per lockstep step. `EnvWorkerGroup` starts the actors, replaces
one that died (a new process: its environments are gone, and the engine
re-plays their episodes, see `reflectrl.rollout.ray_engine`) and gives up with
a clear error after `max_restarts` replacements. This module imports Ray only
when a group is built, so the library does not need it otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from reflectrl.rollout.episode import EpisodeRequest
from reflectrl.rollout.environments import LocalEnvironments, Transition

INSTALL_HINT = "Ray rollouts need ray: pip install 'reflectrl[ray]'"


def import_ray():
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return ray


class EnvWorker:
    """What runs inside one Ray actor: the environments of every engine that uses it, stepped on request."""

    def __init__(self) -> None:
        self._hosts: dict[str, LocalEnvironments] = {}

    def pid(self) -> int:
        return os.getpid()

    def reset(self, key: str, env_name: str, env_kwargs: dict[str, Any], starts: Sequence[tuple[int, EpisodeRequest]]):
        """Reset environments for new slots; returns their infos and the seconds it took here."""
        start = time.perf_counter()
        infos = self._host(key, env_name, env_kwargs).reset(starts)
        return infos, time.perf_counter() - start

    def step(self, key: str, moves: Sequence[tuple[int, int]]) -> tuple[list[Transition], float]:
        """Step the slots; a slot whose episode ends is freed at once (one round trip per step, not two)."""
        start = time.perf_counter()
        host = self._hosts[key]
        answers = host.step(moves)
        for (slot, _), answer in zip(moves, answers):
            if answer.terminated or answer.truncated:
                host.finish(slot)
        return answers, time.perf_counter() - start

    def replay(
        self, key: str, env_name: str, env_kwargs: dict[str, Any], slot: int, request: EpisodeRequest, actions: Sequence[int],
    ) -> dict[str, Any]:
        """Re-run a slot's episode from its seed with the actions it already played; returns the last info."""
        host = self._host(key, env_name, env_kwargs)
        info = host.reset_one(slot, request)
        for action in actions:
            info = host.step([(slot, int(action))])[0].info
        return info

    def drop(self, key: str) -> None:
        """Close the environments of an engine that is done with this actor."""
        host = self._hosts.pop(key, None)
        if host is not None:
            host.close()

    def _host(self, key: str, env_name: str, env_kwargs: dict[str, Any]) -> LocalEnvironments:
        if key not in self._hosts:
            self._hosts[key] = LocalEnvironments(env_name, env_kwargs)
        return self._hosts[key]


class WorkerLost(RuntimeError):
    """An environment actor died or did not answer in time, and no replacement is left."""


class EnvWorkerGroup:
    """`count` Ray actors running `EnvWorker`, each reserving `cpus` CPUs (fractions share a core)."""

    def __init__(self, count: int, *, cpus: float = 1.0, call_timeout: float = 300.0, max_restarts: int = 3):
        if count < 1:
            raise ValueError(f"env workers must be >= 1, got {count}")
        if cpus <= 0 or call_timeout <= 0 or max_restarts < 0:
            raise ValueError("env worker cpus and call timeout must be > 0, max restarts >= 0")
        ray = import_ray()
        if not ray.is_initialized():
            raise RuntimeError("Ray is not running in this process: call reflectrl.rollout.ray_session.start_ray first")
        self.call_timeout = float(call_timeout)
        """Seconds to wait for one remote call before the actor counts as lost."""
        self.max_restarts = int(max_restarts)
        self.restarts = 0
        """Actors replaced so far."""
        # Ray's own actor restarts would bring back an empty process under the same handle; the group
        # replaces actors itself so that the engine knows which episodes to re-play.
        self._actor_class = ray.remote(num_cpus=float(cpus), max_restarts=0)(EnvWorker)
        self.actors = [self._actor_class.remote() for _ in range(count)]
        self._wait_ready(range(count))

    def __len__(self) -> int:
        return len(self.actors)

    def replace(self, index: int, reason: str) -> None:
        """Start a fresh actor in place of actor `index` (which died or hung), or raise `WorkerLost`."""
        ray = import_ray()
        if self.restarts >= self.max_restarts:
            raise WorkerLost(
                f"environment worker {index} was lost ({reason}) after {self.restarts} replacement(s) already; "
                "giving up (raise --env-worker-restarts, or check the workers' logs)"
            )
        self.restarts += 1
        ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._actor_class.remote()
        self._wait_ready([index])

    def close(self) -> None:
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []

    def _wait_ready(self, indices) -> None:
        ray = import_ray()
        indices = list(indices)
        try:
            ray.get([self.actors[i].pid.remote() for i in indices], timeout=self.call_timeout)
        except ray.exceptions.GetTimeoutError as err:
            raise WorkerLost(
                f"environment workers did not start within {self.call_timeout:.0f} s "
                "(does the cluster have the CPUs they reserve? see --env-worker-cpus)"
            ) from err
