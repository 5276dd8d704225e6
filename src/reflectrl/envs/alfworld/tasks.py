"""ALFWorld's task types, data splits and the difficulty levels reflectrl adds.

Nothing here imports the alfworld package, so `import reflectrl` works without it.
"""

from __future__ import annotations

from collections.abc import Iterable

TASK_TYPES: tuple[str, ...] = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
"""The six ALFWorld task types, named as in the data set's folder names and `traj_data.json`."""

DEFAULT_TASK_TYPES: tuple[str, ...] = ("pick_and_place_simple",)
"""The paper's subset (pick and place)."""

SPLITS: tuple[str, ...] = ("train", "valid_seen", "valid_unseen")
"""Splits of the ALFWorld data layout; `valid_unseen` uses room layouts never seen in training."""

LEVEL_MAX_EXPERT_STEPS: dict[str, int | None] = {"easy": 4, "medium": 8, "full": None}
"""Curriculum levels, easiest first: a game belongs to a level when its expert walkthrough
has at most this many steps (None: no limit). Levels are cumulative, so `full` is every game."""

LEVELS: tuple[str, ...] = tuple(LEVEL_MAX_EXPERT_STEPS)


def parse_task_types(task_types: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate task types given as names or a comma-separated string; 'all' selects the six."""
    if task_types is None:
        return DEFAULT_TASK_TYPES
    names = [t.strip() for t in task_types.split(",")] if isinstance(task_types, str) else [str(t).strip() for t in task_types]
    names = [n for n in names if n]
    if names == ["all"]:
        return TASK_TYPES
    unknown = [n for n in names if n not in TASK_TYPES]
    if unknown or not names:
        raise ValueError(
            f"unknown ALFWorld task type(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(TASK_TYPES)} or 'all'"
        )
    return tuple(dict.fromkeys(names))


def in_level(expert_steps: int | None, level: str) -> bool:
    """Whether a game whose walkthrough has `expert_steps` steps belongs to `level`."""
    limit = LEVEL_MAX_EXPERT_STEPS[level]
    return limit is None or (expert_steps is not None and expert_steps <= limit)


def goal_types(game_id: str) -> tuple[str, str]:
    """(goal object type, target receptacle type) from a task folder name, lower case ('' when absent).

    The real data set and generated games both name it ``<task type>-<Object>-<movable>-<Receptacle>-<scene>``."""
    parts = game_id.split("/")[0].split("-")
    obj = parts[1].lower() if len(parts) > 1 else ""
    recep = parts[3].lower() if len(parts) > 3 and parts[3] != "None" else ""
    return obj, recep


def instance_type(name: str) -> str:
    """'butterknife 2' -> 'butterknife' (the engine names object and receptacle instances '<type> <number>')."""
    return name.rsplit(" ", 1)[0]
