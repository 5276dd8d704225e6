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
identity of the reflector that wrote it (adapter, token budget; for a
reflector behind a server also the server, the model it lists and the
decoding settings), so a cache is never read for another reflector. Only
cache a reflector that decodes greedily (temperature 0): a sampling reflector
is meant to answer differently each time.

A damaged file is read as far as it can be trusted. A line cut by a kill (in
the middle of a character included) is skipped, and its reflection generated
again. A file whose first line is not a whole identity header (cut, or never
written), or whose header predates the recording of the answering server,
cannot say whose reflections it holds, so none is used: the file is
moved aside to ``NAME.untrusted`` (kept for a look, never read again) and a
new cache starts, since a cache only saves time and stopping the run would
cost more than regenerating; a file with nothing readable in it is simply
started anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNTRUSTED_SUFFIX = ".untrusted"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
"""The files of a PEFT adapter folder that decide what it writes: its settings and its weights."""


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
                written as the file's first line, and a file with another identity is refused. A reflector
                that can say which server answers (`served_identity()`) adds that under ``"served"`` (asked
                only when there is a file).
        """
        if getattr(reflector, "temperature", 0.0):
            raise ValueError("a sampling reflector (temperature > 0) must not be cached")
        self.inner = reflector
        self.path = Path(path) if path is not None else None
        self.identity = dict(identity) if identity is not None else None
        served = getattr(reflector, "served_identity", None)
        if self.identity is not None and self.path is not None and callable(served):  # only a file is checked
            self.identity["served"] = served()
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
        # Bytes, not text: a kill can cut the last line inside a character, and only that line is lost.
        lines = [_json_line(raw) for raw in path.read_bytes().split(b"\n")]
        header = lines[0] if isinstance(lines[0], dict) and "identity" in lines[0] else None
        if self.identity is not None:
            if header is None:
                self._set_aside(path, lines, "has no whole header line naming its reflector")
                return
            expected = json.loads(json.dumps(self.identity))
            if "served" in expected and isinstance(header["identity"], dict) and "served" not in header["identity"]:
                self._set_aside(path, lines, "was written before the answering server was recorded")
                return
            if header["identity"] != expected:
                raise ReflectionCacheMismatch(
                    f"{path} holds reflections of another reflector ({header['identity']}, not {self.identity}); "
                    "delete it or use another cache file"
                )
        for entry in lines[1 if header is not None else 0:]:
            if _is_entry(entry):
                self._cache[entry["prompt"]] = entry["reflection"]

    def _set_aside(self, path: Path, lines: list[Any], why: str) -> None:
        if not any(_is_entry(entry) for entry in lines):
            path.unlink()
            return
        target = path.with_name(path.name + UNTRUSTED_SUFFIX)
        number = 0
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}{UNTRUSTED_SUFFIX}.{number}")
        os.replace(path, target)
        log.warning(
            "%s %s, so its reflections are not used; moved to %s, a new cache starts", path, why, target,
        )

    def _append(self, prompts: list[str], answers: list[str]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"prompt": p, "reflection": a}, ensure_ascii=False) + "\n" for p, a in zip(prompts, answers))
        with open(self.path, "a+b") as handle:
            end = handle.seek(0, os.SEEK_END)
            head = ""
            if end == 0 and self.identity is not None:
                head = json.dumps({"identity": self.identity}, sort_keys=True) + "\n"
            elif end > 0:
                handle.seek(end - 1)
                # After a line cut by a kill, start a new line, or the first new entry would join the torn one.
                head = "" if handle.read(1) == b"\n" else "\n"
            handle.write((head + lines).encode("utf-8"))

    def __getattr__(self, name: str) -> Any:
        # count_tokens, max_prompt_tokens, ... come from the wrapped reflector.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _json_line(raw: bytes) -> Any:
    """The JSON value of one line, or None when it is cut, not UTF-8 or not JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


def _is_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("prompt"), str) and isinstance(entry.get("reflection"), str)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in blocks (adapter weights can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_content_identity(folder: str | os.PathLike) -> dict[str, str]:
    """An adapter folder by content: the SHA-256 of each of its settings and weights files present.

    Two folders holding the same adapter compare equal wherever they are; an
    adapter retrained in place (other weights, another rank or alpha) does not.
    """
    return {name: file_sha256(Path(folder) / name) for name in ADAPTER_FILES if (Path(folder) / name).is_file()}


def reflector_identity(reflector: str, reflection_tokens: int) -> dict[str, Any]:
    """What a cache file records about its reflector: the adapter's weights (by hash) or the model spec, and the token budget.

    A hash rather than the folder's path, so that a moved run folder keeps its
    cache and a retrained adapter in the same folder does not reuse it.
    """
    from reflectrl.models.served_spec import ServedSpec, is_served_spec

    weights = Path(reflector) / "adapter_model.safetensors"
    if is_served_spec(reflector):
        source = ServedSpec.parse(reflector).identity()
    elif weights.is_file():
        source = f"adapter sha256:{file_sha256(weights)[:16]}"
    else:
        source = str(reflector)
    # The key keeps its old name: cache files and checkpoints written before the rename must still match.
    return {"reflector": source, "max_new_tokens": int(reflection_tokens)}
