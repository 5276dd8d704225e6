"""Curriculum over an environment's levels (easiest first).

Two ways to advance, usable together (whichever fires first):

* **schedule** (the paper's): a list of iteration counts; after
  `schedule[k]` completed iterations the run moves to level k + 1.
* **threshold**: after an evaluation on the current level whose validation
  success is at least `threshold`, the run moves on.

The last level is never left. The trainer clears the replay buffer whenever
`advance` reports a switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reflectrl.trainers.rl_config import RLConfig


class Curriculum:
    """Which level to train on now, and when to move to the next."""

    def __init__(self, levels: Sequence[str], schedule: Sequence[int] = (), threshold: float | None = None):
        if not levels:
            raise ValueError("a curriculum needs at least one level")
        if len(set(levels)) != len(levels):
            raise ValueError(f"curriculum levels repeat: {list(levels)}")
        schedule = [int(s) for s in schedule]
        if any(s < 1 for s in schedule) or schedule != sorted(schedule):
            raise ValueError(f"the curriculum schedule must be increasing positive iteration counts, got {schedule}")
        if len(schedule) > len(levels) - 1:
            raise ValueError(f"{len(schedule)} switch points for {len(levels)} levels: at most {len(levels) - 1}")
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ValueError(f"the curriculum threshold is a success rate in (0, 1], got {threshold}")
        self.levels = tuple(levels)
        self.schedule = tuple(schedule)
        self.threshold = threshold
        self.index = 0
        self.switches: list[tuple[int, str]] = [(0, self.levels[0])]
        """(iterations completed, level entered) for every level reached so far."""

    @property
    def level(self) -> str:
        return self.levels[self.index]

    @property
    def is_last(self) -> bool:
        return self.index == len(self.levels) - 1

    def advance(self, iterations_done: int, validation_success: float | None = None) -> bool:
        """Move to the next level if the schedule or the threshold says so; True when the level changed.

        Call once after each iteration, with the validation success on the
        current level when an evaluation just ran (None otherwise).
        """
        if self.is_last:
            return False
        due = self.index < len(self.schedule) and iterations_done >= self.schedule[self.index]
        passed = self.threshold is not None and validation_success is not None and validation_success >= self.threshold
        if not (due or passed):
            return False
        self.index += 1
        self.switches.append((int(iterations_done), self.level))
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"levels": list(self.levels), "index": self.index, "switches": [list(s) for s in self.switches]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["levels"]) != self.levels:
            raise ValueError(f"checkpoint curriculum levels {state['levels']} differ from the configured {list(self.levels)}")
        self.index = int(state["index"])
        self.switches = [(int(i), str(level)) for i, level in state["switches"]]


def resolve_levels(env_levels: Sequence[str], config: RLConfig) -> tuple[str, ...]:
    """The levels a run trains on: `config.levels`, else all levels with a curriculum, else the hardest."""
    if config.levels:
        unknown = [lvl for lvl in config.levels if lvl not in env_levels]
        if unknown:
            raise ValueError(f"unknown level(s) {', '.join(unknown)}; {config.env} has {', '.join(env_levels)}")
        return tuple(config.levels)
    return tuple(env_levels) if config.uses_curriculum else (env_levels[-1],)
