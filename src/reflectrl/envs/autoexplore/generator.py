"""The task generator: any folder trees in, AutoExplore tasks out, offline and seeded.

For each repository the generator walks the tree through the sandbox (links
are not followed; hidden names and the folders in `GeneratorConfig.exclude`
are skipped), extracts candidate questions from every code, text and data file
(`questions`), then

1. drops ambiguous candidates: a candidate's key (the docstring sentence,
   heading, sentence, column name, row name or setting name it asks about) must
   be mentioned by exactly one file of the repository;
2. drops questions whose text is asked of two different files, and repeated
   keys within a file;
3. keeps at most `per_file` questions per file (seeded choice), so big files
   do not dominate.

Randomness is drawn from generators seeded by (seed, repository, file path),
so the same trees and seed always give the same tasks, and adding a
repository does not change the tasks of the others.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from reflectrl.envs.autoexplore.questions import Candidate, file_candidates, is_candidate_file, normalise
from reflectrl.envs.autoexplore.sandbox import FILE, Sandbox, join_path
from reflectrl.envs.autoexplore.taskset import Task, TaskSetError, command_path

DEFAULT_EXCLUDE = (
    "site-packages",
    "dist-packages",
    "__pycache__",
    "node_modules",
    "venv",
    "env",
    "build",
    "dist",
)


@dataclass(frozen=True)
class GeneratorConfig:
    """How tasks are generated from folder trees."""

    seed: int = 0
    """Seed of every random choice (template, row, which candidates a file keeps)."""
    per_file: int = 2
    """At most this many questions per file."""
    max_depth: int | None = None
    """Skip targets deeper than this many folders (None: any depth)."""
    visible_chars: int = 0
    """When > 0, keep only questions whose evidence lies within this many characters of the file's start."""
    max_file_bytes: int = 256_000
    """Files larger than this are not read (they could not be parsed from a head)."""
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    """Folder names never entered (hidden names, starting with '.', are always skipped)."""
    max_tasks: int | None = None
    """Keep a seeded sample of at most this many tasks overall (None: all)."""


@dataclass
class GeneratorStats:
    """What the generator saw and kept."""

    files_read: int = 0
    candidates: int = 0
    ambiguous: int = 0
    kept: int = 0
    by_kind: Counter = field(default_factory=Counter)
    by_depth: Counter = field(default_factory=Counter)
    by_repository: Counter = field(default_factory=Counter)


def repository_roots(roots: list[str | os.PathLike], each_subfolder: bool = False) -> list[tuple[str, Path]]:
    """(unique name, folder) of every repository; with `each_subfolder`, each sub-folder of a root is one."""
    found: list[Path] = []
    for root in roots:
        path = Path(root)
        if not path.is_dir():
            raise TaskSetError(f"{str(root)!r} is not a folder")
        if each_subfolder:
            subs = sorted(
                (p for p in path.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")),
                key=lambda p: p.name,
            )
            found += [p for p in subs if p.name not in DEFAULT_EXCLUDE]
        else:
            found.append(path)
    named: list[tuple[str, Path]] = []
    used: set[str] = set()
    for path in found:
        base = path.resolve().name or "root"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        named.append((name, path.resolve()))
    return named


def _encodable(parts: tuple[str, ...]) -> bool:
    try:
        "/".join(parts).encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes in a name: not representable in a JSON task file
        return False


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "repo"


def tasks_for_repository(name: str, root: Path, config: GeneratorConfig, stats: GeneratorStats | None = None) -> list[Task]:
    """The unambiguous tasks of one repository (see the module docstring)."""
    stats = stats if stats is not None else GeneratorStats()
    sandbox = Sandbox(root)

    def skip(entry_name: str) -> bool:
        return entry_name.startswith(".") or entry_name in config.exclude

    candidates: dict[tuple[str, ...], list[Candidate]] = {}
    owners: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for folder, listing in sandbox.walk(skip=skip):
        for entry in listing.entries:
            parts = folder + (entry.name,)
            if entry.kind != FILE or skip(entry.name) or not is_candidate_file(entry.name) or not _encodable(parts):
                continue
            try:
                head, _ = sandbox.read_head(parts, config.max_file_bytes + 1)
            except OSError:
                continue
            if len(head) > config.max_file_bytes or b"\0" in head:
                continue
            try:
                text = head.decode("utf-8")
            except UnicodeDecodeError:
                continue
            stats.files_read += 1
            found, mentions = file_candidates(entry.name, text, Random(f"{config.seed}/{name}/{join_path(parts)}"))
            for key in mentions | {c.key for c in found}:
                owners[key].add(parts)
            if config.max_depth is None or len(folder) <= config.max_depth:
                candidates[parts] = found
                stats.candidates += len(found)

    usable: dict[tuple[str, ...], list[Candidate]] = {}
    askers: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for parts, found in candidates.items():
        keep, keys = [], set()
        for c in found:
            if owners[c.key] != {parts} or c.key in keys:
                stats.ambiguous += 1
                continue
            if config.visible_chars > 0 and c.offset > config.visible_chars:
                continue
            keys.add(c.key)
            keep.append(c)
            askers[normalise(c.question)].add(parts)
        usable[parts] = keep

    tasks: list[Task] = []
    for parts in sorted(usable):
        keep = [c for c in usable[parts] if askers[normalise(c.question)] == {parts}]
        stats.ambiguous += len(usable[parts]) - len(keep)
        rng = Random(f"{config.seed}/{name}/{join_path(parts)}/pick")
        for c in rng.sample(keep, min(config.per_file, len(keep))):
            target = join_path(parts)
            digest = hashlib.sha1(f"{name}\0{target}\0{c.question}".encode("utf-8")).hexdigest()[:10]
            tasks.append(
                Task(
                    id=f"{_slug(name)}-{digest}",
                    question=c.question,
                    kind=c.kind,
                    repository=name,
                    root=str(root),
                    targets=(target,),
                    depth=len(parts) - 1,
                    commands=command_path(parts),
                    evidence=c.evidence,
                )
            )
    return tasks


def make_tasks(
    roots: list[str | os.PathLike], config: GeneratorConfig = GeneratorConfig(), each_subfolder: bool = False
) -> tuple[list[Task], GeneratorStats]:
    """Tasks from every repository under `roots` (all in split ``train``; split them afterwards)."""
    stats = GeneratorStats()
    tasks: list[Task] = []
    for name, root in repository_roots(roots, each_subfolder):
        tasks += tasks_for_repository(name, root, config, stats)
    if config.max_tasks is not None and len(tasks) > config.max_tasks:
        chosen = sorted(Random(f"{config.seed}/sample").sample(range(len(tasks)), config.max_tasks))
        tasks = [tasks[i] for i in chosen]
    stats.kept = len(tasks)
    stats.by_kind = Counter(t.kind for t in tasks)
    stats.by_depth = Counter(t.depth for t in tasks)
    stats.by_repository = Counter(t.repository for t in tasks)
    return tasks, stats
