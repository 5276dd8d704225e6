"""Find ALFWorld games on disk: the real data set or games made by `reflectrl alfworld make-games`.

Both use the layout that alfworld's own download produces::

    <root>/json_2.1.1/<split>/<task type>-<object>-<movable>-<parent>-<scene>/<trial>/
        traj_data.json        task type and targets
        initial_state.pddl    the PDDL problem
        game.tw-pddl          domain + grammar + problem, 'solvable' and 'walkthrough'

A game is used when its `game.tw-pddl` exists and is marked solvable, as in
alfworld's `AlfredTWEnv`; folders with 'movable' or 'Sliced' in their path are
skipped for the same reason alfworld skips them (its text engine does not
support those tasks).

Where the games come from, in this order: the `data_dir` argument, the
`ALFWORLD_DATA` environment variable, else a default set generated once into
`$REFLECTRL_CACHE/alfworld` (`~/.cache/reflectrl/alfworld` by default).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from reflectrl.envs.alfworld.tasks import SPLITS, TASK_TYPES

JSON_DIR = "json_2.1.1"
GAME_FILE = "game.tw-pddl"
TRAJ_FILE = "traj_data.json"
PROBLEM_FILE = "initial_state.pddl"
ALFWORLD_DEFAULT_DATA = Path("~/.cache/alfworld").expanduser()
"""Importing alfworld sets ALFWORLD_DATA to this folder when it is unset, so that value alone
does not mean the user chose it."""

DEFAULT_SET_SIZE = 20
"""Games per task type in the default set (split 14 / 3 / 3)."""
DEFAULT_SET_VALID_FRACTION = 0.15
DEFAULT_SET_SEED = 0


@dataclass(frozen=True)
class GameRecord:
    """One playable game of a split."""

    game_id: str
    """'<task folder>/<trial folder>', unique within a split."""
    split: str
    task_type: str
    game_file: Path
    expert_steps: int | None
    """Length of the stored walkthrough (None when the file has none)."""


def cache_dir() -> Path:
    """`$REFLECTRL_CACHE` (default `~/.cache/reflectrl`)."""
    return Path(os.environ.get("REFLECTRL_CACHE") or Path.home() / ".cache" / "reflectrl").expanduser()


def default_data_root() -> Path:
    return cache_dir() / "alfworld"


def split_dir(root: Path, split: str) -> Path:
    """The folder of a split, for `root` being the data root or its json_2.1.1 folder."""
    if (root / JSON_DIR).is_dir():
        return root / JSON_DIR / split
    return root / split


def available_splits(root: Path) -> list[str]:
    base = root / JSON_DIR if (root / JSON_DIR).is_dir() else root
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []


def resolve_data_root(data_dir: str | Path | None) -> Path | None:
    """The data root chosen by the user, or None when they chose none (use the default set).

    Raises FileNotFoundError when the chosen folder holds no ALFWorld layout.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        source = "data_dir"
    else:
        value = os.environ.get("ALFWORLD_DATA")
        if not value:
            return None
        root = Path(value).expanduser()
        source = "ALFWORLD_DATA"
        if root.resolve() == ALFWORLD_DEFAULT_DATA.resolve() and not (root / JSON_DIR).is_dir():
            return None
    if not root.is_dir():
        raise FileNotFoundError(f"{source} {str(root)!r} is not a folder")
    if not (root / JSON_DIR).is_dir() and not any((root / s).is_dir() for s in SPLITS):
        raise FileNotFoundError(
            f"{source} {str(root)!r} has no {JSON_DIR}/ folder: point it at the folder that alfworld-download "
            "filled, or make games with `reflectrl alfworld make-games --out DIR`"
        )
    return root


def pinned_data_dir(env_kwargs: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The game folder ``$ALFWORLD_DATA`` names, for a run whose `env_kwargs` give no ``data_dir``
    (`EnvEntry.pinned_kwargs`): the run's settings then name its game set, and a resume with another one is refused
    instead of mixing two sets' stages. Raises FileNotFoundError as `resolve_data_root` does."""
    if "data_dir" in env_kwargs:
        return {}
    root = resolve_data_root(None)
    return {} if root is None else {"data_dir": ("ALFWORLD_DATA", str(root))}


def find_games(root: str | Path, split: str, task_types: tuple[str, ...] = TASK_TYPES) -> list[GameRecord]:
    """Solvable games of `split` with one of `task_types`, sorted by id (a stable index)."""
    root = Path(root)
    folder = split_dir(root, split)
    if not folder.is_dir():
        have = ", ".join(available_splits(root)) or "none"
        raise FileNotFoundError(f"no split {split!r} under {root} (splits there: {have})")
    return [g for g in _scan(folder.resolve(), split, _mtime(folder)) if g.task_type in task_types]


def _mtime(folder: Path) -> float:
    """Changes when task folders are added or removed, so the scan cache stays fresh."""
    return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir() if p.is_dir()])


@lru_cache(maxsize=16)
def _scan(folder: Path, split: str, _stamp: float) -> tuple[GameRecord, ...]:
    games = []
    for traj_file in sorted(folder.glob(f"*/*/{TRAJ_FILE}")):
        trial = traj_file.parent
        rel = trial.relative_to(folder).as_posix()
        if "movable" in rel or "Sliced" in rel:
            continue
        game_file = trial / GAME_FILE
        if not game_file.is_file():
            continue
        try:
            task_type = json.loads(traj_file.read_text())["task_type"]
            game = json.loads(game_file.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a broken or half-written folder is not a game
        if not isinstance(game, dict) or not game.get("solvable"):
            continue
        walkthrough = game.get("walkthrough")
        steps = len(walkthrough) if isinstance(walkthrough, list) and walkthrough else None
        games.append(GameRecord(rel, split, str(task_type), game_file, steps))
    return tuple(games)


def ensure_default_games(task_types: tuple[str, ...], root: Path | None = None) -> Path:
    """The default game set, generated on first use for the task types it lacks.

    A lock file keeps two processes from generating into it at once.
    """
    import fcntl

    from reflectrl.envs.alfworld.generator import GeneratorConfig, make_games

    root = root or default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [t for t in task_types if not all(_has_games(root, s, t) for s in SPLITS)]
        for task_type in missing:
            print(
                f"No ALFWorld data given (data_dir or ALFWORLD_DATA): generating {DEFAULT_SET_SIZE} {task_type} games "
                f"into {root} (once; `reflectrl alfworld make-games` makes more).",
                file=sys.stderr,
            )
            make_games(
                GeneratorConfig(
                    out=root,
                    n=DEFAULT_SET_SIZE,
                    task_types=(task_type,),
                    seed=DEFAULT_SET_SEED,
                    valid_fraction=DEFAULT_SET_VALID_FRACTION,
                    # no worker processes: spawning them re-runs a caller's script that lacks a __main__ guard
                    workers=1,
                ),
                progress=True,
            )
    return root


def _has_games(root: Path, split: str, task_type: str) -> bool:
    folder = split_dir(root, split)
    return folder.is_dir() and any(folder.glob(f"{task_type}-*/*/{GAME_FILE}"))
