"""A reflection cache: a frozen reflector that decodes greedily writes the same text for the same prompt.

Where it pays:

* RL. Every GRPO group plays one start seed several times, validation replays
  the same seeds every few iterations, and a policy that has settled walks the
  same routes again, so the reflector is asked the same prompt over and over.
  `OnlineTrainer` saves the cache's entries with each checkpoint and restores
  them on resume: which prompts miss decides how the misses are batched,
  which changes float rounding, so a resumed run must start from exactly the
  cache the straight run had at that iteration.
* Evaluation. Settings that share a reflector (SFT-only and Reflect-RL both
  use the SFT reflector) play the same seeds and meet the same states again,
  above all every episode's first state. The pipeline keeps those entries in
  a JSON-lines file, so later evaluation stages (and a resumed run) reuse them.

Generating a reflection costs tens of decoding steps; a look-up costs nothing.
Entries are keyed by the whole prompt, and a cache file starts with the
identity of the reflector that wrote it (adapter, token budget), so a cache is
never read for another reflector. Only cache a reflector that decodes
greedily (temperature 0): a sampling reflector is meant to answer
differently each time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class ReflectionCacheMismatch(ValueError):
    """A cache file was written by another reflector."""


class CachedReflector:
    """Answers repeated reflector prompts from a cache and asks the wrapped reflector for the rest, in one batch."""

    def __init__(self, reflector: Any, path: str | os.PathLike | None = None, identity: Mapping[str, Any] | None = None):
        """
        Args:
            reflector: anything with `reflect(prompts) -> list[str]` (decoding greedily).
            path: JSON-lines file that keeps the cache across processes (None: in memory only).
            identity: what makes the reflector's answers what they are (e.g. adapter and token budget);
                written as the file's first line, and a file with another identity is refused.
        """
        if getattr(reflector, "temperature", 0.0):
            raise ValueError("a sampling reflector (temperature > 0) must not be cached")
        self.inner = reflector
        self.path = Path(path) if path is not None else None
        self.identity = dict(identity) if identity is not None else None
        self.hits = 0
        """Prompts answered from the cache since creation."""
        self.misses = 0
        """Prompts sent to the wrapped reflector since creation."""
        self._cache: dict[str, str] = {}
        if self.path is not None and self.path.is_file():
            self._read(self.path)

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

    def __len__(self) -> int:
        return len(self._cache)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> list[dict[str, str]]:
        """Every entry, oldest first (JSON-ready)."""
        return [{"prompt": p, "reflection": r} for p, r in self._cache.items()]

    def load_state_dict(self, entries: Sequence[Mapping[str, str]]) -> None:
        """Replace the entries with `entries` (from `state_dict`); the hit and miss counts are kept."""
        self._cache = {str(e["prompt"]): str(e["reflection"]) for e in entries}

    # ------------------------------------------------------------------ file
    def _read(self, path: Path) -> None:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill: that reflection is simply generated again
            if not isinstance(entry, dict):
                continue
            if number == 0 and "identity" in entry:
                if self.identity is not None and entry["identity"] != json.loads(json.dumps(self.identity)):
                    raise ReflectionCacheMismatch(
                        f"{path} holds reflections of another reflector ({entry['identity']}, not {self.identity}); "
                        "delete it or use another cache file"
                    )
                continue
            if isinstance(entry.get("prompt"), str) and isinstance(entry.get("reflection"), str):
                self._cache[entry["prompt"]] = entry["reflection"]

    def _append(self, prompts: list[str], answers: list[str]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = ""
        if self.identity is not None and (not self.path.exists() or self.path.stat().st_size == 0):
            header = json.dumps({"identity": self.identity}, sort_keys=True) + "\n"
        lines = "".join(json.dumps({"prompt": p, "reflection": a}, ensure_ascii=False) + "\n" for p, a in zip(prompts, answers))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(header + lines)

    def __getattr__(self, name: str) -> Any:
        # count_tokens, max_prompt_tokens, ... come from the wrapped reflector.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def reflector_identity(reflector: str, max_new_tokens: int) -> dict[str, Any]:
    """What a cache file records about its reflector: the adapter's weights (by hash) or the model spec, and the token budget.

    A hash rather than the folder's path, so that a moved run folder keeps its
    cache and a retrained adapter in the same folder does not reuse it.
    """
    import hashlib

    from reflectrl.models.served_spec import ServedSpec, is_served_spec

    weights = Path(reflector) / "adapter_model.safetensors"
    if is_served_spec(reflector):
        source = ServedSpec.parse(reflector).identity()
    elif weights.is_file():
        digest = hashlib.sha256()
        with open(weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        source = f"adapter sha256:{digest.hexdigest()[:16]}"
    else:
        source = str(reflector)
    return {"reflector": source, "max_new_tokens": int(max_new_tokens)}
