"""A teacher run on a local causal LM (``hf:PATH``): a model folder, Hub id in the local cache, GGUF or adapter."""

from __future__ import annotations

from collections.abc import Sequence

from reflectrl.models import load_model
from reflectrl.players import LocalReflector
from reflectrl.teachers.base import ReflectionRequest, Teacher
from reflectrl.teachers.prompt import TEACHER_SYSTEM, teacher_prompt


class LocalModelTeacher(Teacher):
    """Greedy generation on the teacher prompt, wrapped in the model's chat template when it has one."""

    def __init__(self, spec: str, *, reflection_tokens: int = 96, batch_size: int = 8, model=None, tokenizer=None):
        """`model`/`tokenizer` may be passed in to reuse an already loaded model (tests)."""
        self.name = f"hf:{spec}"
        if model is None:
            model, tokenizer = load_model(spec)
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        # LocalReflector already does batched, stop-string aware generation and cleaning.
        self.generator = LocalReflector(model, tokenizer, reflection_tokens=reflection_tokens)

    def _as_chat(self, text: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": text}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{TEACHER_SYSTEM}\n\n{text}\nReflection:"

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[str]:
        prompts = [self._as_chat(teacher_prompt(r)) for r in requests]
        answers: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            answers += self.generator.reflect(prompts[start : start + self.batch_size])
        return answers
