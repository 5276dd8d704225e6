"""Policy rows whose reflections come from the trained reflector instead of the teacher.

Why this exists: at RL and evaluation time the policy reads the SFT
reflector's reflections, never the teacher's. The teacher's reflections in
the policy's SFT rows are always right, so the policy learns to follow them.
A small reflector is often wrong (SmolLM2-135M on DangerousTaxi: wrong wall
and detour advice in about half the held-out episodes, experiments/taxi_rl),
and the policy follows it into walls. Rewriting each policy row with the
reflection the trained reflector actually writes for that state (greedy,
exactly as in RL and evaluation), keeping the oracle's action as the target,
trains the policy on the inputs it will see and teaches it how far to trust
them. The state text, the menu and the label are left exactly as the teacher
data has them; only the text between ``Reflection:`` and ``Actions:`` changes.

Layout of the output folder:

* ``policy.jsonl``: the rewritten rows (every field of the input row, plus
  ``teacher_reflection`` and ``reflection_source``), in the input's order;
* ``journal.jsonl``: one line per finished episode (`EpisodeJournal`), so a
  killed run continues where it stopped and nothing is generated twice;
* ``config.json``: what made the rows (a re-run with other settings is refused,
  naming them). The reflector is recorded by what it is, not where it is: an
  adapter by the SHA-256 of its settings and weights files (a moved folder
  continues, an adapter retrained in place does not), a served one by its
  server, its model as the server lists it and the decoding settings;
* ``stats.json``: row count, share of reflections identical to the teacher's,
  seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reflectrl.datagen.generate import ConfigMismatch
from reflectrl.datagen.journal import EpisodeJournal
from reflectrl.models.served_spec import ServedSpec, is_served_spec
from reflectrl.players.reflection_cache import adapter_content_identity
from reflectrl.players.reflector import Reflector
from reflectrl.protocol import reflection_in, replace_reflection
from reflectrl.run_settings import as_saved, changed_settings, read_saved
from reflectrl.storage import atomic_write_bytes

ROW_KEYS = ("episode", "step", "source", "seed")
"""Fields that must agree between a reflector row and its policy row (both come from one state)."""


@dataclass(frozen=True)
class StudentReflectionConfig:
    """What `rewrite_policy_rows` was asked to do (stored as config.json)."""

    data: str
    """Folder of gen-data output (reflector.jsonl and policy.jsonl, or their _positive variants)."""
    reflector: str
    """The reflector that writes the new reflections (an adapter folder, or served:URL#MODEL)."""
    reflection_tokens: int
    """Longest reflection in tokens (use the value RL and evaluation will use)."""
    positive_only: bool = False
    """Rewrite policy_positive.jsonl (no negative examples) instead of policy.jsonl."""
    max_episodes: int | None = None
    """Rewrite only the rows of the first this many episodes (generation is the cost: about 1 s per row
    for SmolLM2-135M and 96 tokens on one CPU thread); None: all."""


def _settings(config: StudentReflectionConfig, reflector: Any) -> dict[str, Any]:
    """config.json's content: `config` with the reflector named by what it is (see the module docstring)."""
    settings = asdict(config)
    if is_served_spec(config.reflector):
        served = getattr(reflector, "served_identity", None)
        settings["reflector"] = {"spec": ServedSpec.parse(config.reflector).identity(), "served": served() if callable(served) else None}
    elif (Path(config.reflector) / "adapter_config.json").is_file():
        settings["reflector"] = {"adapter": adapter_content_identity(config.reflector)}
    return as_saved(settings)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _paired_episodes(reflector_rows: list[dict], policy_rows: list[dict]) -> dict[int, list[tuple[dict, dict]]]:
    """Reflector and policy rows of one state, grouped by episode (gen-data writes them in the same order)."""
    if len(reflector_rows) != len(policy_rows):
        raise ValueError(f"{len(reflector_rows)} reflector rows but {len(policy_rows)} policy rows: not one gen-data output")
    episodes: dict[int, list[tuple[dict, dict]]] = {}
    for number, (ref, pol) in enumerate(zip(reflector_rows, policy_rows)):
        if not all(isinstance(pol.get(k), str) for k in ("prompt", "completion")) or not isinstance(ref.get("completion"), str):
            raise ValueError(f"row {number + 1}: not a gen-data row (prompt and completion texts are missing)")
        if any(ref.get(k) != pol.get(k) for k in ROW_KEYS) or not isinstance(pol.get("episode"), int):
            raise ValueError(f"row {number + 1}: the reflector and policy rows describe different states; not one gen-data output")
        episodes.setdefault(pol["episode"], []).append((ref, pol))
    return episodes


def _batches(episodes: dict[int, list], todo: Iterable[int], rows_per_batch: int) -> Iterable[list[int]]:
    """Whole episodes per batch (so each finished batch journals complete episodes), about `rows_per_batch` rows."""
    batch: list[int] = []
    size = 0
    for episode in todo:
        batch.append(episode)
        size += len(episodes[episode])
        if size >= rows_per_batch:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def rewrite_policy_rows(
    config: StudentReflectionConfig,
    reflector: Reflector,
    out: str | Path,
    *,
    rows_per_batch: int = 32,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write OUT/policy.jsonl with `reflector`'s reflections (see the module docstring); returns the stats.

    `on_batch(rows_done, rows_total)` is called after every batch (a progress bar).
    """
    out = Path(out)
    suffix = "_positive" if config.positive_only else ""
    reflector_rows = _read_jsonl(Path(config.data) / f"reflector{suffix}.jsonl")
    policy_rows = _read_jsonl(Path(config.data) / f"policy{suffix}.jsonl")
    episodes = _paired_episodes(reflector_rows, policy_rows)
    if config.max_episodes is not None:
        episodes = dict(list(episodes.items())[: config.max_episodes])

    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(config, reflector)
    config_path = out / "config.json"
    if config_path.exists():
        saved = read_saved(config_path)
        if not isinstance(saved, dict):
            raise ConfigMismatch(f"{config_path} is not a readable settings file, so {out} cannot be continued; choose another --out")
        changed = changed_settings(saved, settings)
        if changed:
            raise ConfigMismatch(
                f"{out} holds rows made with other settings (changed: {', '.join(changed)}; {config_path}); choose another --out"
            )
    atomic_write_bytes(config_path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())

    journal = EpisodeJournal(out / "journal.jsonl")
    done = journal.load()
    total = sum(len(pairs) for pairs in episodes.values())
    finished = sum(len(episodes[e]) for e in done if e in episodes)
    started = time.monotonic()
    for batch in _batches(episodes, [e for e in episodes if e not in done], rows_per_batch):
        pairs = [pair for episode in batch for pair in episodes[episode]]
        reflections = reflector.reflect([ref["prompt"] for ref, _ in pairs])
        rewritten = [
            {**pol, "prompt": replace_reflection(pol["prompt"], reflection), "teacher_reflection": reflection_in(pol["prompt"]),
             "reflection_source": config.reflector}
            for (_, pol), reflection in zip(pairs, reflections, strict=True)
        ]
        start = 0
        for episode in batch:
            end = start + len(episodes[episode])
            done[episode] = {"episode": episode, "rows": rewritten[start:end]}
            journal.append(done[episode])
            start = end
        finished += len(pairs)
        if on_batch is not None:
            on_batch(finished, total)

    rows = [row for episode in episodes for row in done[episode]["rows"]]
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_bytes(out / "policy.jsonl", body.encode())
    same = sum(row["teacher_reflection"] == reflection_in(row["prompt"]) for row in rows)
    stats = {
        "rows": len(rows),
        "negative_rows": sum(bool(row.get("negative")) for row in rows),
        "same_as_teacher": round(same / max(1, len(rows)), 4),
        "seconds_this_run": round(time.monotonic() - started, 1),
    }
    atomic_write_bytes(out / "stats.json", (json.dumps(stats, indent=2) + "\n").encode())
    return stats

