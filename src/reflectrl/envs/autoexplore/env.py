"""AutoExplore: find the one file of a repository that answers a question.

The agent starts at the repository root. Each step it sees the question, the
current folder, the folder's listing, its command history and the result of
its last command, and picks one action:

* ``cd <folder>``: enter a sub-folder; ``cd ..``: go up (not offered at the root);
* ``cat <file>``: read a file: its head, or with ``view_start="question"`` a
  window at the line that best matches the question (``view_chars``
  characters either way; see `views`);
* ``id <file>``: answer with this file; ends the episode. ``id`` is offered
  only for files already read in this episode, and a file read once is not
  offered for ``cat`` again, so every file carries exactly one action.

Names that are not plain (spaces, quotes, newlines, unicode control
characters...) appear quoted as Python string literals, e.g. ``cat 'my notes.md'``
(see `sandbox.display_name`). Symbolic links, FIFOs, sockets and devices are
listed as "not accessible" and carry no action. All reads go through
`sandbox.Sandbox`; the environment never writes and never runs a command.

Big folders: the listing shows exactly the entries whose actions are on the
current page of the action menu (the base class pages menus longer than
``max_actions``, default 62), so what is listed is always what can be chosen,
and the prompt stays bounded whatever the folder size.

Rewards:

====================================================  ========================
event                                                 reward
====================================================  ========================
``cd``, ``cd ..`` or ``cat`` that succeeds             -1 (``STEP_REWARD``)
``cd``/``cat`` that fails (permission denied,          -2 (``ERROR_REWARD``),
vanished entry, not readable): nothing changes         the episode goes on
``id`` of a target file                                +20 (``SUCCESS_REWARD``), ends, success
``id`` of any other file                               -20 (``WRONG_ID_REWARD``), ends
inadmissible action (see `reflectrl.envs.base`)        -2 (``INVALID_REWARD``), state unchanged
"show more actions" (page turn)                        0
====================================================  ========================

Episodes that reach the horizon (15 steps by default) are truncated with no
extra reward. Success means ``id`` of a target file.

Levels (curriculum by the depth of the target, i.e. the number of folders
between the root and the target file): ``depth0``, ``depth1``, ``depth2``,
``depth3``, and ``all`` (every task, whatever its depth).

Tasks come from a task file (see `taskset`); without one, from the built-in
benchmark (`benchmark.builtin_tasks_path`), generated on first use.
Construction keywords for `make_env("autoexplore", ...)`: ``tasks`` (task
file or list of `Task`), ``split`` (``train``, ``test`` or ``all``),
``index`` (fixed task: index into the split at the level), ``task_id`` (fixed
task by id, any split), ``level``, ``horizon``, ``max_actions``,
``leaveout_prob`` (per episode, hide each entry unrelated to the targets with
this probability; never a folder on a target's path or a target),
``view_chars``, ``view_start`` (``head`` or ``question``, see `views`), and
``hide`` (entry names never shown unless on a target's path; default
`DEFAULT_HIDE`: the folders the generator skips, such as ``__pycache__`` and
``site-packages``, and tool folders such as ``.git``: no task is about them and
they would only fill the prompt).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import Any

import numpy as np

from reflectrl.envs.autoexplore.generator import DEFAULT_EXCLUDE
from reflectrl.envs.autoexplore.sandbox import DIR, FILE, Entry, FileView, Listing, Sandbox, display_name, show_path
from reflectrl.envs.autoexplore.taskset import Task, TaskSetError, load_tasks
from reflectrl.envs.autoexplore.views import SCAN_CHARS, VIEW_STARTS, question_window
from reflectrl.envs.base import Outcome, TextEnv

STEP_REWARD = -1.0
ERROR_REWARD = -2.0
SUCCESS_REWARD = 20.0
WRONG_ID_REWARD = -20.0
INVALID_REWARD = -2.0

DEFAULT_MAX_ACTIONS = 62
"""One label per action with SmolLM2's 62 single-token labels (see `reflectrl.protocol`)."""
DEFAULT_VIEW_CHARS = 1000
MAX_INACCESSIBLE_SHOWN = 10
SPLIT_CHOICES = ("train", "test", "all")
UP = "cd .."
DEFAULT_HIDE = DEFAULT_EXCLUDE + (".git", ".hg", ".svn", ".venv", ".tox", ".mypy_cache", ".pytest_cache", ".idea", ".DS_Store")


@lru_cache(maxsize=16)
def _cached_tasks(path: str, mtime_ns: int) -> tuple[Task, ...]:
    return tuple(load_tasks(path))


def _load(path: str | os.PathLike) -> tuple[Task, ...]:
    path = os.path.abspath(os.fspath(path))
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        raise TaskSetError(f"task file {path!r} does not exist or cannot be read") from None
    return _cached_tasks(path, mtime)


class AutoExploreEnv(TextEnv):
    """Repository exploration (see the module docstring for actions, rewards and keywords)."""

    levels = ("depth0", "depth1", "depth2", "depth3", "all")
    default_horizon = 15
    invalid_action_reward = INVALID_REWARD
    action_space_size = 64

    def __init__(
        self,
        tasks: str | os.PathLike | list[Task] | tuple[Task, ...] | None = None,
        split: str = "train",
        index: int | None = None,
        task_id: str | None = None,
        level: str | None = None,
        horizon: int | None = None,
        max_actions: int | None = DEFAULT_MAX_ACTIONS,
        leaveout_prob: float = 0.0,
        view_chars: int = DEFAULT_VIEW_CHARS,
        view_start: str = "head",
        hide: tuple[str, ...] | None = None,
        render_mode: str | None = None,
    ):
        super().__init__(level=level, horizon=horizon, max_actions=max_actions, render_mode=render_mode)
        if split not in SPLIT_CHOICES:
            raise TaskSetError(f"unknown split {split!r}; choose from {', '.join(SPLIT_CHOICES)}")
        if not 0.0 <= float(leaveout_prob) < 1.0:
            raise ValueError(f"leaveout_prob must be in [0, 1), got {leaveout_prob}")
        if int(view_chars) < 1:
            raise ValueError(f"view_chars must be at least 1, got {view_chars}")
        if view_start not in VIEW_STARTS:
            raise ValueError(f"view_start must be one of {', '.join(VIEW_STARTS)}, got {view_start!r}")
        if tasks is None:
            from reflectrl.envs.autoexplore.benchmark import builtin_tasks_path

            tasks = builtin_tasks_path()
        self.all_tasks: tuple[Task, ...] = tuple(tasks) if isinstance(tasks, (list, tuple)) else _load(tasks)
        if not self.all_tasks:
            raise TaskSetError("the task set is empty")
        self.split = split
        self.leaveout_prob = float(leaveout_prob)
        self.view_chars = int(view_chars)
        self.view_start = view_start
        self.hide = frozenset(DEFAULT_HIDE if hide is None else hide)
        self.fixed_index = index
        self.fixed_task_id = task_id
        self._by_id = {t.id: t for t in self.all_tasks}
        self._sandboxes: dict[str, Sandbox] = {}
        if task_id is not None and task_id not in self._by_id:
            raise TaskSetError(f"no task with id {task_id!r}")
        if task_id is None:
            self._check_index(index, self.level)
        self.task: Task = self.all_tasks[0]
        self._sandbox: Sandbox | None = None
        self._cwd: tuple[str, ...] = ()
        self._read: set[tuple[str, ...]] = set()
        self._view: tuple[tuple[str, ...], FileView] | None = None
        self._listings: dict[tuple[str, ...], Listing] = {}
        self._targets: list[tuple[str, ...]] = []
        self._protected: set[tuple[str, ...]] = set()
        self._salt = b""

    # ------------------------------------------------------------ task choice
    def tasks_at(self, level: str | None = None) -> list[Task]:
        """The tasks of this environment's split at `level` (default: the current level)."""
        level = self.level if level is None else level
        pool = [t for t in self.all_tasks if self.split == "all" or t.split == self.split]
        if level != "all":
            depth = int(level.removeprefix("depth"))
            pool = [t for t in pool if t.depth == depth]
        return pool

    @property
    def num_tasks(self) -> int:
        """How many tasks `reset(options={"index": i})` can choose from at the current level."""
        return len(self.tasks_at())

    def _check_index(self, index: int | None, level: str) -> list[Task]:
        pool = self.tasks_at(level)
        if not pool:
            raise TaskSetError(f"no {self.split} tasks at level {level}")
        if index is not None and (isinstance(index, bool) or not 0 <= int(index) < len(pool)):
            raise TaskSetError(f"task index {index} out of range: the {self.split} split has {len(pool)} tasks at level {level}")
        return pool

    def _choose_task(self, options: dict[str, Any]) -> Task:
        task_id = options.get("task_id", self.fixed_task_id)
        if task_id is not None:
            if task_id not in self._by_id:
                raise TaskSetError(f"no task with id {task_id!r}")
            return self._by_id[task_id]
        index = options.get("index", self.fixed_index)
        pool = self._check_index(index, self.level)
        if index is None:
            index = int(self.np_random.integers(len(pool)))
        return pool[int(index)]

    def _sandbox_for(self, task: Task) -> Sandbox:
        if task.root not in self._sandboxes:
            try:
                self._sandboxes[task.root] = Sandbox(task.root)
            except (OSError, ValueError) as err:
                raise TaskSetError(f"task {task.id}: repository {task.repository!r} unavailable: {err}") from None
        return self._sandboxes[task.root]

    # ------------------------------------------------------------ TextEnv hooks
    def _reset(self, options: dict[str, Any]) -> None:
        self.task = self._choose_task(options)
        self._sandbox = self._sandbox_for(self.task)
        self._targets = self.task.target_parts()
        if not any(self._sandbox.is_regular_file(t) for t in self._targets):
            raise TaskSetError(f"task {self.task.id}: no target file exists under {self.task.root!r}")
        self._protected = {t[:i] for t in self._targets for i in range(1, len(t) + 1)}
        self._salt = int(self.np_random.integers(2**63)).to_bytes(8, "little")
        self._cwd = ()
        self._read = set()
        self._view = None
        self._listings = {}
        root = self._listing(())
        if root.error:
            raise TaskSetError(f"task {self.task.id}: {root.error}")

    def _task(self) -> str:
        return (
            f"{self.task.question}\n"
            f"Find the file of repository {self.task.repository} that answers this question. "
            "Move with cd, read files with cat; a file you have read can be given as the answer with id "
            "(this ends the episode)."
        )

    def _observation(self) -> str:
        lines = [f"Current folder: {show_path(self._cwd)}"]
        lines += self._listing_lines()
        if self._view is not None:
            path, view = self._view
            if view.binary:
                lines.append(f"Output of cat {display_name(path[-1])}: {view.text}")
            else:
                if view.start_line > 1:
                    shown = f"; its first line, then from line {view.start_line}: {len(view.text):,} characters shown"
                else:
                    shown = f", first {len(view.text):,} characters shown" if view.truncated else ""
                lines.append(f"Output of cat {display_name(path[-1])} ({view.size:,} bytes{shown}):")
                lines.append(view.text)
        return "\n".join(lines)

    def _admissible(self) -> list[str]:
        return list(self._action_map())

    def _apply(self, action: str) -> Outcome:
        verb, entry = self._action_map()[action]
        self._view = None
        if verb == "up":
            self._cwd = self._cwd[:-1]
            return Outcome(STEP_REWARD, feedback=f"moved up to {show_path(self._cwd)}")
        path = self._cwd + (entry.name,)
        if verb == "cd":
            listing = self._listing(path)
            if listing.error:
                return Outcome(ERROR_REWARD, feedback=f"error: {listing.error}")
            self._cwd = path
            return Outcome(STEP_REWARD, feedback=f"entered {show_path(path)}")
        if verb == "cat":
            view = self._read_view(path)
            if view.error:
                return Outcome(ERROR_REWARD, feedback=f"error: {view.error}")
            self._read.add(path)
            self._view = (path, view)
            return Outcome(STEP_REWARD, feedback=f"read {entry.display} ({view.size:,} bytes)")
        if path in self._targets:
            return Outcome(SUCCESS_REWARD, terminated=True, success=True, feedback=f"{entry.display} is the answer")
        return Outcome(WRONG_ID_REWARD, terminated=True, feedback=f"{entry.display} is not the answer")

    def oracle_action(self) -> str:
        """The next command of a shortest command path to answering with the nearest target."""

        def plan(target: tuple[str, ...]) -> tuple[int, str]:
            folder, name = target[:-1], target[-1]
            common = 0
            while common < min(len(folder), len(self._cwd)) and folder[common] == self._cwd[common]:
                common += 1
            cost = (len(self._cwd) - common) + (len(folder) - common) + (target not in self._read) + 1
            if len(self._cwd) > common:
                return cost, UP
            if len(folder) > common:
                return cost, f"cd {display_name(folder[common])}"
            return cost, f"{'id' if target in self._read else 'cat'} {display_name(name)}"

        admissible = self._action_map()
        plans = sorted(plan(t) for t in self._targets)
        for _, action in plans:
            if action in admissible:
                return action
        return next(iter(admissible))

    def decoy_action(self, rng: np.random.Generator) -> str | None:
        """Another unread file of this folder, when the oracle is about to read the answer file.

        The oracle reads only answer files, so on its path every read is followed by ``id``, and a student
        that cannot know in advance which file answers learns to answer with the first file it reads. A
        searcher reads files that turn out not to answer; these reads show that situation on the path.
        """
        if not self.oracle_action().startswith("cat "):
            return None
        action_map = self._action_map()
        decoys = [
            a for a in self.actions
            if a in action_map and action_map[a][0] == "cat" and self._cwd + (action_map[a][1].name,) not in self._targets
        ]
        return decoys[int(rng.integers(len(decoys)))] if decoys else None

    def _info_extra(self) -> dict[str, Any]:
        return {
            "depth": self.task.depth,
            "task_id": self.task.id,
            "kind": self.task.kind,
            "repository": self.task.repository,
            "cwd": show_path(self._cwd),
        }

    # ------------------------------------------------------------ state helpers
    def _read_view(self, path: tuple[str, ...]) -> FileView:
        if self.view_start == "head":
            return self._sandbox.read_file(path, self.view_chars)
        view = self._sandbox.read_file(path, SCAN_CHARS)
        if view.error or view.binary:
            return view
        text, start_line = question_window(view.text, self.task.question, self.view_chars)
        truncated = view.truncated or len(text) < len(view.text)
        return FileView(text=text, size=view.size, truncated=truncated, start_line=start_line)

    def _listing(self, parts: tuple[str, ...]) -> Listing:
        """The listing of a folder, read once per episode (the episode sees one consistent tree)."""
        if parts not in self._listings:
            self._listings[parts] = self._sandbox.list_dir(parts)
        return self._listings[parts]

    def _hidden(self, path: tuple[str, ...]) -> bool:
        if path in self._protected:
            return False
        if path[-1] in self.hide:
            return True
        if self.leaveout_prob <= 0.0:
            return False
        digest = hashlib.blake2b("/".join(path).encode("utf-8", "surrogatepass"), key=self._salt, digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2**64 < self.leaveout_prob

    def _visible(self) -> list[Entry]:
        return [e for e in self._listing(self._cwd).entries if not self._hidden(self._cwd + (e.name,))]

    def _action_map(self) -> dict[str, tuple[str, Entry | None]]:
        """Admissible action -> (verb, entry), in menu order.

        ``cd ..`` first, then ``id`` of the files read here (on the first menu
        page, so that answering never needs page turns), then folders, then
        unread files, each group sorted by name.
        """
        actions: dict[str, tuple[str, Entry | None]] = {}
        if self._cwd:
            actions[UP] = ("up", None)
        visible = self._visible()
        read = [e for e in visible if e.kind == FILE and self._cwd + (e.name,) in self._read]
        for entry in read:
            actions[f"id {entry.display}"] = ("id", entry)
        for entry in visible:
            if entry.kind == DIR:
                actions[f"cd {entry.display}"] = ("cd", entry)
        for entry in visible:
            if entry.kind == FILE and entry not in read:
                actions[f"cat {entry.display}"] = ("cat", entry)
        return actions

    def _page_actions(self) -> list[str]:
        """The admissible actions on the menu page now shown (kept after the episode ends, unlike `actions`)."""
        full = list(self._action_map())
        if self.max_actions is None or len(full) <= self.max_actions:
            return full
        size = self.max_actions - 1
        return full[self._page * size : (self._page + 1) * size]

    def _listing_lines(self) -> list[str]:
        listing = self._listing(self._cwd)
        visible = self._visible()
        actionable = [e for e in visible if e.kind in (DIR, FILE)]
        blocked = [e for e in visible if e.kind not in (DIR, FILE)]
        mapping = self._action_map()
        shown_names = {mapping[a][1].name for a in self._page_actions() if mapping[a][1] is not None}
        shown = [e for e in actionable if e.name in shown_names]
        lines = []
        folders = [e.display + "/" for e in shown if e.kind == DIR]
        files = [e.display + (" (read)" if self._cwd + (e.name,) in self._read else "") for e in shown if e.kind == FILE]
        if folders:
            lines.append("Folders: " + "  ".join(folders))
        if files:
            lines.append("Files: " + "  ".join(files))
        if blocked:
            described = [f"{e.display} ({'symbolic link, not followed' if e.kind == 'link' else e.detail})" for e in blocked]
            more = len(described) - MAX_INACCESSIBLE_SHOWN
            text = "  ".join(described[:MAX_INACCESSIBLE_SHOWN]) + (f"  and {more} more" if more > 0 else "")
            lines.append("Not accessible: " + text)
        if len(shown) < len(actionable):
            lines.append(
                f"(this page lists {len(shown)} of the {len(actionable)} folders and files here; "
                "choose 'show more actions' to see the others)"
            )
        if listing.unscanned:
            lines.append("(this folder holds too many entries: only the first ones were read)")
        if not visible:
            lines.append("(empty folder)")
        return lines

