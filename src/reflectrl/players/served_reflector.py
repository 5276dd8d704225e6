"""A reflector behind an inference server (vLLM, llama.cpp): raw completions of the exact reflector prompt.

A reflector fine-tuned by `reflectrl sft` learned to continue the raw
reflector prompt, so it is asked through ``/completions`` with that prompt,
never through a chat template. Decoding matches `LocalReflector`: greedy, at
most `reflection_tokens` new tokens, ended by the same stop strings, cleaned by
`protocol.clean_reflection`. Many requests are in flight at once (the server
batches them).

When the server fails (it does not answer, died, or answers something that is
not a completion) the error is one line naming the server, and, for a server
this process started (`reflectrl.serving`), its exit status and log file:
`reflectrl.serving.managed` hands its look-up of the servers it started to
`find_started_servers_with` when it is imported, since the players must not
import the serving layer above them.

``$OPENAI_API_KEY`` (or the variable named by `api_key_env`) goes only to an
``https://`` URL or a server on this machine; for another host over plain
http it is withheld with one warning naming ``$REFLECTRL_SEND_KEY_TO``, the
opt-in (see `reflectrl.models.openai_backend`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reflectrl.models.openai_backend import BackendError, OpenAIChatClient
from reflectrl.models.served_spec import ServedSpec
from reflectrl.players.reflector import STOP_STRINGS
from reflectrl.protocol import clean_reflection

GREEDY_FIELDS = {"repeat_penalty": 1.0}
"""Sent with every request: llama.cpp's server penalises repeated tokens (1.1) unless told otherwise, which is
not greedy decoding; vLLM ignores the field (its own repetition penalty is off by default)."""


class ServedReflector:
    """`Reflector` on a served model (see the module docstring)."""

    temperature = 0.0
    """Always greedy, so `CachedReflector` may cache it."""

    def __init__(
        self,
        spec: str | ServedSpec,
        *,
        reflection_tokens: int = 64,
        concurrency: int = 16,
        timeout: float = 300.0,
        max_retries: int = 2,
        api_key_env: str = "OPENAI_API_KEY",
    ):
        self.spec = spec if isinstance(spec, ServedSpec) else ServedSpec.parse(spec)
        if reflection_tokens < 1:
            raise ValueError("reflection_tokens must be >= 1")
        self.reflection_tokens = int(reflection_tokens)
        self.client = OpenAIChatClient(
            self.spec.url, self.spec.model or "unknown", api_key_env=api_key_env, timeout=timeout,
            max_retries=max_retries, concurrency=concurrency,
        )
        if self.spec.model is None:
            names = self._guarded(self.client.model_names)
            if len(names) != 1:
                self.client.close()
                raise BackendError(
                    f"the server at {self.spec.url} lists {len(names)} models ({', '.join(names) or 'none'}); "
                    f"name one: {self.spec}#MODEL"
                )
            self.client.model = names[0]
        self.last_stats: dict[str, int] = {}

    @property
    def model(self) -> str:
        """The model name sent with each request."""
        return self.client.model

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        """One cleaned reflection per reflector prompt, all requests in flight together (up to the concurrency)."""
        if not prompts:
            return []
        before = self.client.usage["completion_tokens"]
        answers = self._guarded(
            lambda: self.client.complete_text(
                prompts, max_tokens=self.reflection_tokens, temperature=0.0, stop=STOP_STRINGS, extra=GREEDY_FIELDS
            )
        )
        self.last_stats = {"new_tokens": self.client.usage["completion_tokens"] - before}
        return [clean_reflection(text) for text in answers]

    def served_identity(self) -> dict[str, Any]:
        """Who answers and how, for a reflection cache's header: the server, the model as asked and as the server
        lists it, and the decoding settings; another server with the same model name differs here."""
        return self._guarded(
            lambda: self.client.served_identity(
                # "max_tokens", the request field's name, keys the budget in cache headers already on disk.
                endpoint="completions", max_tokens=self.reflection_tokens, temperature=0.0, stop=list(STOP_STRINGS),
                extra=GREEDY_FIELDS,
            )
        )

    def close(self) -> None:
        self.client.close()

    def _guarded(self, call):
        try:
            return call()
        except BackendError as err:
            raise BackendError(describe_failure(self.spec.url, err)) from None


def find_started_servers_with(lookup: Callable[[str], Any]) -> None:
    """Use `lookup(url)` (the running server this process started at `url`, with `engine`, `state()` and
    `log_path`, or None) to describe a failed server; see the module docstring."""
    global _started_here
    _started_here = lookup


def _no_server_started_here(url: str) -> None:
    # Until the serving layer is imported this process has started no server.
    return None


_started_here: Callable[[str], Any] = _no_server_started_here


def describe_failure(url: str, err: Exception) -> str:
    """One line: which reflector server failed, how, and where its log is when this process started it."""
    detail = " ".join(str(err).split())
    server = _started_here(url)
    if server is None:
        return f"reflector server {url} failed: {detail}"
    return f"reflector server {url} ({server.engine}) failed: {server.state()}; log {server.log_path}; {detail}"
