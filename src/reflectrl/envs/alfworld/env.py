"""ALFWorld as a reflectrl text environment (`reflectrl/ALFWorld-v0`).

Household tasks ("put a hot apple in countertop") on alfworld's text engine.

* **Games**: the solvable games of one split (`train`, `valid_seen`,
  `valid_unseen`) with the selected task types (default: pick and place). See
  `reflectrl.envs.alfworld.dataset` for where they come from.
* **Observation**: the task, the last `history_length` steps, the game's text
  for the last action, and where the agent is and what it carries. Before the
  first action the observation is the game's room overview.
* **Places visited** (`show_visited=True`): the status line also names every
  receptacle gone to in this episode ("Visited: drawer 1, shelf 4."), a
  searcher's memory beyond the history window. Off by default.
* **Compact text** (`compact=True`, the default): the game's sentences without
  what the action already says, lists without articles, the overview's
  receptacles grouped ("cabinet 1-8"), and the last action's result shown once
  (in the history, not again in the observation); see
  `reflectrl.envs.alfworld.text`. `compact=False` shows the engine's text.
* **Actions**: the game's admissible commands, as the engine lists them.
* **Reward**: `win_reward` (default 1) when the game is won, which ends the
  episode with success; `step_reward` (default 0) otherwise; an inadmissible
  action gives `invalid_action_reward` (-0.1). Horizon 30 by default.
* **Oracle**: the planner expert's next command. The plan is kept while the
  agent follows it or takes steps that change nothing but what it has looked
  at; after any other step the planner plans again from the current state.
  At reset the plan is the game's stored walkthrough (for generated games the
  planner's own plan; for the real data set the walkthrough it ships with).
  With ``oracle_search="prior"`` the oracle does not know where the goal
  object is: until it holds one or has seen one, it searches the receptacles
  in the order the train games hide the object type in, opening closed ones,
  and carries it to the target receptacle of the lowest number
  (`search_action`, `reflectrl.envs.alfworld.search`); then the planner.
* **Levels** (curriculum, cumulative): `easy` = games whose walkthrough has at
  most 4 steps, `medium` at most 8, `full` every game.

Episode choice: `index` (or `task_id`) fixes the game; otherwise each reset
draws one with the episode seed. `reset(options={"index": i})` or
`options={"task_id": ...}` picks a game for one episode.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from reflectrl.envs.alfworld.dataset import (
    GameRecord,
    available_splits,
    ensure_default_games,
    find_games,
    resolve_data_root,
)
from reflectrl.envs.alfworld.engine import AlfredEngine, require_engine, split_intro
from reflectrl.envs.alfworld.search import SearchPrior, instance_key, train_prior
from reflectrl.envs.alfworld.tasks import (
    DEFAULT_TASK_TYPES,
    LEVELS,
    goal_types,
    in_level,
    instance_type,
    parse_task_types,
)
from reflectrl.envs.alfworld.text import compact_feedback, compact_overview
from reflectrl.envs.alfworld.world import World
from reflectrl.envs.base import Outcome, TextEnv

ORACLE_SEARCHES = ("planner", "prior")


class ALFWorldEnv(TextEnv):
    """ALFWorld text games (see the module docstring)."""

    levels = LEVELS
    default_horizon = 30
    invalid_action_reward = -0.1
    action_space_size = 128

    def __init__(
        self,
        level: str | None = None,
        horizon: int | None = None,
        max_actions: int | None = None,
        render_mode: str | None = None,
        *,
        split: str = "train",
        index: int | None = None,
        task_id: str | None = None,
        data_dir: str | Path | None = None,
        task_types: str | Iterable[str] | None = DEFAULT_TASK_TYPES,
        history_length: int = 8,
        compact: bool = True,
        show_visited: bool = False,
        win_reward: float = 1.0,
        step_reward: float = 0.0,
        oracle_search: str = "planner",
    ):
        super().__init__(level=level, horizon=horizon, max_actions=max_actions, render_mode=render_mode)
        if history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {history_length}")
        if oracle_search not in ORACLE_SEARCHES:
            raise ValueError(f"oracle_search must be one of {', '.join(ORACLE_SEARCHES)}, got {oracle_search!r}")
        require_engine()
        self.split = split
        self.task_types = parse_task_types(task_types)
        self.history_length = int(history_length)
        self.compact = bool(compact)
        self.show_visited = bool(show_visited)
        self.win_reward = float(win_reward)
        self.step_reward = float(step_reward)
        self.oracle_search = oracle_search
        root = resolve_data_root(data_dir)
        self.data_root = root if root is not None else ensure_default_games(self.task_types)
        # counted now, so that a data folder without train games fails at construction, not mid-episode
        self.prior: SearchPrior | None = train_prior(str(self.data_root), self.task_types) if oracle_search == "prior" else None
        self._all_games = find_games(self.data_root, split, self.task_types)
        if not self._all_games:
            raise FileNotFoundError(
                f"no solvable {', '.join(self.task_types)} games in split {split!r} under {self.data_root} "
                f"(splits there: {', '.join(available_splits(self.data_root)) or 'none'}); "
                "make some with `reflectrl alfworld make-games --out DIR --types ...`"
            )
        self.index = index
        self.task_id = task_id
        if task_id is not None:
            self._by_id(task_id)
        if index is not None:
            self._by_index(index)
        self._record: GameRecord | None = None
        self._game: AlfredEngine | None = None
        self._overview = ""
        self._task_text = ""
        self._acted = False
        self._plan: list[str] | None = None
        self._visited: dict[str, None] = {}  # receptacles gone to, in order

    # ----------------------------------------------------------------- games
    @property
    def games(self) -> list[GameRecord]:
        """The games of the current level (the list `index` refers to)."""
        return [g for g in self._all_games if in_level(g.expert_steps, self.level)]

    @property
    def game(self) -> GameRecord | None:
        """The game of the current episode."""
        return self._record

    def _by_index(self, index: int) -> GameRecord:
        games = self.games
        try:
            position = operator.index(index) if not isinstance(index, bool) else None
        except TypeError:
            position = None
        if position is None or not 0 <= position < len(games):
            raise ValueError(f"index {index!r} out of range: split {self.split!r} has {len(games)} games at level {self.level!r}")
        return games[position]

    def _by_id(self, task_id: str) -> GameRecord:
        for game in self._all_games:
            if game.game_id == task_id:
                return game
        raise ValueError(f"no game {task_id!r} in split {self.split!r} (ids look like {self._all_games[0].game_id!r})")

    def _choose(self, options: dict[str, Any]) -> GameRecord:
        if "task_id" in options:
            return self._by_id(options["task_id"])
        if "index" in options:
            return self._by_index(options["index"])
        if self.task_id is not None:
            return self._by_id(self.task_id)
        if self.index is not None:
            return self._by_index(self.index)
        games = self.games
        if not games:
            raise ValueError(f"split {self.split!r} has no games at level {self.level!r}; choose a higher level")
        return games[int(self.np_random.integers(len(games)))]

    # ----------------------------------------------------------- TextEnv hooks
    def _reset(self, options: dict[str, Any]) -> None:
        record = self._choose(options)
        if self._game is None:
            self._game = AlfredEngine()
        if self._game.game_file != record.game_file:
            self._game.load(record.game_file)
        self._record = record
        self._overview, self._task_text = split_intro(self._game.reset())
        if self.compact:
            self._overview = compact_overview(self._overview)
        self._acted = False
        self._visited = {}
        walkthrough = self._game.walkthrough
        self._plan = list(walkthrough) if walkthrough else None

    def _task(self) -> str:
        return self._task_text

    def _observation(self) -> str:
        if not self._acted:
            return self._overview
        return self._status()

    def _admissible(self) -> list[str]:
        return self._game.admissible

    def _apply(self, action: str) -> Outcome:
        before = self._game.world_key() if self._plan else None
        feedback = self._game.step(action)
        if self.compact:
            feedback = compact_feedback(feedback)
        self._acted = True
        if action.startswith("go to "):
            self._visited[action[6:]] = None
        if self._plan:
            if self._plan[0] == action:
                self._plan.pop(0)
            elif self._game.world_key() != before:
                self._plan = None  # the world changed off the plan: plan again when asked
        if self._game.won:
            return Outcome(self.win_reward, terminated=True, success=True, feedback=feedback)
        return Outcome(self.step_reward, feedback=feedback)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if len(self._history) > self.history_length:
            # the base class keeps every step; keep the newest ones and rebuild what shows them
            del self._history[: len(self._history) - self.history_length]
            info["history"] = list(self._history)
            obs = self._render_text()
        return obs, reward, terminated, truncated, info

    def _observation_text(self) -> str:
        # compact: the newest history entry already shows the last action's result
        if self.compact and self.history_length and self._history and self._feedback and self._history[-1].endswith(self._feedback):
            return self._observation()
        return super()._observation_text()

    def true_facts(self) -> list[tuple[str, tuple[str, ...]]]:
        """The engine's current facts, as (predicate, argument names): the hidden state, which the oracle and
        analyses read and a player never does (it sees only the observation)."""
        if self._game is None:
            raise RuntimeError("no episode is running: call reset() first")
        return self._game.facts()

    def oracle_action(self) -> str:
        """The expert's next command from the current state: the search's (see `search_action`), else the planner's."""
        if self._game is None or self._done:
            raise RuntimeError("no episode is running: call reset() before asking the oracle")
        searching = self.search_action()
        if searching is not None:
            return searching
        admissible = self._game.admissible
        if not self._plan or self._plan[0] not in admissible:
            self._plan = self._game.plan()
        if not self._plan or self._plan[0] not in admissible:
            raise RuntimeError(f"the planner found no plan from the current state of {self._record.game_id}")
        return self._plan[0]

    def search_action(self) -> str | None:
        """The command of an expert that does not know where the goal object is (``oracle_search="prior"``).

        While the agent holds nothing and has seen no goal object: the prior-ordered search (open a closed
        receptacle just gone to, else go to the next receptacle not visited yet). A goal object seen in a
        receptacle gone to (and open) is fetched: ``go to`` it, then ``take`` (even where the planner would
        prefer one never seen). Holding it: ``go to`` the target receptacle of the lowest number, since which
        one is nearest is not shown. None otherwise (the planner's turn: open the target, put the object in;
        anything off the task), with ``oracle_search="planner"``, and when no receptacle is left to search.
        """
        return self._search()[0]

    def searching(self) -> bool:
        """True while the prior-ordered search leads: ``oracle_search="prior"``, nothing held, no goal object seen."""
        return self._search()[1]

    def _search(self) -> tuple[str | None, bool]:
        """(`search_action`, `searching`) from one read of the engine's facts (the teacher asks both every step)."""
        if self.prior is None or self._game is None or self._done:
            return None, False
        world = World.read(self)
        admissible = set(self._game.admissible)
        obj_type, recep_type = goal_types(self._record.game_id)
        if world.held is not None:
            if instance_type(world.held) != obj_type or any(instance_type(r) == recep_type for r in world.here()):
                return None, False
            targets = sorted((r for r in world.recep_loc if instance_type(r) == recep_type), key=instance_key)
            return next((f"go to {r}" for r in targets if f"go to {r}" in admissible), None), False
        seen = self.seen_goal_objects(world)
        for obj, recep in sorted(seen, key=lambda found: (world.recep_loc.get(found[1]) != world.agent, found)):
            command = f"take {obj} from {recep}" if world.recep_loc.get(recep) == world.agent else f"go to {recep}"
            if command in admissible:
                return command, False
        for recep in world.here():
            if recep in self._visited and recep in world.closed and f"open {recep}" in admissible:
                return f"open {recep}", not seen  # what a closed receptacle holds is seen only once it is open
        for recep in self.prior.order(obj_type, list(world.recep_loc)):
            if recep not in self._visited and f"go to {recep}" in admissible:
                return f"go to {recep}", not seen
        return None, False

    def seen_goal_objects(self, world: World | None = None) -> list[tuple[str, str]]:
        """(object, receptacle) for each goal object in an open receptacle gone to in this episode."""
        world = World.read(self) if world is None else world
        obj_type, _ = goal_types(self._record.game_id)
        return sorted(
            (o, r) for o, r in world.container.items()
            if instance_type(o) == obj_type and r in self._visited and r not in world.closed
        )

    def decoy_action(self, rng: np.random.Generator) -> str | None:
        """A ``go to`` another receptacle not visited yet and holding no goal object, when the oracle is about
        to go to where one is and the agent carries nothing.

        The oracle knows where the object is hidden and walks straight there, so its data never shows a
        search that looked in the wrong place, which is what a player who cannot see the object does until
        it finds one. These detours put such states on the expert's path (the oracle goes on from them).
        """
        command = self.oracle_action()
        if not command.startswith("go to "):
            return None
        world = World.read(self)
        if world.held is not None:
            return None
        obj_type, _ = goal_types(self._record.game_id)
        objects = {*world.object_loc, *world.container}
        hidden = {world.where(o) for o in objects if instance_type(o) == obj_type} - {None}
        if world.recep_loc.get(command[6:]) not in hidden:
            return None  # not the search: the oracle carries on to the target receptacle or walks past
        skipped = hidden | {world.agent}
        decoys = [
            a for a in self._game.admissible
            if a.startswith("go to ") and a[6:] not in self._visited and world.recep_loc.get(a[6:]) not in skipped
        ]
        return decoys[int(rng.integers(len(decoys)))] if decoys else None

    def _info_extra(self) -> dict[str, Any]:
        record = self._record
        return {
            "split": self.split,
            "game_id": record.game_id if record else None,
            "task_type": record.task_type if record else None,
            "expert_steps": record.expert_steps if record else None,
        }

    # ---------------------------------------------------------------- helpers
    def _status(self) -> str:
        facts = self._game.facts()
        here = {args[1] for name, args in facts if name == "atlocation" and len(args) == 2}
        at = sorted(args[0] for name, args in facts if name == "receptacleatlocation" and len(args) == 2 and args[1] in here)
        held = sorted(args[1] for name, args in facts if name == "holds" and len(args) == 2)
        where = f"You are at {_join(at)}." if at else "You are in the middle of the room."
        carrying = f"You are carrying {_join(held)}." if held else "You are carrying nothing."
        searched = f" Visited: {', '.join(self._visited)}." if self.show_visited and self._visited else ""
        return f"{where} {carrying}{searched}"

    def close(self) -> None:
        self._game = None
        super().close()


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
