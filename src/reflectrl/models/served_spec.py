"""The ``served:URL[#MODEL]`` spelling of a reflector behind an inference server (no heavy imports).

``URL`` is the server's OpenAI-compatible root up to ``/v1`` (as for
``openai:`` reflectors); ``MODEL`` is the name to send with each request: the
LoRA module's name on a vLLM server started with ``--lora-modules``, the alias
of a llama.cpp server. Without ``#MODEL`` the server must list exactly one model.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVED_PREFIX = "served:"


def is_served_spec(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(SERVED_PREFIX)


@dataclass(frozen=True)
class ServedSpec:
    url: str
    """Server root up to /v1."""
    model: str | None
    """Model name sent with each request; None: the server's only model."""

    @classmethod
    def parse(cls, spec: str) -> ServedSpec:
        if not is_served_spec(spec):
            raise ValueError(f"a served reflector is written {SERVED_PREFIX}URL[#MODEL], got {spec!r}")
        url, _, model = spec[len(SERVED_PREFIX):].partition("#")
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"{spec!r}: the URL after {SERVED_PREFIX!r} must start with http:// or https://, "
                f"e.g. {SERVED_PREFIX}http://127.0.0.1:8080/v1#reflector"
            )
        return cls(url, model.strip() or None)

    def __str__(self) -> str:
        return SERVED_PREFIX + self.url + (f"#{self.model}" if self.model else "")

    def identity(self) -> str:
        """What names the reflector for caches: the model name, not the address.

        A managed server gets a new port each time it starts, and a run resumed
        with a restarted server must still find its own cached reflections.
        """
        return f"served model {self.model}" if self.model else str(self)
