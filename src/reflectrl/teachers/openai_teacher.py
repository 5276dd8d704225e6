"""A teacher served by any OpenAI-compatible chat-completions endpoint (``openai:MODEL``)."""

from __future__ import annotations

from collections.abc import Sequence

from reflectrl.models.openai_backend import OpenAIChatClient
from reflectrl.protocol import clean_reflection
from reflectrl.teachers.base import ReflectionRequest, Teacher
from reflectrl.teachers.prompt import TEACHER_SYSTEM, teacher_prompt


class OpenAITeacher(Teacher):
    """Sends `teacher_prompt` with `TEACHER_SYSTEM` and cleans the answer like a reflection."""

    def __init__(self, client: OpenAIChatClient, *, max_tokens: int = 160, temperature: float = 0.0):
        """`client` carries the server, model, key, timeouts, retries and concurrency."""
        self.name = f"openai:{client.model}"
        self.client = client
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[str]:
        prompts = [teacher_prompt(r) for r in requests]
        answers = self.client.complete(prompts, system=TEACHER_SYSTEM, max_tokens=self.max_tokens, temperature=self.temperature)
        return [clean_reflection(a) for a in answers]

    def close(self) -> None:
        self.client.close()
