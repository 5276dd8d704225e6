"""Where rollout time goes: a reflector wrapper that adds up its own seconds.

The agents run reflection and decision inside one `act` call; wrapping the
reflector lets the engine split that call's time into 'reflect' and 'decide'
without the agents having to know about timing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


class TimedReflector:
    """Delegates to a reflector and accumulates the seconds spent in `reflect` in `seconds`."""

    def __init__(self, reflector: Any):
        self.inner = reflector
        self.seconds = 0.0

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        start = time.perf_counter()
        try:
            return self.inner.reflect(prompts)
        finally:
            self.seconds += time.perf_counter() - start

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found on the wrapper (count_tokens, max_prompt_tokens, ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
