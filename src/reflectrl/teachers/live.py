"""The teacher as a reflector at play time: the ceiling of a trained policy.

A trained reflective policy reads reflections in the teacher's style. Given the
teacher's own reflections at test time (written from the live environment's true
state, as during data generation), it shows how far it would get with a perfect
reflector: if that ceiling is high and the trained reflector's agent is far below
it, the reflector is what limits the agent; if the ceiling is low too, the policy
is. The teacher reads what no player may read (the hidden state, the oracle's next
action), so it serves only this diagnostic row and the training data, never a
player that is compared with the others.

`ReflectiveAgent` calls `reflect_live(states, envs)` instead of `reflect(prompts)`
for a reflector with ``reads_environment = True``, and `observe(envs, played)` after
it has chosen, while the environments still stand in the state the actions are
taken from: the teacher judges each action there, exactly as data generation judged
the expert's actions, and tells the next reflection whether the last move was good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reflectrl.protocol import State
from reflectrl.teachers.base import Assessment, ReflectionRequest
from reflectrl.teachers.explainers import explainer_for, oracle_menu_choice
from reflectrl.teachers.registry import make_teacher

TEACHER_PREFIX = "teacher:"
"""A reflector spec ``teacher:SPEC`` (e.g. ``teacher:oracle:concise``) names the live teacher."""


def is_teacher_spec(spec: str | None) -> bool:
    return bool(spec) and str(spec).startswith(TEACHER_PREFIX)


class LiveTeacherReflector:
    """Writes the teacher's reflection for each running environment (see the module docstring)."""

    reads_environment = True

    def __init__(self, teacher: str, env_name: str, *, seed: int = 0):
        """`teacher`: a teacher spec (``oracle:concise``, ...) or ``teacher:SPEC``; `seed`: the data's teacher seed."""
        spec = teacher[len(TEACHER_PREFIX):] if is_teacher_spec(teacher) else teacher
        self.spec = spec
        self.env_name = env_name
        self.teacher = make_teacher(spec, seed=seed)
        self.explainer = explainer_for(env_name)
        self._last: dict[int, Assessment | None] = {}

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        raise RuntimeError("the live teacher reads the environment: call reflect_live(states, envs)")

    def reflect_live(self, states: Sequence[State], envs: Sequence[Any]) -> list[str]:
        if len(envs) != len(states):
            raise RuntimeError("the live teacher needs the running environments (local rollouts only)")
        requests = []
        for state, env in zip(states, envs):
            # Environments are pooled and reused: a fresh episode has no history and no last move.
            last = self._last.get(id(env)) if env.history else None
            requests.append(ReflectionRequest(self.env_name, state, oracle_menu_choice(env), last, self.explainer.facts(env)))
        return self.teacher.reflect(requests)

    def observe(self, envs: Sequence[Any], played: Sequence[str | None]) -> None:
        """Judge the chosen actions in the states they are taken from (before the environments step)."""
        for env, action in zip(envs, played):
            self._last[id(env)] = self.explainer.assess(env, action) if action is not None else None

    def close(self) -> None:
        self.teacher.close()
