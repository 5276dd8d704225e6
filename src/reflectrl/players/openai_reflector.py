"""A chat model behind an OpenAI-compatible server as the reflector (``openai:MODEL``).

The server applies its chat template: the reflector prompt goes as the user
message, after a system message asking for a short reflection
(`DEFAULT_REFLECTOR_SYSTEM`). The client, its timeouts, retries and key
handling are `reflectrl.models.openai_backend.OpenAIChatClient`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reflectrl.models.openai_backend import OpenAIChatClient
from reflectrl.players.reflector import Reflector
from reflectrl.protocol import clean_reflection

DEFAULT_REFLECTOR_SYSTEM = (
    "You help an agent that acts in a text environment. Read the state and write a short reflection "
    "(at most three sentences): what did the last action do, was it a good move, and what should be done next. "
    "Do not list the actions again and do not answer with an action label."
)


class OpenAIReflector(Reflector):
    """A `Reflector` that asks an OpenAI-compatible server for each reflection."""

    def __init__(
        self,
        client: OpenAIChatClient,
        *,
        system: str | None = DEFAULT_REFLECTOR_SYSTEM,
        reflection_tokens: int = 64,
        temperature: float = 0.0,
    ):
        self.client = client
        self.system = system
        self.reflection_tokens = int(reflection_tokens)
        self.temperature = float(temperature)

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        """One cleaned reflection per reflector prompt."""
        answers = self.client.complete(prompts, system=self.system, max_tokens=self.reflection_tokens, temperature=self.temperature)
        return [clean_reflection(text) for text in answers]

    def served_identity(self) -> dict[str, Any]:
        """The server, its model and these sampling settings, for a reflection cache's header."""
        # "max_tokens", the request field's name, keys the budget in cache headers already on disk.
        return self.client.served_identity(
            endpoint="chat/completions", system=self.system, max_tokens=self.reflection_tokens, temperature=self.temperature
        )
