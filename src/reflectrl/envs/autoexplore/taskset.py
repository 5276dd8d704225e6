"""AutoExplore tasks: the record, its JSON-lines file format, and train/test splits.

One task per line, a JSON object with the fields of `Task`. ``root`` is the
repository folder; a relative ``root`` is resolved against the folder of the
task file, so a benchmark folder (task file plus repositories) can be moved as
a whole. Target paths are relative POSIX paths inside the root; absolute paths
and ``..`` are refused when the file is loaded.

A task file can only point into its own folder: a root that resolves (links
followed) outside the folder holding the task file is refused, on loading and
on saving. A task file received from elsewhere then cannot make the agent, or
a remote teacher it talks to, read ``/etc`` or a sibling folder. Folders the
user trusts besides (the standard library, say) are named in
``$REFLECTRL_TASK_ROOTS`` (separated like ``$PATH``): an environment variable,
because it is the user who sets it, never a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from reflectrl.envs.autoexplore.sandbox import SandboxError, display_name, parse_path
from reflectrl.storage import atomic_write_bytes

ROOTS_ENV = "REFLECTRL_TASK_ROOTS"
"""Environment variable naming extra folders (``os.pathsep``-separated) task roots may lie in."""
KINDS = ("code", "text", "data")
SPLITS = ("train", "test")


class TaskSetError(ValueError):
    """A task file, task id, index or split that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Task:
    """One AutoExplore question whose answer lies in one file of one repository."""

    id: str
    """Stable identifier, unique within a task file."""
    question: str
    """The natural-language question shown to the agent."""
    kind: str
    """``code``, ``text`` or ``data``: what the answer file holds."""
    repository: str
    """Name of the repository (the unit of the split by repository)."""
    root: str
    """Folder of the repository: absolute, or relative to the task file's folder."""
    targets: tuple[str, ...]
    """Relative paths of the file(s) that answer the question."""
    depth: int
    """Number of folders between the root and the (shallowest) target file."""
    commands: tuple[str, ...] = ()
    """A shortest command path from the root: ``cd`` down, ``cat`` the file, ``id`` it."""
    split: str = "train"
    """``train`` or ``test``."""
    evidence: str = ""
    """The text in the target the question was made from (a hint for teachers; never shown to the agent)."""
    extra: dict = field(default_factory=dict)
    """Anything else a generator wants to keep (e.g. the question before LLM rewriting)."""

    def target_parts(self) -> list[tuple[str, ...]]:
        """The targets as checked tuples of entry names."""
        return [parse_path(t) for t in self.targets]


def command_path(target: str | tuple[str, ...]) -> tuple[str, ...]:
    """The shortest command path from the root to answering with `target`."""
    parts = parse_path(target) if isinstance(target, str) else tuple(target)
    *folders, name = parts
    return tuple(f"cd {display_name(f)}" for f in folders) + (f"cat {display_name(name)}", f"id {display_name(name)}")


def task_from_dict(data: dict, base: Path | None = None, where: str = "task") -> Task:
    """Build and validate a `Task` from its JSON object.

    With `base` (the task file's folder), a relative root is resolved against
    it and any root that resolves outside it is refused.
    """
    if not isinstance(data, dict):
        raise TaskSetError(f"{where}: expected a JSON object, got {type(data).__name__}")
    required = ("id", "question", "kind", "repository", "root", "targets")
    missing = [k for k in required if k not in data]
    if missing:
        raise TaskSetError(f"{where}: missing field(s) {', '.join(missing)}")
    for key in ("id", "question", "repository", "root"):
        if not isinstance(data[key], str) or not data[key]:
            raise TaskSetError(f"{where}: field {key!r} must be a non-empty string")
    if data["kind"] not in KINDS:
        raise TaskSetError(f"{where}: kind {data['kind']!r} is not one of {', '.join(KINDS)}")
    split = data.get("split", "train")
    if split not in SPLITS:
        raise TaskSetError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    targets = data["targets"]
    if isinstance(targets, str) or not isinstance(targets, list) or not targets:
        raise TaskSetError(f"{where}: targets must be a non-empty list of relative paths")
    try:
        parts = [parse_path(t) for t in targets]
    except SandboxError as err:
        raise TaskSetError(f"{where}: {err}") from None
    root = data["root"]
    if base is not None:
        root = os.path.normpath(os.path.join(base, root))
        _check_inside(root, base, f"{where}: root {data['root']!r}")
    depth = data.get("depth", min(len(p) - 1 for p in parts))
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise TaskSetError(f"{where}: depth must be a non-negative integer")
    known = {f for f in Task.__dataclass_fields__}
    extra = dict(data.get("extra") or {})
    extra.update({k: v for k, v in data.items() if k not in known})
    return Task(
        id=data["id"],
        question=data["question"],
        kind=data["kind"],
        repository=data["repository"],
        root=root,
        targets=tuple("/".join(p) for p in parts),
        depth=depth,
        commands=tuple(data.get("commands") or command_path(min(parts, key=len))),
        split=split,
        evidence=str(data.get("evidence", "")),
        extra=extra,
    )


def _check_inside(root: str, base: Path, what: str) -> None:
    real, folder = os.path.realpath(root), os.path.realpath(base)
    trusted = [folder] + [os.path.realpath(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    if not any(os.path.commonpath([real, allowed]) == allowed for allowed in trusted):
        raise TaskSetError(
            f"{what} resolves to {real}, outside the task file's folder {folder}: "
            f"a task file may only name repositories in its own folder or below, or in a folder listed in ${ROOTS_ENV}"
        )


def load_tasks(path: str | os.PathLike) -> list[Task]:
    """Read a task file (JSON lines); raises `TaskSetError` naming the line of any malformed task."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TaskSetError(f"task file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TaskSetError(f"cannot read task file {str(path)!r}: {err}") from None
    tasks, seen = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskSetError(f"{where}: not valid JSON ({err.msg})") from None
        task = task_from_dict(data, base=path.parent.resolve(), where=where)
        if task.id in seen:
            raise TaskSetError(f"{where}: duplicate task id {task.id!r}")
        seen.add(task.id)
        tasks.append(task)
    return tasks


def task_to_dict(task: Task, relative_to: Path | None = None) -> dict:
    """The JSON object of a task; `root` is made relative to `relative_to` when it lies inside it."""
    data = asdict(task)
    data["targets"] = list(task.targets)
    data["commands"] = list(task.commands)
    if relative_to is not None:
        root, base = os.path.abspath(task.root), os.path.abspath(relative_to)
        if os.path.commonpath([root, base]) == base:
            data["root"] = os.path.relpath(root, base)
    if not data["extra"]:
        del data["extra"]
    return data


def save_tasks(tasks: list[Task], path: str | os.PathLike) -> None:
    """Write a task file atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    for task in tasks:
        _check_inside(task.root, base, f"task {task.id}: root {task.root!r}")
    text = "".join(json.dumps(task_to_dict(t, base), ensure_ascii=False) + "\n" for t in tasks)
    write_atomically(path, text)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` so that readers see either the old file or the complete new one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def split_by_repository(
    tasks: list[Task], test_fraction: float = 0.2, seed: int = 0, test_repositories: list[str] | None = None
) -> list[Task]:
    """Assign whole repositories to train or test, so no test repository is seen in training.

    With `test_repositories`, exactly those are test. Otherwise repositories are
    shuffled with `seed` and moved to test until at least `test_fraction` of
    the tasks are test, keeping at least one repository in each split.
    """
    repos = sorted({t.repository for t in tasks})
    if test_repositories is not None:
        unknown = set(test_repositories) - set(repos)
        if unknown:
            raise TaskSetError(f"test repositories without tasks: {', '.join(sorted(unknown))}")
        test = set(test_repositories)
    else:
        if len(repos) < 2:
            raise TaskSetError(
                f"a split by repository needs at least 2 repositories with tasks, found {len(repos)}: "
                "give several roots, use --each-subfolder, or split by ratio"
            )
        if not 0.0 < test_fraction < 1.0:
            raise TaskSetError(f"test fraction must be between 0 and 1, got {test_fraction}")
        counts = {r: sum(t.repository == r for t in tasks) for r in repos}
        order = [repos[i] for i in np.random.default_rng(seed).permutation(len(repos))]
        test, total = set(), 0
        for repo in order[:-1]:
            if total >= test_fraction * len(tasks):
                break
            test.add(repo)
            total += counts[repo]
    return [replace(t, split="test" if t.repository in test else "train") for t in tasks]


def split_by_ratio(tasks: list[Task], test_fraction: float = 0.2, seed: int = 0) -> list[Task]:
    """Assign a seeded random `test_fraction` of the tasks to test (repositories are shared)."""
    if not 0.0 < test_fraction < 1.0:
        raise TaskSetError(f"test fraction must be between 0 and 1, got {test_fraction}")
    n_test = int(round(test_fraction * len(tasks)))
    chosen = set(np.random.default_rng(seed).permutation(len(tasks))[:n_test].tolist())
    return [replace(t, split="test" if i in chosen else "train") for i, t in enumerate(tasks)]
