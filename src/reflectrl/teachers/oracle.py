"""The offline teacher: reflections written from privileged information, no model needed.

Deterministic under a seed: the wording of each reflection is drawn from an
RNG seeded by the teacher seed and the request itself, so the same state
gets the same reflection in every run, while different states get varied
phrasings.

The styles: ``full`` (spec ``oracle``), varied sentences that end with the
next move; ``concise`` (spec ``oracle:concise``, where the environment's
explainer has one), one fixed template that names the next move first and
then the facts behind it. A concise reflection is a third as long, so the
reflector decodes a third as many tokens at every step, and a reflector cut
short by its token budget still states the move. ``grounded`` (spec
``oracle:grounded``, where the explainer has one): the concise facts first,
beginning with what the current observation shows ("soapbottle 1 is here, in
cabinet 3."), then the move ("Next: take soapbottle 1 from cabinet 3."), so a
reflector writes down what it reads before it decides; its budget must reach
past the facts. ``reasoned`` (spec ``oracle:reasoned``): the paper's order in one
template: what the observation shows, whether the last action was good, and
the next action last ("... Last move (south) was good. Next: move south."),
so the recommendation is conditioned on the analysis written before it.
``mapped`` (spec ``oracle:mapped``, DangerousTaxi): the reasoned text plus the
rows on which the map has no wall between the taxi's and the target's
columns, the fact from which the next move follows by one rule.
``waypoint`` (spec ``oracle:waypoint``, DangerousTaxi): the mapped text plus, where
the taxi stands on a row the walls close, the open row to reach first ("Row 1 is
closed: first to row 2."), the rule's one step that the mapped text leaves unwritten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from reflectrl.teachers.base import ReflectionRequest, Teacher
from reflectrl.teachers.explainers import explainer_for
from reflectrl.teachers.prompt import teacher_prompt


ORACLE_STYLES = ("full", "concise", "grounded", "reasoned", "mapped", "waypoint")
"""Reflection styles of the oracle (see the module docstring)."""


class OracleTeacher(Teacher):
    """Explains states with the environment's `Explainer` (see `reflectrl.teachers.explainers`)."""

    def __init__(self, seed: int = 0, style: str = "full"):
        if style not in ORACLE_STYLES:
            raise ValueError(f"unknown oracle style {style!r}; choose from {', '.join(ORACLE_STYLES)}")
        self.seed = int(seed)
        self.style = style
        # The name is part of every cache key: two styles must never share answers.
        self.name = "oracle" if style == "full" else f"oracle:{style}"

    def key_text(self, request: ReflectionRequest) -> str:
        # The facts are part of the key: two states that look alike may differ in what only the oracle knows.
        return f"seed={self.seed}\n{teacher_prompt(request)}\n{request.facts_json()}"

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[str]:
        answers = []
        for request in requests:
            digest = hashlib.sha256(self.key_text(request).encode("utf-8")).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            explainer = explainer_for(request.env)
            # Each style other than "full" is the Explainer field of its name.
            explain = explainer.explain if self.style == "full" else getattr(explainer, self.style)
            if explain is None:
                raise ValueError(f"the oracle has no {self.style} explainer for {request.env!r}; use the teacher 'oracle'")
            answers.append(explain(request, rng))
        return answers
