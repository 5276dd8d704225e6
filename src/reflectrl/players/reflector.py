"""The reflector: what every reflector promises, and where a reflection ends.

A reflector turns reflector prompts (`protocol.reflector_prompt`) into short
analyses of the states, one per prompt, in order. The kinds (see
`reflectrl.players.load.reflector_from_spec` for the specs that name them):

* `LocalReflector` (`players.local_reflector`): a model in this process, its adapter active;
* `OpenAIReflector` (`players.openai_reflector`): a chat model on an OpenAI-compatible server;
* `ServedReflector` (`players.served_reflector`): a reflector from `reflectrl sft` on an inference server;

and the wrappers `CachedReflector` (`players.reflection_cache`) and `TimedReflector` (`players.timed_reflector`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

STOP_STRINGS = ("\nActions:", "Action label:", "\nTask:", "Answer with the label")
"""Text after which a reflection is over: the start of the policy's part of the prompt."""


@runtime_checkable
class Reflector(Protocol):
    """Anything that turns reflector prompts into reflections."""

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        """One cleaned reflection per prompt, in order."""
        ...
