"""A reflection cache for evaluation: a frozen reflector that decodes greedily writes the same text for the same prompt.

Evaluations of several settings that share a reflector (SFT-only and
Reflect-RL both use the SFT reflector) meet the same states again, above all
every episode's first state, since all rows play the same seeds. Generating a
reflection costs tens of decoding steps while looking one up costs nothing, so
the pipeline puts its evaluation reflectors behind this cache. Entries are
appended to a JSON-lines file, so later evaluation stages (and a resumed
run) reuse them too.

Only use it for a reflector that decodes greedily (temperature 0): a sampling
reflector is meant to answer differently each time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class CachedReflector:
    """Answers repeated reflector prompts from a cache and asks the wrapped reflector for the rest, in one batch."""

    def __init__(self, reflector: Any, path: str | os.PathLike | None = None):
        """
        Args:
            reflector: anything with `reflect(prompts) -> list[str]` (decoding greedily).
            path: JSON-lines file that keeps the cache across processes (None: in memory only).
        """
        if getattr(reflector, "temperature", 0.0):
            raise ValueError("a sampling reflector (temperature > 0) must not be cached")
        self.inner = reflector
        self.path = Path(path) if path is not None else None
        self.hits = 0
        self.misses = 0
        self._cache: dict[str, str] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._cache[str(entry["prompt"])] = str(entry["reflection"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill: that reflection is simply generated again

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        """One reflection per prompt; only prompts not seen before reach the wrapped reflector."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        if missing:
            answers = list(self.inner.reflect(missing))
            if len(answers) != len(missing):
                raise RuntimeError(f"the reflector returned {len(answers)} reflections for {len(missing)} prompts")
            self._cache.update(zip(missing, answers))
            self._append(missing, answers)
        return [self._cache[p] for p in prompts]

    def _append(self, prompts: list[str], answers: list[str]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"prompt": p, "reflection": a}, ensure_ascii=False) + "\n" for p, a in zip(prompts, answers))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(lines)

    def __getattr__(self, name: str) -> Any:
        # count_tokens, max_prompt_tokens, ... come from the wrapped reflector.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
