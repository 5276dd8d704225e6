"""Ray rollout engine: the lockstep loop with its environments in Ray actors.

The policy stays in this process: at every step the agent decides for the
whole batch in one call, as with the local engine, and then each actor steps
the slots it hosts, all actors at once (one remote call each). Requests go
to the actor hosting the fewest running slots, but which actor hosts an
episode changes nothing in it: an environment's episode depends only on its
seed and the actions played, so for one seed this engine returns the same
batch as `LocalRolloutEngine`.

Faults: every remote call is waited for at most `EnvWorkerGroup.call_timeout`
seconds. An actor that died (or did not answer) is replaced by a fresh one;
each episode it hosted is re-run there from its seed with the actions
already played (the agent is not asked again, so no random draw moves and
the batch stays the one a fault-free run gives), the replayed state is
checked against the one recorded, and the lost call is sent again. After
the group's `max_restarts` replacements the collect fails with `WorkerLost`,
as it does when the replacement itself dies or hangs: Ray's own errors never
leave the engine, so the command line reports one line, not a traceback.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from reflectrl.players.agents import Agent
from reflectrl.rollout.env_worker import EnvWorkerGroup, WorkerLost, import_ray
from reflectrl.rollout.episode import EpisodeRequest
from reflectrl.rollout.environments import EnvironmentHost, Transition
from reflectrl.rollout.lockstep import LockstepEngine

_engine_ids = itertools.count()


class ReplayMismatch(RuntimeError):
    """A re-played episode did not reach the state it had reached before its actor died."""


class RayEnvironments(EnvironmentHost):
    """The slots of one engine, spread over the actors of an `EnvWorkerGroup` (see the module docstring)."""

    def __init__(self, workers: EnvWorkerGroup, env_name: str, env_kwargs: dict[str, Any] | None = None):
        self.workers = workers
        self.env_name = env_name
        self.env_kwargs = dict(env_kwargs or {})
        self.key = f"engine-{_engine_ids.__next__()}"
        """Names this engine's environments inside the shared actors."""
        self.worker_seconds = 0.0
        """Seconds the actors spent resetting and stepping (summed over actors; the driver waits for the slowest)."""
        self.replayed_episodes = 0
        """Episodes re-run from their seeds on a replacement actor."""
        self._where: dict[int, int] = {}
        self._played: dict[int, tuple[EpisodeRequest, list[int], dict[str, Any]]] = {}
        """Per running slot: its request, the actions played so far and the last info seen."""

    def reset(self, starts: Sequence[tuple[int, EpisodeRequest]]) -> list[dict[str, Any]]:
        load = [0] * len(self.workers)
        for worker in self._where.values():
            load[worker] += 1
        by_worker: dict[int, list[tuple[int, EpisodeRequest]]] = defaultdict(list)
        for slot, request in starts:
            worker = min(range(len(load)), key=lambda w: (load[w], w))
            load[worker] += 1
            by_worker[worker].append((slot, request))

        def call(actor, part):
            return actor.reset.remote(self.key, self.env_name, self.env_kwargs, part)

        answers = self._call_each(by_worker, call)
        infos = {}
        for worker, part in by_worker.items():
            for (slot, request), info in zip(part, answers[worker]):
                self._where[slot] = worker
                self._played[slot] = (request, [], info)
                infos[slot] = info
        return [infos[slot] for slot, _ in starts]

    def step(self, moves: Sequence[tuple[int, int]]) -> list[Transition]:
        by_worker: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for slot, action in moves:
            by_worker[self._where[slot]].append((slot, int(action)))
        answers = self._call_each(by_worker, lambda actor, part: actor.step.remote(self.key, part))
        transitions = {}
        for worker, part in by_worker.items():
            for (slot, action), transition in zip(part, answers[worker]):
                request, actions, _ = self._played[slot]
                actions.append(action)
                self._played[slot] = (request, actions, transition.info)
                transitions[slot] = transition
        return [transitions[slot] for slot, _ in moves]

    def finish(self, slot: int) -> None:
        # The actor already freed the environment when it answered the last step.
        del self._where[slot]
        del self._played[slot]

    def close(self) -> None:
        ray = import_ray()
        self._where.clear()
        self._played.clear()
        try:
            ray.get([actor.drop.remote(self.key) for actor in self.workers.actors], timeout=self.workers.call_timeout)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            pass  # a lost actor took its environments with it

    def _call_each(self, parts: dict[int, list], call: Callable[[Any, list], Any]) -> dict[int, list]:
        """One remote call per worker with a part; a lost worker is replaced, re-played and called again."""
        ray = import_ray()
        lost = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError)
        futures = {worker: call(self.workers.actors[worker], part) for worker, part in parts.items()}
        answers = {}
        while futures:
            worker, future = next(iter(futures.items()))
            try:
                result, seconds = ray.get(future, timeout=self.workers.call_timeout)
            except lost as err:
                try:
                    self.workers.replace(worker, f"{type(err).__name__}")
                    self._replay_worker(worker)
                except lost as again:
                    raise WorkerLost(
                        f"environment worker {worker} was lost ({type(err).__name__}) and its replacement too "
                        f"({type(again).__name__}); giving up (check the workers' logs)"
                    ) from again
                futures[worker] = call(self.workers.actors[worker], parts[worker])
                continue
            self.worker_seconds += seconds
            answers[worker] = result
            del futures[worker]
        return answers

    def _replay_worker(self, worker: int) -> None:
        """Bring a fresh actor to where the lost one was: each of its episodes re-run from its seed."""
        ray = import_ray()
        actor = self.workers.actors[worker]
        slots = [slot for slot, where in self._where.items() if where == worker]
        futures = [
            actor.replay.remote(self.key, self.env_name, self.env_kwargs, slot, self._played[slot][0], self._played[slot][1])
            for slot in slots
        ]
        # A failure here is not retried: the fresh actor dying at once points at the environment, not at chance.
        infos = ray.get(futures, timeout=self.workers.call_timeout) if futures else []
        self.replayed_episodes += len(slots)
        for slot, info in zip(slots, infos):
            expected = self._played[slot][2]
            if (info["observation"], list(info["actions"])) != (expected["observation"], list(expected["actions"])):
                request = self._played[slot][0]
                raise ReplayMismatch(
                    f"{self.env_name} seed {request.seed}: re-playing {len(self._played[slot][1])} actions did not reach "
                    "the state recorded before the worker was lost (is the environment deterministic given its seed?)"
                )


class RayRolloutEngine(LockstepEngine):
    """Lockstep rollouts with the environments in the actors of `workers` (see the module docstring)."""

    def __init__(
        self, env_name: str, agent: Agent, workers: EnvWorkerGroup, max_concurrent: int = 16, env_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(RayEnvironments(workers, env_name, env_kwargs), agent, max_concurrent)
        self.env_name = env_name
        self.workers = workers
