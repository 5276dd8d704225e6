"""Optional LLM rewriting of template questions into natural language, cached on disk.

The offline generator phrases questions from templates ('Which file defines
the function documented as "..."?'). With a chat model behind any
OpenAI-compatible endpoint, each question is rewritten the way a developer
would ask it; the file name and path are never given to the model, so they
cannot leak into the question. A rewrite that comes back empty, too long or
without a question mark keeps the template question.

Rewrites are cached as one small file per (model, prompt) under
``$REFLECTRL_CACHE/autoexplore/rewrites/``, so re-running the generator costs
nothing and gives the same questions.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Protocol, Sequence

from reflectrl.envs.autoexplore.taskset import Task, write_atomically

SYSTEM = (
    "You rewrite questions about a software repository so that they sound like a colleague asking. "
    "Keep every detail needed to find the answer, add nothing, never mention file or folder names. "
    "Reply with the rewritten question only, on one line."
)
MAX_QUESTION_CHARS = 300


class ChatClient(Protocol):
    """What the rewriter needs from a model client (`reflectrl.models.openai_backend.OpenAIChatClient`)."""

    def complete(self, prompts: Sequence[str], system: str | None = None, max_tokens: int = 128, temperature: float = 0.0) -> list[str]: ...


def rewrite_prompt(task: Task) -> str:
    """The user message for one task: its kind, template question and evidence (never its path)."""
    return (
        f"Kind of answer: {task.kind} file.\n"
        f"What the file says: {task.evidence}\n"
        f"Question: {task.question}\n"
        "Rewritten question:"
    )


def clean_rewrite(text: str) -> str | None:
    """The first non-empty line, unquoted; None when it is not a usable question."""
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    line = line.removeprefix("Rewritten question:").strip().strip('"').strip()
    if not line or len(line) > MAX_QUESTION_CHARS or not line.endswith("?"):
        return None
    return line


class QuestionRewriter:
    """Rewrites task questions with a chat model, caching each answer on disk."""

    def __init__(self, client: ChatClient, model: str, cache_dir: str | os.PathLike, batch_size: int = 16):
        self.client = client
        self.model = model
        self.cache_dir = Path(cache_dir)
        self.batch_size = int(batch_size)

    def _cache_file(self, prompt: str) -> Path:
        key = hashlib.sha256(f"{self.model}\0{SYSTEM}\0{prompt}".encode("utf-8")).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.txt"

    def rewrite(self, tasks: list[Task]) -> tuple[list[Task], int]:
        """Tasks with rewritten questions (the template kept in ``extra['template_question']``) and the number of model calls."""
        prompts = [rewrite_prompt(t) for t in tasks]
        answers: dict[int, str] = {}
        todo = []
        for i, prompt in enumerate(prompts):
            cached = self._cache_file(prompt)
            if cached.is_file():
                answers[i] = cached.read_text(encoding="utf-8")
            else:
                todo.append(i)
        calls = 0
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            replies = self.client.complete([prompts[i] for i in batch], system=SYSTEM, max_tokens=96, temperature=0.0)
            calls += len(batch)
            for i, reply in zip(batch, replies, strict=True):
                answers[i] = reply
                path = self._cache_file(prompts[i])
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, reply)
        out = []
        for i, task in enumerate(tasks):
            question = clean_rewrite(answers.get(i, ""))
            if question is None:
                out.append(task)
            else:
                out.append(replace(task, question=question, extra={**task.extra, "template_question": task.question}))
        return out, calls
