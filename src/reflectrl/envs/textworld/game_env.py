"""One split of generated TextWorld games as a plain gymnasium environment with text observations.

`TextWorldGames` knows nothing of reflectrl's menus or prompts: it is the kind
of environment `reflectrl.envs.from_gymnasium` wraps. Each reset plays one
game of the split (``options={"index": i}``, the constructor's `index`, or one
drawn with the reset's seed), generated on first use (`games.game_file`).

* **Observation**: the game's answer to the last command, then the room's
  description when the answer does not already show it, then what the player
  carries. At reset: the room and the inventory (the welcome banner and the
  objective are left out; the objective is ``info["objective"]``).
* **Step**: any command string (the wrapper sends only admissible ones).
* **Reward**: the game's score gain (1 for winning either challenge);
  ``terminated`` when the game is won or lost (treasure hunter: the wrong
  object taken).
* **info**: ``admissible_commands``; ``objective``; ``policy_commands``, the
  game's own plan from the current state (TextWorld replans after any
  command); ``walkthrough``, the plan at reset; ``room``; ``won``, ``lost``;
  ``game_id``, ``task_type`` (the challenge) and ``difficulty``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium

from reflectrl.envs.base import TextSpace
from reflectrl.envs.textworld.games import (
    DEFAULT_GAMES,
    LEVELS,
    GameSpec,
    check_choice,
    game_file,
    game_specs,
    require_textworld,
)

ROOM_HEADING = re.compile(r"^-= (.+?) =-$", re.MULTILINE)
GAME_OVER = "*** The End ***"


class TextWorldGames(gymnasium.Env):
    """The games of one challenge, level and split (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        level: str = LEVELS[0],
        challenge: str = "coin_collector",
        split: str = "train",
        games: int | None = None,
        index: int | None = None,
        cache_dir: str | Path | None = None,
    ):
        check_choice(challenge, level, split)
        require_textworld()
        self.challenge, self.level, self.split = challenge, level, split
        self.specs = game_specs(challenge, level, split, games if games is not None else DEFAULT_GAMES[split])
        self.index = self._checked_index(index) if index is not None else None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.observation_space = TextSpace()
        self.action_space = TextSpace()
        self._game = None  # textworld's environment of the loaded game
        self._loaded: Path | None = None
        self._spec: GameSpec | None = None
        self._score = 0
        self._walkthrough: list[str] = []

    @property
    def num_tasks(self) -> int:
        """Games in the split (what ``options={"index": i}`` chooses from)."""
        return len(self.specs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "index" in options:
            index = self._checked_index(options["index"])
        elif self.index is not None:
            index = self.index
        else:
            index = int(self.np_random.integers(len(self.specs)))
        self._spec = self.specs[index]
        story = game_file(self._spec, self.cache_dir)
        if story != self._loaded:
            self._load(story)
        state = self._game.reset()
        self._score = int(state["score"] or 0)
        self._walkthrough = list(state["policy_commands"] or [])
        # the welcome text is a banner, the objective (the task, shown apart) and the room: only the room is kept
        return self._observation(state, ""), self._info(state)

    def step(self, command: str):
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        state, score, done = self._game.step(command)
        reward = float(int(score or 0) - self._score)
        self._score = int(score or 0)
        return self._observation(state, _clean(state["feedback"])), reward, bool(done), False, self._info(state)

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
        self._game, self._loaded = None, None

    # ---------------------------------------------------------------- helpers
    def _load(self, story: Path) -> None:
        import textworld

        self.close()
        infos = textworld.EnvInfos(
            admissible_commands=True, policy_commands=True, objective=True, description=True, inventory=True,
            feedback=True, won=True, lost=True, score=True,
        )
        self._game = textworld.start(str(story), request_infos=infos)
        self._loaded = story

    def _checked_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.specs):
            raise ValueError(f"index {index!r} out of range: split {self.split!r} has {len(self.specs)} games at level {self.level!r}")
        return index

    def _observation(self, state: Any, answer: str) -> str:
        parts = [answer] if answer else []
        room = _clean(state["description"])
        if room and room not in answer:
            parts.append(room)
        parts.append(_clean(state["inventory"]))
        return "\n".join(p for p in parts if p)

    def _info(self, state: Any) -> dict[str, Any]:
        heading = ROOM_HEADING.search(state["description"] or "")
        return {
            "admissible_commands": list(state["admissible_commands"] or []),
            "objective": str(state["objective"]).strip(),
            "policy_commands": list(state["policy_commands"] or []),
            "walkthrough": list(self._walkthrough),
            "room": heading.group(1) if heading else None,
            "won": bool(state["won"]),
            "lost": bool(state["lost"]),
            "game_id": self._spec.game_id,
            "task_type": self._spec.challenge,
            "difficulty": self._spec.difficulty,
        }


def _clean(text: str | None) -> str:
    """The game's text without the end-of-game prompt, the command prompt, trailing spaces and blank lines.

    A line that starts with the prompt ``>`` is the interpreter's, not the game's: the Z-machine puts its status
    line there ("> ... -= Bar =-0/2": the room, the score and the moves) after some commands.
    """
    text = (text or "").split(GAME_OVER)[0]
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith(">"))
