"""The offline teacher: reflections written from privileged information, no model needed.

Deterministic under a seed: the wording of each reflection is drawn from an
RNG seeded by the teacher seed and the request itself, so the same state
gets the same reflection in every run, while different states get varied
phrasings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from reflectrl.teachers.base import ReflectionRequest, Teacher
from reflectrl.teachers.explainers import explainer_for
from reflectrl.teachers.prompt import teacher_prompt


class OracleTeacher(Teacher):
    """Explains states with the environment's `Explainer` (see `reflectrl.teachers.explainers`)."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.name = "oracle"

    def key_text(self, request: ReflectionRequest) -> str:
        # The facts are part of the key: two states that look alike may differ in what only the oracle knows.
        return f"seed={self.seed}\n{teacher_prompt(request)}\n{request.facts_json()}"

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[str]:
        answers = []
        for request in requests:
            digest = hashlib.sha256(self.key_text(request).encode("utf-8")).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            answers.append(explainer_for(request.env).explain(request, rng))
        return answers
