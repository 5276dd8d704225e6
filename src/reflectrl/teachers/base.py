"""The teacher interface: what a teacher is told about a state, and what it answers.

A teacher writes the reflection for one state of an expert (or deliberately
derailed) episode. Like the paper's GPT-4 teacher it gets privileged
information the agent never sees: the optimal next action (the hidden hint),
whether the previous action left the optimal path and what would have been
better, and environment-specific facts (the true state). It must reason
toward the right action without saying that it was told.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reflectrl.protocol import State


NEXT_CUE = "Next:"
"""Opens the recommendation of every oracle style but ``full`` ("Next: move south."); the diagnostics
(`reflectrl.evaluation.reflection_diagnostics`) read a reflection's advice after it."""


@dataclass(frozen=True)
class Assessment:
    """How good one action was in the state where it was taken (judged with privileged knowledge)."""

    action: str
    """The action that was taken."""
    mistake: bool
    """True when the action left the optimal path."""
    better: str | None = None
    """What the oracle would have done instead (None when the action was fine)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Environment-specific explanation material (JSON-able), e.g. how many steps the detour costs."""


@dataclass(frozen=True)
class ReflectionRequest:
    """Everything a teacher may use to write one reflection."""

    env: str
    """Short environment name (selects the oracle's explainer)."""
    state: State
    """What the agent sees."""
    best_action: str
    """The oracle's next action: the hidden hint."""
    last: Assessment | None = None
    """Judgement of the previous action (None at the first step)."""
    facts: Mapping[str, Any] = field(default_factory=dict)
    """Privileged, environment-specific facts about the current state (JSON-able)."""

    def facts_json(self) -> str:
        """The facts as canonical JSON (part of the oracle's cache key)."""
        return json.dumps(self.facts, sort_keys=True, default=str)


class Teacher(ABC):
    """Writes reflections for batches of requests."""

    name: str
    """The teacher's spec (``oracle``, ``openai:MODEL``, ``hf:PATH``); part of every cache key."""

    @abstractmethod
    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[str]:
        """One reflection per request, in order (an empty string when the teacher had nothing usable)."""

    def key_text(self, request: ReflectionRequest) -> str:
        """The text the answer depends on, besides the teacher's name (the cache key)."""
        from reflectrl.teachers.prompt import teacher_prompt

        return teacher_prompt(request)

    def close(self) -> None:
        """Release connections or models (no-op by default)."""
