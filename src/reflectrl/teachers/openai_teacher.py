"""A teacher served by any OpenAI-compatible chat-completions endpoint (``openai:MODEL``)."""

from __future__ import annotations

from collections.abc import Sequence

from reflectrl.models.openai_backend import OpenAIChatClient
from reflectrl.protocol import clean_reflection
from reflectrl.teachers.base import ReflectionRequest, Teacher
from reflectrl.teachers.prompt import TEACHER_SYSTEM, teacher_prompt


class OpenAITeacher(Teacher):
    """Sends `teacher_prompt` with `TEACHER_SYSTEM` and cleans the answer like a reflection."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        max_tokens: int = 160,
        temperature: float = 0.0,
    ):
        self.name = f"openai:{model}"
        self.client = OpenAIChatClient(
            base_url, model, api_key_env=api_key_env, timeout=timeout, max_retries=max_retries, concurrency=concurrency
        )
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[str]:
        prompts = [teacher_prompt(r) for r in requests]
        answers = self.client.complete(prompts, system=TEACHER_SYSTEM, max_tokens=self.max_tokens, temperature=self.temperature)
        return [clean_reflection(a) for a in answers]

    def close(self) -> None:
        self.client.close()
